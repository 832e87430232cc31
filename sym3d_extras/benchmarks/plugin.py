"""Entry module ``benchmarks``: ``sym3d demo``, ``sym3d bench quality`` and ``sym3d bench batch``.

The commands use the SymHeads world; their modules import only typer until a command runs.
"""

from __future__ import annotations

from typing import Any

from sym3d.hookspecs import hookimpl


@hookimpl
def register_commands(app: Any, bench: Any) -> None:
    """Add ``demo`` to the root app and ``quality``, ``batch`` to its ``bench`` group."""
    from sym3d_extras.benchmarks.cli import bench_batch, bench_quality, demo

    app.command("demo")(demo)
    bench.command("quality")(bench_quality)
    bench.command("batch")(bench_batch)
