"""Commands of the benchmarks plugin: ``sym3d demo``, ``sym3d bench quality``, ``sym3d bench batch``.

Import-light: the work is imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sym3d.app.commands import EXPORT_PARTS


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("sym3d-demo"),
    seed: Annotated[int, typer.Option(help="Which SymHeads head.")] = 3,
    yaw: Annotated[float, typer.Option(help="Yaw of the input view, degrees.")] = 35.0,
    progress: Annotated[str, typer.Option(help="rich, plain, json or off.")] = "rich",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Config overrides for both methods, e.g. --set tune.steps=100."),
    ] = None,
) -> None:
    """Invert a synthetic head seen at 35 degrees with PTI and with SPI; write a comparison figure and metrics."""
    import time

    from sym3d.cli.progress import make_progress
    from sym3d_extras.benchmarks.demo import run_demo

    if progress not in ("rich", "plain", "json", "off"):
        raise typer.BadParameter(
            f"expected one of rich, plain, json, off; got {progress!r}", param_hint="--progress"
        )
    t0 = time.perf_counter()
    renderers = {}

    def callbacks_for(method: str) -> list:
        r = make_progress(progress, prefix=method)  # type: ignore[arg-type]
        r.__enter__()
        renderers[method] = r
        return [r]

    try:
        paths = run_demo(
            out, seed=seed, source_yaw=yaw, overrides=set_ or [], callbacks_for=callbacks_for
        )
    finally:
        for r in renderers.values():
            r.__exit__(None, None, None)
    typer.echo((out / "metrics.md").read_text())
    typer.echo(f"figure:  {paths['figure'].resolve()}")
    typer.echo(f"metrics: {paths['metrics_md'].resolve()}")
    typer.echo(f"results: {(out / 'pti').resolve()}, {(out / 'spi').resolve()}")
    typer.echo(f"done in {time.perf_counter() - t0:.0f} s")


def bench_quality(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output folder (rows.csv is appended; a re-run resumes)."),
    ] = Path("bench-results/quality"),
    heads: Annotated[
        int,
        typer.Option(
            help="Number of heads (seeds 0..N-1; hyperparameters were chosen on seeds >= 100)."
        ),
    ] = 8,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated head seeds (instead of --heads), e.g. to split a run over processes."
        ),
    ] = None,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: default).")] = 0,
    seed: Annotated[int, typer.Option(help="Engine seed.")] = 0,
    size: Annotated[int, typer.Option(help="Image side of the world and the generator.")] = 64,
    source_yaws: Annotated[
        str, typer.Option(help="Comma-separated source yaws (degrees).")
    ] = "0,15,30,45,60",
    methods: Annotated[
        str, typer.Option(help="Comma-separated presets.")
    ] = "w+,pti,pti-depth-reg,spi,spi-no-mirror,spi-no-warp,spi-no-authentic-mask,spi-no-depth-reg",
    conditions: Annotated[
        str,
        typer.Option(
            help="Comma-separated conditions, each factors joined by '+' (detail, mole, fringe, sidelight, sidelight-right, toplight, lowlight, twolights, colourlight)."
        ),
    ] = "detail+mole,detail+mole+fringe,detail+mole+sidelight",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Config overrides for every method.")
    ] = None,
    lpips: Annotated[
        bool, typer.Option("--lpips/--no-lpips", help="Compute LPIPS (needs the lpips extra).")
    ] = True,
) -> None:
    """SymHeads quality benchmark: PSNR/SSIM/LPIPS/depth/mole/ghost at novel views, means with 95% CIs over heads."""
    import time

    import torch

    from sym3d.errors import ConfigError
    from sym3d_extras.benchmarks.quality import (
        QualitySettings,
        parse_condition,
        run_quality,
        write_summary,
    )

    if threads:
        torch.set_num_threads(threads)

    try:
        for c in conditions.split(","):
            if c:
                parse_condition(c)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--conditions") from None
    settings = QualitySettings(
        heads=tuple(int(x) for x in seeds.split(",")) if seeds else tuple(range(heads)),
        source_yaws=tuple(float(x) for x in source_yaws.split(",") if x),
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        conditions=tuple(c for c in conditions.split(",") if c),
        size=size,
        overrides=tuple(set_ or ()),
        seed=seed,
        lpips=lpips,
    )
    t0 = time.perf_counter()

    def report(label: str, done: int, total: int) -> None:
        typer.echo(f"[{time.perf_counter() - t0:7.0f}s] {done}/{total} {label}", err=True)

    rows = run_quality(settings, out, progress=report)
    paths = write_summary(rows, out)
    typer.echo(paths["summary_md"].read_text())
    typer.echo(
        f"rows: {rows.resolve()}\nsummary: {paths['summary_md'].resolve()}\nplots: {', '.join(str(p) for k, p in paths.items() if k.startswith('plot_'))}"
    )


def bench_batch(
    images: Annotated[int, typer.Option(help="SymHeads images to invert per configuration.")] = 8,
    steps: Annotated[int, typer.Option(help="Steps of each stage.")] = 10,
    workers: Annotated[str, typer.Option(help="Comma-separated local worker counts.")] = "1,2",
    ray: Annotated[
        bool,
        typer.Option("--ray/--no-ray", help="Also measure a local Ray (needs the dist extra)."),
    ] = True,
    ray_workers: Annotated[int, typer.Option(help="Ray actors (threads: cores / actors).")] = 2,
    export: Annotated[
        str, typer.Option(help=f"Outputs per image: {','.join(EXPORT_PARTS)}, or none.")
    ] = "metrics",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Extra config overrides.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Keep the inputs and results here (default: a temporary folder)."
        ),
    ] = None,
    ray_niceness: Annotated[
        int,
        typer.Option(
            help="Niceness of Ray's worker processes (Ray's default: 15; the local pool runs at 0)."
        ),
    ] = 0,
) -> None:
    """Batch throughput with the SymHeads generator: images/minute for local pools and a local Ray, and Ray's per-image overhead."""
    from rich.console import Console

    from sym3d.app.batch.cli import parse_export_or_none
    from sym3d_extras.benchmarks.batch import BatchBenchSettings, print_bench, run_bench

    counts = tuple(int(x) for x in workers.split(",") if x.strip())
    settings = BatchBenchSettings(
        images=images,
        steps=steps,
        local_workers=counts,
        ray_workers=ray_workers if ray else 0,
        export=parse_export_or_none(export),
        overrides=tuple(set_ or ()),
        ray_niceness=ray_niceness,
    )

    def say(text: str) -> None:
        typer.echo(text, err=True)

    rows, meta = run_bench(settings, out=out, log=say)
    console = Console()
    print_bench(rows, meta, console if console.is_terminal else Console(width=150))
