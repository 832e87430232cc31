"""Engine speed benchmark: milliseconds per step for each stage and preset.

Runs short inversions on a synthetic target (the generator's own render of a random latent
from a side view, so no data is needed) and reads the per-step wall times from the history.
The first step of each stage is a warm-up and is excluded.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import attrs
import torch

from sym3d.camera import look_at
from sym3d.image import from_model_range
from sym3d.protocols import Generator3D

__all__ = ["EngineTiming", "bench_engine"]


@attrs.frozen
class EngineTiming:
    """Per-step times (ms) of one preset: stage 1, stage 2 plain steps, stage 2 auxiliary steps, their mean."""

    preset: str
    latent_ms: float
    tune_plain_ms: float
    tune_aux_ms: float
    tune_mean_ms: float
    views_latent: int


def _median_ms(values: Sequence[float]) -> float:
    return 1000.0 * statistics.median(values) if values else float("nan")


def bench_engine(
    generator: Generator3D,
    *,
    presets: Sequence[str] = ("w+", "pti", "spi"),
    latent_steps: int = 6,
    tune_steps: int = 9,
    yaw: float = 0.5,
    overrides: Sequence[str] = (),
    device: str | torch.device | None = None,
    progress: Callable[[str], AbstractContextManager[Callable[[Any], None]]] | None = None,
) -> list[EngineTiming]:
    """Time the stages of each preset on ``generator`` (see module docstring).

    Args:
        progress: ``progress(label)`` returns a context manager that is an engine callback (e.g.
            ``lambda label: sym3d.cli.progress.make_progress("plain", prefix=label)``); it is
            entered around each run, labelled ``"warm-up"`` or the preset's name.
    """
    import sym3d

    def watch(label: str) -> AbstractContextManager[Callable[[Any], None] | None]:
        return progress(label) if progress is not None else contextlib.nullcontext(None)

    dev = torch.device(device) if device is not None else next(generator.parameters()).device
    cam = look_at(yaw, 0.0, device=dev)[None]
    with torch.no_grad():
        z = torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(0)).to(dev)
        ws = generator.mapping(z, cam)
        target = from_model_range(generator.render(ws, cam[:, None]).image[:, 0]).clamp(0, 1)
    rows = []
    # Warm-up (allocator, lazy weight loading, first-call overheads), not timed.
    warm = ["latent.steps=2", "tune.steps=2", "tune.early_stop=0", *overrides]
    with watch("warm-up") as cb:
        cbs = [cb] if cb is not None else []
        sym3d.invert(
            target,
            cam,
            generator=generator,
            preset=presets[0],
            overrides=warm,
            device=dev,
            callbacks=cbs,
            progress="off",
        )
    for preset in presets:
        over: list[Any] = [
            f"latent.steps={latent_steps}",
            f"tune.steps={tune_steps}",
            "tune.early_stop=0",
            *overrides,
        ]
        if preset in ("w", "w+"):
            over.append("tune.steps=0")
        with watch(preset) as cb:
            cbs = [cb] if cb is not None else []
            r = sym3d.invert(
                target,
                cam,
                generator=generator,
                preset=preset,
                overrides=over,
                device=dev,
                callbacks=cbs,
                progress="off",
            )
        every = r.config.tune.aux_every
        lat = [h["seconds"] for h in r.history if h["stage"] == "latent"][1:]
        tune = [h for h in r.history if h["stage"] == "generator"][1:]
        plain = [h["seconds"] for h in tune if h["step"] % every != 0]
        aux = [h["seconds"] for h in tune if h["step"] % every == 0]
        mirror_view = r.config.latent.terms.get("mirror_view")
        mirror = (
            mirror_view is not None and mirror_view.enabled and abs(yaw) >= r.config.mirror_min_yaw
        )
        rows.append(
            EngineTiming(
                preset=preset,
                latent_ms=_median_ms(lat),
                tune_plain_ms=_median_ms(plain),
                tune_aux_ms=_median_ms(aux),
                tune_mean_ms=1000.0 * statistics.mean(h["seconds"] for h in tune)
                if tune
                else float("nan"),
                views_latent=2 if mirror else 1,
            )
        )
    return rows
