"""EG3D speed and memory benchmark: one view vs ``V`` views through one backbone pass.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the level before the call; on the
CPU, the peak resident set size sampled every few milliseconds by a thread (Linux
``/proc/self/statm``), above the level before the call.
"""

from __future__ import annotations

import copy
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch

from sym3d.camera import look_at

__all__ = ["BenchRow", "CONFIGS", "load_config_kwargs", "bench_eg3d"]

CONFIGS = ("small", "sr512", "ffhq512")
"""small: the fixture config (64-ch backbone, SR 2X to 128); sr512: small backbone + the released
8XDC SR to 512; ffhq512: the released ffhq512-128 architecture (random weights)."""


def load_config_kwargs(name: str) -> dict[str, Any]:
    """Init kwargs of a benchmark config (random weights; see :mod:`sym3d_eg3d.configs`)."""
    from sym3d_eg3d.configs import CONFIGS as known

    if name not in known:
        raise ValueError(f"unknown config {name!r}; expected one of {', '.join(known)}")
    return copy.deepcopy(known[name])


@attrs.frozen
class BenchRow:
    """One measurement (times in ms, memory in MB)."""

    config: str
    neural_resolution: int
    views: int
    forward_ms: float
    forward_backward_ms: float
    peak_forward_mb: float
    peak_backward_mb: float


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import resource

        return pages * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


class _PeakMemory:
    """Context manager measuring peak memory above the starting level (bytes)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = _rss_bytes()
            self._max = self._base
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, _rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(0, max(self._max, _rss_bytes()) - self._base)


def _release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``) so an RSS delta shows a call's peak."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _once(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def _peak_mb(fn: Callable[[], Any], device: torch.device) -> float:
    _release_freed_memory()
    with _PeakMemory(device) as mem:
        fn()
    return mem.peak / 2**20


def _time_interleaved(
    fns: Sequence[Callable[[], Any]], device: torch.device, repeats: int
) -> list[float]:
    """Median ms of each function over ``repeats`` rounds that call every function once in turn.

    Interleaving makes slow drifts of a shared machine hit all functions alike, so their ratios
    stay meaningful. Each function is called once before timing (warm-up).
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            times[k].append(_once(fn, device))
    return [1000.0 * statistics.median(t) for t in times]


def bench_eg3d(
    configs: Sequence[str] = ("small",),
    *,
    neural_resolutions: Sequence[int] = (32, 64),
    views: Sequence[int] = (1, 6),
    device: str | torch.device = "cpu",
    repeats: int = 5,
) -> list[BenchRow]:
    """Forward and forward+backward time and peak memory of :meth:`EG3DGenerator.render`.

    For each config and resolution the view counts are timed in interleaved rounds (see
    :func:`_time_interleaved`); times are medians over ``repeats`` rounds.
    """
    from sym3d_eg3d.adapter import build_eg3d

    dev = torch.device(device)
    rows = []
    for name in configs:
        gen = build_eg3d(init_kwargs=load_config_kwargs(name), device=dev)
        ws = gen.mapping(
            torch.randn(1, gen.z_dim, device=dev), look_at(0.0, 0.0, device=dev)[None]
        ).detach()
        params = list(gen.tunable_parameters("all").values())
        for res in neural_resolutions:
            forwards, backwards = [], []
            for v in views:
                cams = look_at(torch.linspace(-0.5, 0.5, v), 0.0, device=dev)[None]
                forwards.append(_forward(gen, ws, cams, res))
                backwards.append(_forward_backward(gen, ws, cams, res, params))
            f_ms = _time_interleaved(forwards, dev, repeats)
            fb_ms = _time_interleaved(backwards, dev, repeats)
            for k, v in enumerate(views):
                f_mb, fb_mb = _peak_mb(forwards[k], dev), _peak_mb(backwards[k], dev)
                rows.append(BenchRow(name, res, v, f_ms[k], fb_ms[k], f_mb, fb_mb))
    return rows


def _forward(gen: Any, ws: torch.Tensor, cams: torch.Tensor, res: int) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            gen.render(ws, cams, neural_resolution=res)

    return forward


def _forward_backward(
    gen: Any, ws: torch.Tensor, cams: torch.Tensor, res: int, params: list
) -> Callable[[], None]:
    def forward_backward() -> None:
        for p in params:
            p.requires_grad_(True)
            p.grad = None
        out = gen.render(ws, cams, neural_resolution=res)
        (out.image.square().mean() + out.depth.mean()).backward()
        for p in params:
            p.requires_grad_(False)
            p.grad = None

    return forward_backward
