"""``sym3d batch``. Import-light: the work is imported inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sym3d.app.commands import (
    EXPORT_PARTS,
    CamerasOption,
    GeneratorOption,
    MeshLevelOption,
    MeshResolutionOption,
    PresetOption,
    RunNetworkOption,
    StepsOption,
    VideoFramesOption,
)
from sym3d.defaults import DEFAULT_GENERATOR

__all__ = ["batch", "parse_export_or_none"]


def parse_export_or_none(export: str) -> tuple[str, ...]:
    """``--export`` of ``sym3d batch``: the parts, or ``()`` for ``none``."""
    from sym3d.app.commands import _parse_export

    return () if export.strip().lower() == "none" else _parse_export(export)


def batch(
    input_dir: Annotated[
        Path | None,
        typer.Argument(
            help="Folder of images (PNG, JPEG, WebP, ...; not recursive).", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output folder: one result folder per image (as `sym3d invert` writes it) and manifest.sqlite.",
        ),
    ] = Path("sym3d-batch"),
    summary: Annotated[
        Path | None,
        typer.Option(
            "--summary",
            help="Print the state of a batch output folder (done/failed/pending, mean time, mean metrics) and exit.",
        ),
    ] = None,
    generator: GeneratorOption = DEFAULT_GENERATOR,
    network: RunNetworkOption = None,
    preset: PresetOption = "spi",
    steps: StepsOption = None,
    config: Annotated[Path | None, typer.Option(help="TOML config merged on the preset.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Dotted override, repeatable: --set tune.lr=1e-4 (--set seed=N: the engine seed).",
        ),
    ] = None,
    cameras: CamerasOption = None,
    pose: Annotated[
        str, typer.Option(help="Registered pose estimator for photos (without --cameras).")
    ] = "mediapipe",
    export: Annotated[
        str, typer.Option(help=f"Outputs to write: {','.join(EXPORT_PARTS)}, or none.")
    ] = ",".join(EXPORT_PARTS),
    video_frames: VideoFramesOption = 120,
    mesh_resolution: MeshResolutionOption = 128,
    mesh_level: MeshLevelOption = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Run on Ray: auto (join RAY_ADDRESS or a local `ray start`, else start a local Ray) or a cluster address (ray://head:10001). Needs the dist extra.",
        ),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            help="auto (one worker per CUDA device when there are any, else CPU), cpu, cuda, cuda:N (local only)."
        ),
    ] = "auto",
    workers: Annotated[
        int | None,
        typer.Option(
            help="Workers (default: local: one per GPU, else half the cores; Ray: one per GPU of the cluster, else CPUs / threads)."
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="torch CPU threads per worker (default: local: the cores split across workers; Ray: 1). Equal threads give equal results on both backends."
        ),
    ] = None,
    max_attempts: Annotated[
        int,
        typer.Option(
            help="Attempts per image, across runs: a re-run retries failed images until they had this many; a lost worker's image is retried at once."
        ),
    ] = 3,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed", help="Also retry failed images that used up --max-attempts."
        ),
    ] = False,
    progress: Annotated[str, typer.Option(help="rich, plain, json or off.")] = "rich",
) -> None:
    """Invert every image of a folder, on this machine or on a Ray cluster; resumable.

    Re-running the same command skips finished images, retries failed ones (up to --max-attempts)
    and resumes interrupted ones. A result counts as done only once its folder is complete.
    """
    from rich.console import Console

    from sym3d.app.commands import _check_progress

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    if summary is not None:
        from sym3d.app.batch.summary import print_summary, summarize

        print_summary(summarize(summary), Console())
        return
    if input_dir is None:
        raise typer.BadParameter(
            "pass a folder of images, or --summary OUT_DIR.", param_hint="INPUT_DIR"
        )
    _check_progress(progress)
    parts = parse_export_or_none(export)
    if network is not None and not network.exists():
        raise typer.BadParameter(f"{network}: no such file or folder", param_hint="--network")
    if config is not None and not config.is_file():
        raise typer.BadParameter(f"{config}: no such file", param_hint="--config")
    overrides = list(set_ or [])
    if steps is not None:
        overrides = [f"latent.steps={steps}", f"tune.steps={steps}", *overrides]
    _validate_settings(preset, config, overrides)

    from sym3d.app.batch.progress import make_batch_progress
    from sym3d.app.batch.runner import BatchSettings, run_batch
    from sym3d.app.batch.summary import print_summary, summarize
    from sym3d.app.batch.tasks import JobSpec

    spec = JobSpec(
        generator=generator,
        network=str(network.resolve()) if network else None,
        pose=None if cameras is not None else pose,
        preset=preset,
        config=str(config.resolve()) if config else None,
        overrides=tuple(overrides),
        export=parts,
        export_options={
            "video_frames": video_frames,
            "mesh_resolution": mesh_resolution,
            "mesh_level": mesh_level,
        },
    )
    settings = BatchSettings(
        input_dir=input_dir.resolve(),
        out_dir=out.resolve(),
        spec=spec,
        cameras=cameras,
        max_attempts=max_attempts,
        retry_failed=retry_failed,
        ray=ray,
        device=device,
        workers=workers,
        threads=threads,
    )
    with make_batch_progress(progress) as bar:
        report = run_batch(settings, progress=bar)
    if progress != "json":
        print_summary(summarize(out), console)
    for line in report.refused:  # not in the manifest: their names cannot name a result
        console.print(f"skipped {line}", markup=False, highlight=False)
    if report.interrupted:
        console.print(
            f"interrupted: {report.counts['done']} done, {report.counts['pending'] + report.counts['running']} pending. Re-run the same command to resume.",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(130)
    if report.counts["failed"] or report.refused:
        raise typer.Exit(1)


def _validate_settings(preset: str, config: Path | None, overrides: list[str]) -> None:
    """Fail before starting workers on an unknown preset, a bad override or prior."""
    from sym3d.engine.api import resolve_config
    from sym3d.plugins import default_registry
    from sym3d.priors import check_priors

    check_priors(resolve_config(preset, config, overrides).priors, default_registry())
