"""``sym3d bench ...``: benchmarks that print tables (never timed tests)."""

from __future__ import annotations

from typing import Annotated

import typer

from sym3d.defaults import DEFAULT_GENERATOR

__all__ = ["engine", "register"]

_HELP = "Benchmarks that print tables: engine speed, EG3D speed, SymHeads quality."


def _group() -> None:
    """Benchmarks that print tables."""


def engine(
    generator: Annotated[str, typer.Option(help="Registered generator name.")] = DEFAULT_GENERATOR,
    network: Annotated[
        str | None, typer.Option(help="Checkpoint for generators that need one (e.g. eg3d).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    presets: Annotated[
        str, typer.Option(help="Comma-separated presets.")
    ] = "w+,pti,pti-depth-reg,spi",
    latent_steps: Annotated[
        int, typer.Option(help="Stage-1 steps per preset (first is warm-up).")
    ] = 6,
    tune_steps: Annotated[
        int, typer.Option(help="Stage-2 steps per preset (first is warm-up).")
    ] = 9,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: torch default).")] = 0,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Config overrides, e.g. --set perceptual=mse.")
    ] = None,
    progress: Annotated[
        str,
        typer.Option(help="rich, plain, json (one JSON object per event) or off; on stderr."),
    ] = "rich",
) -> None:
    """Milliseconds per step for each stage and preset, and the SPI/PTI cost ratios.

    The table goes to stdout; progress (per preset, after a short warm-up run) to stderr.
    """
    import sys

    import torch
    from rich.console import Console
    from rich.table import Table

    from sym3d.cli.progress import make_progress
    from sym3d.engine.api import load_generator
    from sym3d.engine.bench import bench_engine

    if progress not in ("rich", "plain", "json", "off"):
        raise typer.BadParameter(
            f"expected one of rich, plain, json, off; got {progress!r}", param_hint="--progress"
        )

    if threads:
        torch.set_num_threads(threads)
    options = {"network": network} if network else {}
    gen = load_generator(generator, device=device, **options)
    rows = bench_engine(
        gen,
        presets=[p.strip() for p in presets.split(",") if p.strip()],
        latent_steps=latent_steps,
        tune_steps=tune_steps,
        overrides=set_ or [],
        device=device,
        # the table is the product on stdout: every kind of progress goes to stderr
        progress=lambda label: make_progress(
            progress,  # type: ignore[arg-type]  (checked above)
            prefix=label,
            stream=sys.stderr,
        ),
    )
    table = Table(
        title=f"engine ms/step: generator={generator} device={device} threads={torch.get_num_threads()}"
    )
    for col in (
        "preset",
        "stage-1 views",
        "stage 1",
        "stage 2 plain",
        "stage 2 aux",
        "stage 2 mean",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r.preset,
            str(r.views_latent),
            f"{r.latent_ms:.1f}",
            f"{r.tune_plain_ms:.1f}",
            f"{r.tune_aux_ms:.1f}",
            f"{r.tune_mean_ms:.1f}",
        )
    console = Console()
    console.print(table)
    by = {r.preset: r for r in rows}
    single = by.get("w+") or by.get("pti")
    if "spi" in by and single is not None:
        console.print(
            f"stage 1 with mirror (2 views, one render call) / single view: {by['spi'].latent_ms / single.latent_ms:.2f}x"
        )
    if "spi" in by and "pti" in by:
        console.print(
            f"stage 2 SPI/PTI cost per step: mean {by['spi'].tune_mean_ms / by['pti'].tune_mean_ms:.2f}x, auxiliary steps {by['spi'].tune_aux_ms / by['pti'].tune_aux_ms:.2f}x"
        )


def register(app: typer.Typer) -> typer.Typer:
    """Mount a new ``sym3d bench`` group with its ``engine`` command on ``app``; return the group.

    The group belongs to this ``app`` only: plugins add their benchmarks to the object they get
    from the ``register_commands(app, bench)`` hook.
    """
    bench = typer.Typer(name="bench", help=_HELP, no_args_is_help=True)
    bench.callback()(_group)
    bench.command("engine")(engine)
    app.add_typer(bench, name="bench")
    return bench
