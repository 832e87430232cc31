"""Plain, picklable values that travel between the coordinator and its workers.

Nothing here imports torch: the coordinator, the local worker processes and the Ray actors all
unpickle these, and the coordinator stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from sym3d.defaults import DEFAULT_GENERATOR

__all__ = ["JobSpec", "Placement", "Task", "TaskResult", "Completion"]


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value or ())


def _dict(value: Any) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class JobSpec:
    """What every image of a batch is processed with (the same on every worker).

    Attributes:
        generator: registered generator name (``"eg3d"``, ``"symheads"``, ...).
        network: generator weights (``--network``), or ``None``.
        generator_options: other factory options of the generator.
        pose: registered pose estimator; ``None`` when every image has a camera label.
        preset, config, overrides: as in :func:`sym3d.invert` (``config`` is a TOML path).
        export: the outputs of :func:`sym3d.app.export.export_result` to write.
        export_options: keyword options of ``export_result``.
        resume: continue an interrupted image from its ``.partial`` folder.
    """

    generator: str = DEFAULT_GENERATOR
    network: str | None = None
    generator_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_dict)
    pose: str | None = "mediapipe"
    preset: str = "spi"
    config: str | None = None
    overrides: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    export: tuple[str, ...] = attrs.field(
        default=("views", "video", "depth", "mesh", "plots", "report"), converter=_tuple
    )
    export_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_dict)
    resume: bool = True

    def describe(self) -> dict[str, Any]:
        """The settings as JSON-able data (stored in the manifest to notice changed settings)."""
        return attrs.asdict(self, recurse=True)


@attrs.frozen(kw_only=True)
class Placement:
    """Where one worker runs: a torch device and its CPU thread count."""

    device: str = "cpu"
    threads: int = 1


@attrs.frozen(kw_only=True)
class Task:
    """One image to process.

    Attributes:
        key: the result folder's name (the image's stem); unique in a batch.
        image: the image file.
        out_dir: the final result folder (``<OUT>/<key>``).
        camera: a 25-number camera label, or ``None`` to estimate the pose.
        attempt: 1 for the first try of this image, 2 for its first retry, ...
    """

    key: str
    image: str
    out_dir: str
    camera: tuple[float, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )
    attempt: int = 1


@attrs.frozen(kw_only=True)
class TaskResult:
    """What a worker reports for one task; errors are data, never raised across processes.

    Attributes:
        key: the task's key.
        ok: the final folder exists (written by this attempt, or found already finished).
        seconds: time spent by the worker on this attempt.
        metrics: ``metrics.json`` of the result (plus stage timings), empty if not written.
        error: one line for the manifest (``None`` when ``ok``).
        error_type: the exception's class name.
        user_error: the error is a problem of the input (a corrupt file, a bad label, ...).
        detail: the traceback of an unexpected error.
        worker: ``host:pid`` of the worker.
        worker_images: how many images this worker has processed, this one included (its
            generator is loaded once, before the first).
        notes: the pipeline's notes and the warnings it raised.
        already_done: the final folder existed before this attempt (a previous attempt finished
            it but could not report it).
    """

    key: str
    ok: bool
    seconds: float = 0.0
    metrics: Mapping[str, Any] = attrs.field(factory=dict, converter=_dict)
    error: str | None = None
    error_type: str | None = None
    user_error: bool = False
    detail: str | None = None
    worker: str = ""
    worker_images: int = 0
    notes: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    already_done: bool = False


@attrs.frozen(kw_only=True)
class Completion:
    """A task that left a worker: with a result, or lost with its worker.

    Attributes:
        task: the task.
        result: the worker's report (``None`` when the worker died).
        lost: why the worker was lost (its exit code, the Ray error), or ``None``.
        worker: the worker the task ran on.
        roundtrip: seconds from submission to the completion being seen by the coordinator.
    """

    task: Task
    result: TaskResult | None = None
    lost: str | None = None
    worker: str = ""
    roundtrip: float = 0.0
