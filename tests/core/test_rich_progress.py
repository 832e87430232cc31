"""The ``rich`` progress renderers of the engine and of the batch share one bar layout."""

from __future__ import annotations

import pytest

from sym3d.app.batch import progress as batch_progress
from sym3d.cli import progress as engine_progress
from sym3d.cli.renderer_base import rich_bar
from sym3d.engine.events import StageFinished, StageStarted, StepFinished


def _column_texts(progress) -> list[str]:
    return [getattr(c, "text_format", type(c).__name__) for c in progress.columns]


def test_rich_bar_orders_title_fields_timing_and_tail() -> None:
    bar = rich_bar("[bold]x", fields=["{task.fields[a]}"], tail=["{task.fields[b]}"])
    assert _column_texts(bar) == [
        "[bold]x",
        "BarColumn",
        "MofNCompleteColumn",
        "{task.fields[a]}",
        "TimeElapsedColumn",
        "eta",
        "TimeRemainingColumn",
        "{task.fields[b]}",
    ]
    assert bar.console.stderr


def test_engine_rich_renderer_shows_stage_steps_and_losses(capsys: pytest.CaptureFixture) -> None:
    renderer = engine_progress._Rich(prefix="anna")
    with renderer:
        renderer(StageStarted(stage="latent", num_steps=3))
        for step in range(3):
            losses = {"total": 0.5 - 0.1 * step, "reconstruction/mse": 0.25}
            event = StepFinished(
                stage="latent", step=step, num_steps=3, losses=losses, lr=0.01, seconds=0.1
            )
            renderer(event)
        renderer(StageFinished(stage="latent", steps_run=3, early_stopped=False, seconds=0.3))
    err = capsys.readouterr().err
    assert "anna stage 1 latent" in err
    assert "3/3" in err
    assert "total 0.3" in err


def test_batch_rich_renderer_counts_failed_and_running(capsys: pytest.CaptureFixture) -> None:
    renderer = batch_progress._Rich()
    with renderer:
        renderer(batch_progress.BatchStarted(total=3, done=1, failed=0, todo=2))
        renderer(batch_progress.ItemStarted(key="a.jpg", worker="w0", attempt=1))
        renderer(batch_progress.ItemFinished(key="a.jpg", status="failed", attempt=1, error="bad"))
        renderer(batch_progress.ItemStarted(key="b.jpg", worker="w0", attempt=1))
    err = capsys.readouterr().err
    assert "2/3" in err
    assert "1 failed" in err
    assert "1 running" in err
    assert "a.jpg" in err
