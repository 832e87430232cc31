"""Entry module of the EG3D plugin: registers the generator and the ``sym3d eg3d`` commands.

Imports nothing heavy: the generator factory and the commands import torch when used.
"""

from __future__ import annotations

from typing import Any

from sym3d.hookspecs import hookimpl


def _eg3d(**options: Any) -> Any:
    from sym3d_eg3d.adapter import build_eg3d

    return build_eg3d(**options)


@hookimpl
def register_generators(register) -> None:  # noqa: ANN001
    """Register ``eg3d`` (options: ``network=`` an official .pkl or a converted folder)."""
    register(
        "eg3d",
        _eg3d,
        description="EG3D tri-plane generator (official checkpoints via the safe loader; network=PATH).",
    )


@hookimpl
def register_commands(app, bench) -> None:  # noqa: ANN001
    """Mount ``sym3d eg3d ...`` (convert), ``sym3d bench eg3d`` and ``sym3d bench gpu``."""
    from sym3d_eg3d.cli import app as eg3d_app
    from sym3d_eg3d.cli import bench as bench_eg3d
    from sym3d_eg3d.cli import bench_gpu

    app.add_typer(eg3d_app, name="eg3d")
    bench.command("eg3d")(bench_eg3d)
    bench.command("gpu")(bench_gpu)


@hookimpl
def doctor_checks() -> list[Any]:
    """CUDA kernel health: CUDA torch, nvcc/CUDA_HOME, GPU arch, cached builds."""
    from sym3d_eg3d.ops._build import kernel_doctor_checks

    return kernel_doctor_checks()
