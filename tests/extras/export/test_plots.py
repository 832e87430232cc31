from __future__ import annotations

import numpy as np
import pytest

from sym3d.errors import UserInputError
from sym3d_extras.export.plots import loss_terms, plot_history


def test_loss_terms_order_and_diagnostics(tiny_result):
    terms = loss_terms(tiny_result.history)
    assert terms[-1] == "total"
    assert "mirror/_weight" not in terms and "warp/_valid" not in terms
    assert {"rec/perceptual", "mirror/perceptual", "rec/mse", "warp/perceptual"} <= set(terms)
    assert "warp/_valid" in loss_terms(tiny_result.history, include_diagnostics=True)


def test_plot_history_writes_png(tiny_result, tmp_path):
    import imageio.v3 as iio

    p = plot_history(tiny_result.history, tmp_path / "loss.png", title="<loss>")
    img = iio.imread(p)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 800  # two panels side by side
    assert img[..., :3].std() > 10  # not blank
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".tmp-")]


def test_plot_history_single_stage_with_gaps(tmp_path):
    import imageio.v3 as iio

    rows = [{"stage": "latent", "step": i, "lr": 0.01, "seconds": 0.1, "a": 1.0 / (i + 1)} for i in range(5)]
    rows[2]["a"] = float("nan")
    rows.append({"stage": "latent", "step": 5, "b": -1.0})  # a negative term: linear axis
    p = plot_history(rows, tmp_path / "one.png")
    assert np.asarray(iio.imread(p)).shape[1] < 900


def test_plot_history_empty(tmp_path):
    with pytest.raises(UserInputError, match="numeric loss terms"):
        plot_history([], tmp_path / "x.png")
    with pytest.raises(UserInputError):
        plot_history([{"stage": "latent", "step": 0, "lr": 0.1, "seconds": 1.0}], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
