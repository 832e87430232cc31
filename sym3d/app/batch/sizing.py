"""How many workers, on which devices, with how many CPU threads each."""

from __future__ import annotations

import os

from sym3d.app.batch.tasks import Placement
from sym3d.errors import UserInputError

__all__ = [
    "CPU_WORKER_MEMORY",
    "available_cores",
    "available_memory",
    "cuda_device_count",
    "plan_local",
]

CPU_WORKER_MEMORY = 2 * 1024**3
"""Memory budgeted per CPU worker when sizing the pool (an EG3D 512 inversion peaks near this)."""


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask when the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def available_memory() -> int | None:
    """Physical memory in bytes, or ``None`` when unknown."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover
        return None


def cuda_device_count() -> int:
    """CUDA devices visible to torch (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def plan_local(
    device: str = "auto",
    workers: int | None = None,
    threads: int | None = None,
    *,
    cores: int | None = None,
    gpus: int | None = None,
    memory: int | None = None,
) -> list[Placement]:
    """One :class:`Placement` per local worker.

    * ``device="auto"``: one worker per CUDA device (``cuda:0``, ``cuda:1``, ...) when there are
      any, otherwise CPU workers.
    * ``device="cuda"``: like auto, but CUDA is required.
    * ``device="cpu"`` or an explicit ``"cuda:1"``: every worker on that device.
    * CPU workers by default: half the cores (at least 1), at most one per
      :data:`CPU_WORKER_MEMORY` of memory; threads: the cores split evenly (``cores // workers``).

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        workers: worker count (``None``: as above).
        threads: torch CPU threads per worker (``None``: the cores split evenly).
        cores, gpus, memory: the machine (``None``: detected).

    Raises:
        UserInputError: a bad count, or ``device="cuda"`` without CUDA devices.
    """
    if workers is not None and workers < 1:
        raise UserInputError(f"--workers: expected a positive number, got {workers}.")
    if threads is not None and threads < 1:
        raise UserInputError(f"--threads: expected a positive number, got {threads}.")
    cores = available_cores() if cores is None else cores
    if gpus is None:
        gpus = cuda_device_count() if device in ("auto", "cuda") else 0
    if device == "cuda" and gpus == 0:
        raise UserInputError(
            "--device cuda: no CUDA device is visible.", hint="use --device cpu (or auto)."
        )
    if device in ("auto", "cuda") and gpus > 0:
        n = workers or gpus
        per = threads or max(1, cores // n)
        return [Placement(device=f"cuda:{i % gpus}", threads=per) for i in range(n)]
    if workers is None:
        workers = max(1, cores // 2)
        memory = available_memory() if memory is None else memory
        if memory:
            workers = max(1, min(workers, memory // CPU_WORKER_MEMORY))
    per = threads or max(1, cores // workers)
    dev = "cpu" if device in ("auto", "cuda") else device
    return [Placement(device=dev, threads=per) for _ in range(workers)]
