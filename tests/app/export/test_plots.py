from __future__ import annotations

import numpy as np
import pytest

from sym3d.app.export.plots import loss_terms, plot_history
from sym3d.errors import UserInputError


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

    rows = [
        {"stage": "latent", "step": i, "lr": 0.01, "seconds": 0.1, "a": 1.0 / (i + 1)}
        for i in range(5)
    ]
    rows[2]["a"] = float("nan")
    rows.append({"stage": "latent", "step": 5, "b": -1.0})  # a negative term: linear axis
    p = plot_history(rows, tmp_path / "one.png")
    assert np.asarray(iio.imread(p)).shape[1] < 900


def test_plot_history_empty(tmp_path):
    with pytest.raises(UserInputError, match="numeric loss terms"):
        plot_history([], tmp_path / "x.png")
    with pytest.raises(UserInputError):
        plot_history(
            [{"stage": "latent", "step": 0, "lr": 0.1, "seconds": 1.0}], tmp_path / "x.png"
        )
    assert not (tmp_path / "x.png").exists()


def _grid(tmp_path, scales, name="grid.png"):
    import imageio.v3 as iio
    import torch

    from sym3d.app.export.plots import plot_image_grid

    grey = torch.full((3, 16, 16), 0.5)
    tiles = [[grey, grey] for _ in range(3)]
    p = plot_image_grid(
        tiles,
        tmp_path / name,
        row_labels=["truth", "depth a", "depth b"],
        col_labels=["-15°", "+15°"],
        scales=scales,
        side=(grey, "input"),
        tile_px=64,
        dpi=64,
    )
    return np.asarray(iio.imread(p))[..., :3].astype(int)


def test_image_grid_has_a_colour_bar_beside_the_scaled_rows(tmp_path):
    from sym3d.app.export.plots import ColourScale

    depth = ColourScale("turbo_r", 2.3, 2.8, "depth (world units)")
    img = _grid(tmp_path, [None, depth, depth])
    plain = _grid(tmp_path, None, "plain.png")
    assert img.shape[0] == plain.shape[0] and img.shape[1] > plain.shape[1] + 32  # room for the bar
    # layout in tiles (64 px): row labels 0.9, the side image 1.12, two columns of 1.04, header 0.28
    head, step, grid_end = 0.28 * 64, 1.04 * 64, (0.9 + 1.12 + 2 * 1.04) * 64
    x_bar = slice(round(grid_end) + 6, round(grid_end) + 12)
    row0 = img[round(head) + 4 : round(head + step) - 4, x_bar]
    rows12 = img[round(head + step) + 8 : round(head + 3 * step) - 8, x_bar]
    colours = lambda a: len(np.unique(a.reshape(-1, 3), axis=0))  # noqa: E731
    assert colours(row0) <= 2  # no bar beside the plain image row
    assert colours(rows12) > 40  # one gradient spanning both depth rows
    assert colours(plain[:, round(grid_end) + 2 :]) <= 2  # no scales, no bar


def test_image_grid_refuses_mismatched_labels(tmp_path):
    import torch

    from sym3d.app.export.plots import plot_image_grid

    tile = torch.zeros(3, 8, 8)
    with pytest.raises(UserInputError, match="row_labels"):
        plot_image_grid([[tile]], tmp_path / "x.png", row_labels=["a", "b"], col_labels=["c"])
    with pytest.raises(UserInputError, match="row 1 has 2 tiles"):
        plot_image_grid(
            [[tile], [tile, tile]], tmp_path / "x.png", row_labels=["a", "b"], col_labels=["c"]
        )
