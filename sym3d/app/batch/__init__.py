"""Resumable batch inversion of a folder, on a local process pool or a Ray actor pool.

Public API: :func:`run_batch` with :class:`BatchSettings` and :class:`JobSpec`; the manifest
(:class:`Manifest`); :func:`summarize`. The command line is ``sym3d batch`` (see ``docs/batch.md``).
Importing this package imports neither torch nor ray.
"""

from __future__ import annotations

from sym3d.app.batch.manifest import MANIFEST_NAME, Manifest
from sym3d.app.batch.runner import BatchReport, BatchSettings, discover_images, run_batch
from sym3d.app.batch.summary import BatchSummary, summarize
from sym3d.app.batch.tasks import JobSpec, Placement, Task, TaskResult

__all__ = [
    "MANIFEST_NAME",
    "BatchReport",
    "BatchSettings",
    "BatchSummary",
    "JobSpec",
    "Manifest",
    "Placement",
    "Task",
    "TaskResult",
    "discover_images",
    "run_batch",
    "summarize",
]
