"""`sym3d bench eg3d`: the measurement loop and the printed table, at a tiny resolution."""

from __future__ import annotations

import pytest

from sym3d.cli import main
from sym3d_eg3d.bench import bench_eg3d, load_config_kwargs


def test_rows_cover_every_view_count_with_positive_times() -> None:
    rows = bench_eg3d(["small"], neural_resolutions=[8], views=[1, 2], repeats=1)
    assert [(r.config, r.neural_resolution, r.views) for r in rows] == [
        ("small", 8, 1),
        ("small", 8, 2),
    ]
    for r in rows:
        # times are measured, not asserted against each other: a loaded machine can stall any call
        assert r.forward_ms > 0 and r.forward_backward_ms > 0
        assert r.peak_forward_mb >= 0 and r.peak_backward_mb >= 0


def test_cli_prints_both_ratios(capsys) -> None:
    assert main(["bench", "eg3d", "--resolutions", "8", "--views", "1,2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "fwd / 1 view" in out and "fwd+bwd / 1 view" in out
    assert "1.00x" in out


def test_unknown_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown config 'huge'"):
        load_config_kwargs("huge")
