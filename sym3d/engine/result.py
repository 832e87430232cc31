"""The outcome of an inversion, and its on-disk form.

Folder layout (the CLI adds views, video, depth, mesh and a report next to these)::

    latent.pt               ws [1, num_ws, w_dim], camera [1, 25], generator id, scope
    tuned.safetensors       the tuned parameters only (stage 2), by parameter name
    history.json            every logged loss term per step
    summary.json            run facts (steps run, early stops, seconds per stage)
    config.resolved.toml    the full configuration
    input.png               the aligned input image the inversion saw

Every file name of a result folder, these and the exports', is spelled once, in
:class:`ResultFiles`; other modules import it from here.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from sym3d.atomic import atomic_path, atomic_write_bytes
from sym3d.config import InversionConfig, dump_toml, load_toml
from sym3d.engine.result_files import (
    MAX_JSON_BYTES,
    RESULT_FORMAT,
    read_json,
    read_latent,
    read_tuned,
)
from sym3d.errors import CheckpointError
from sym3d.files import check_regular_file
from sym3d.image import load_image, save_image
from sym3d.protocols import Generator3D

__all__ = ["InversionResult", "RESULT_FORMAT", "ResultFiles"]


class ResultFiles:
    """The file names of a result folder, relative to it: the one place they are spelled.

    :meth:`InversionResult.save` writes the first group (:attr:`SAVED`); the exports
    (``sym3d.app.export``) and the photo pipeline write the others next to them.
    """

    # written by InversionResult.save
    LATENT = "latent.pt"
    TUNED = "tuned.safetensors"
    HISTORY = "history.json"
    SUMMARY = "summary.json"
    CONFIG = "config.resolved.toml"
    TARGET = "input.png"
    SAVED = (LATENT, TUNED, CONFIG, HISTORY, SUMMARY, TARGET)
    """The files :meth:`InversionResult.save` may write (``tuned``, ``input`` only when set)."""

    # written by the photo pipeline
    RUN = "run.json"
    POSE = "pose.json"
    VIEWS = "views"
    PHOTO = "views/photo.jpg"
    ALIGNED = "views/aligned.png"
    FACE_MASK = "views/face_mask.png"

    # written by the exports
    INPUT_VIEW = "views/input.png"
    RECONSTRUCTION = "views/reconstruction.png"
    MIRROR = "views/mirror.png"
    MIRROR_PRIOR = "views/mirror_prior.png"
    NOVEL_GRID = "views/novel_grid.png"
    ORBIT_MP4 = "orbit.mp4"
    ORBIT_GIF = "orbit.gif"
    DEPTH_IMAGE = "depth.png"
    DEPTH_ARRAY = "depth.npy"
    MESH = "mesh.ply"
    LOSS = "loss.png"
    METRICS = "metrics.json"
    REPORT = "report.html"


@attrs.frozen(kw_only=True)
class InversionResult:
    """What :func:`sym3d.invert` returns.

    Attributes:
        ws: ``[1, num_ws, w_dim]`` pivot latent (CPU).
        camera: ``[1, 25]`` camera of the input view as inverted: the refined camera when
            ``latent.refine_camera`` is on, else the input camera.
        input_camera: ``[1, 25]`` the camera that was given (or estimated); ``None`` in results
            written before sym3d kept it.
        generator_name: registry name of the generator family.
        generator_options: factory options that rebuild it exactly from the registry (e.g. the
            checkpoint path); ``None`` when it cannot be rebuilt (``generator_note`` says why).
        generator_note: why the generator cannot be rebuilt (empty when it can).
        scope: the tunable-parameter scope of stage 2.
        tuned: tuned parameter values by name (CPU, empty when stage 2 did not run).
        history: per step: ``{"stage", "step", "lr", "seconds", <term>: value}``.
        config: the resolved configuration.
        target: ``[1, 3, H, W]`` the input image at the generator's resolution, in ``[0, 1]``.
        summary: run facts (steps run, early stops, seconds per stage).
    """

    ws: torch.Tensor
    camera: torch.Tensor
    generator_name: str
    generator_options: Mapping[str, Any] | None = attrs.field(factory=dict)
    generator_note: str = ""
    input_camera: torch.Tensor | None = None
    scope: str = "all"
    tuned: Mapping[str, torch.Tensor] = attrs.field(factory=dict)
    history: tuple[Mapping[str, Any], ...] = ()
    config: InversionConfig = attrs.field(factory=InversionConfig)
    target: torch.Tensor | None = None
    summary: Mapping[str, Any] = attrs.field(factory=dict)

    # ------------------------------------------------------------------ use
    def apply(self, generator: Generator3D) -> Generator3D:
        """A copy of ``generator`` with the tuned parameters loaded (eval mode, frozen).

        Raises:
            CheckpointError: a tuned parameter name or shape does not match the generator.
        """
        g = copy.deepcopy(generator).eval()
        params = dict(g.named_parameters())
        for name, value in self.tuned.items():
            if name not in params:
                raise CheckpointError(
                    f"tuned parameter {name!r} does not exist in generator {getattr(generator, 'name', type(generator).__name__)!r}; "
                    "was this result made with another generator?"
                )
            if params[name].shape != value.shape:
                raise CheckpointError(
                    f"tuned parameter {name!r}: expected shape {list(params[name].shape)}, got {list(value.shape)}."
                )
            with torch.no_grad():
                params[name].copy_(value.to(params[name]))
        g.requires_grad_(False)
        return g

    def generator_factory_options(self) -> dict[str, Any]:
        """The factory options that rebuild this result's generator from the registry.

        Raises:
            CheckpointError: the generator cannot be rebuilt (built outside the registry, or
                with options JSON cannot hold); pass it to :meth:`apply` instead.
        """
        if self.generator_options is None:
            raise CheckpointError(
                f"this result's generator {self.generator_name!r} cannot be rebuilt from the registry: "
                f"{self.generator_note or 'its factory options were not recorded'}.",
                hint="build the same generator yourself and call result.apply(generator), or invert "
                "with a generator made by sym3d.load_generator(name, **options).",
            )
        return dict(self.generator_options)

    def generator(self, device: str | torch.device | None = None, **kwargs: Any) -> Generator3D:
        """The tuned generator, rebuilt from the registry with the recorded options.

        The rebuilt generator goes through :meth:`apply`; ``kwargs`` go to
        :func:`sym3d.load_generator` (e.g. ``registry=``).

        Raises:
            CheckpointError: the generator cannot be rebuilt (see :meth:`generator_factory_options`).
        """
        from sym3d.engine.api import load_generator

        options = self.generator_factory_options()
        base = load_generator(self.generator_name, device=device, **kwargs, **options)
        return self.apply(base)

    def render(self, generator: torch.nn.Module, cameras: torch.Tensor, **kwargs: Any) -> Any:
        """Render the result from ``cameras [V, 25]`` or ``[1, V, 25]`` with the tuned ``generator``.

        ``generator`` must already be the tuned copy (see :meth:`apply`).
        """
        cams = cameras[None] if cameras.dim() == 2 else cameras
        dev = next(generator.parameters()).device
        with torch.no_grad():
            return generator.render(self.ws.to(dev), cams.to(dev), **kwargs)

    # ------------------------------------------------------------------ disk
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the result files into ``directory`` (each file atomically)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": RESULT_FORMAT,
            "ws": self.ws.detach().cpu(),
            "camera": self.camera.detach().cpu(),
            "generator": self.generator_name,
            "generator_options": json.dumps(
                None if self.generator_options is None else dict(self.generator_options)
            ),
            "generator_note": self.generator_note,
            "scope": self.scope,
        }
        if self.input_camera is not None:
            meta["input_camera"] = self.input_camera.detach().cpu()
        with atomic_path(d / ResultFiles.LATENT) as tmp:
            torch.save(meta, tmp)
        if self.tuned:
            from safetensors.torch import save as st_save

            blob = st_save(
                {k: v.detach().cpu().contiguous() for k, v in self.tuned.items()},
                metadata={
                    "format": RESULT_FORMAT,
                    "generator": self.generator_name,
                    "scope": self.scope,
                },
            )
            atomic_write_bytes(d / ResultFiles.TUNED, blob)
        history = json.dumps(list(self.history), indent=1).encode()
        atomic_write_bytes(d / ResultFiles.HISTORY, history)
        summary = json.dumps(dict(self.summary), indent=1, default=str).encode()
        atomic_write_bytes(d / ResultFiles.SUMMARY, summary)
        dump_toml(self.config, d / ResultFiles.CONFIG)
        if self.target is not None:
            save_image(self.target.detach().cpu(), d / ResultFiles.TARGET)
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> InversionResult:
        """Read a result folder written by :meth:`save` (never executes code from it).

        Only regular files are read, each within a size limit; ``latent.pt`` must hold a finite
        ``ws [1, num_ws, w_dim]``, a ``camera [1, 25]``, short names and a JSON object of
        generator options (which stay data: see ``sym3d render``'s ``--network``).

        Raises:
            CheckpointError: missing, damaged or edited files.
            InputFileError: a file is a FIFO, device, socket or folder, or over its size limit.
        """
        d, f = Path(directory), ResultFiles
        latent = d / f.LATENT
        if not latent.exists():
            raise CheckpointError(
                f"{d}: not a sym3d result folder (no {f.LATENT}).",
                hint="pass the output folder of `sym3d invert`.",
            )
        # Every file is read through sym3d.files: regular files only (a FIFO or /dev/zero is
        # refused, never read), each within a size limit.
        meta = read_latent(latent)
        tuned: dict[str, torch.Tensor] = {}
        if (d / f.TUNED).exists():
            tuned = read_tuned(d / f.TUNED)
        history: tuple = ()
        if (d / f.HISTORY).exists():
            history = tuple(read_json(d / f.HISTORY, list))
        summary = read_json(d / f.SUMMARY, dict) if (d / f.SUMMARY).exists() else {}
        config = InversionConfig()
        if (d / f.CONFIG).exists():
            check_regular_file(d / f.CONFIG, f.CONFIG, max_bytes=MAX_JSON_BYTES)
            config = load_toml(d / f.CONFIG)
        target = None
        if (d / f.TARGET).exists():
            check_regular_file(d / f.TARGET, f.TARGET, max_bytes=MAX_JSON_BYTES)
            target = load_image(d / f.TARGET)
        return cls(
            ws=meta["ws"],
            camera=meta["camera"],
            generator_name=meta["generator"],
            generator_options=meta["generator_options"],
            generator_note=meta.get("generator_note", ""),
            input_camera=meta.get("input_camera"),
            scope=meta.get("scope", "all"),
            tuned=tuned,
            history=history,
            config=config,
            target=target,
            summary=summary,
        )
