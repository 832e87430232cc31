"""``sym3d invert``, ``sym3d render`` and ``sym3d edit``: thin commands over the library.

Import-light: torch and the pipeline are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

EXPORT_PARTS = ("views", "video", "depth", "mesh", "plots", "metrics", "report")


def _check_progress(progress: str) -> str:
    if progress not in ("rich", "plain", "json", "off"):
        raise typer.BadParameter(f"expected one of rich, plain, json, off; got {progress!r}", param_hint="--progress")
    return progress


def _parse_export(export: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in export.split(",") if p.strip())
    unknown = [p for p in parts if p not in EXPORT_PARTS]
    if unknown:
        raise typer.BadParameter(f"unknown output(s) {unknown}; choose from {', '.join(EXPORT_PARTS)}", param_hint="--export")
    return parts


def load_generator_for(name: str, network: Path | None, device: str, options: dict[str, Any] | None = None) -> Any:
    """Build a registered generator; ``--network`` becomes its ``network`` option."""
    from sym3d.engine.api import load_generator

    opts = dict(options or {})
    if network is not None:
        if not network.exists():
            raise typer.BadParameter(f"{network}: no such file or folder", param_hint="--network")
        opts["network"] = str(network)
    return load_generator(name, device=device, **opts)


def _read_cameras(path: Path) -> dict[str, list[float]]:
    """EG3D ``dataset.json``: ``{"labels": [[filename, [25 numbers]], ...]}`` -> name -> label."""
    from sym3d.errors import ConfigError

    try:
        data = json.loads(path.read_text())
        labels = {str(Path(name).name): [float(v) for v in label] for name, label in data["labels"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: expected an EG3D dataset.json {{\"labels\": [[filename, [25 numbers]], ...]}} ({type(exc).__name__}: {exc}).") from None
    bad = [n for n, v in labels.items() if len(v) != 25]
    if bad:
        raise ConfigError(f"{path}: labels must have 25 numbers; {bad[0]!r} has {len(labels[bad[0]])}.")
    return labels


def invert(
    images: Annotated[list[Path], typer.Argument(help="Photos (PNG, JPEG, WebP, ...).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; one sub-folder per image.")] = Path("sym3d-out"),
    generator: Annotated[str, typer.Option(help="Registered generator: eg3d (needs --network), symheads, ...")] = "eg3d",
    network: Annotated[Path | None, typer.Option(help="Generator weights: an official EG3D .pkl or a folder from `sym3d eg3d convert`.")] = None,
    preset: Annotated[str, typer.Option(help="spi, pti, w, w+, pti-depth-reg or an ablation (see docs/engine.md).")] = "spi",
    steps: Annotated[int | None, typer.Option(help="Steps of each stage (shortcut for --set latent.steps=N --set tune.steps=N).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    config: Annotated[Path | None, typer.Option(help="TOML config merged on the preset.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Dotted override, repeatable: --set tune.lr=1e-4.")] = None,
    cameras: Annotated[Path | None, typer.Option(help="EG3D dataset.json with camera labels of already aligned crops (skips pose estimation).")] = None,
    pose: Annotated[str, typer.Option(help="Registered pose estimator for photos.")] = "mediapipe",
    export: Annotated[str, typer.Option(help=f"Outputs to write: {','.join(EXPORT_PARTS)}.")] = ",".join(EXPORT_PARTS),
    video_frames: Annotated[int, typer.Option(help="Frames of the orbit video.")] = 120,
    mesh_resolution: Annotated[int, typer.Option(help="Marching-cubes grid points per axis.")] = 128,
    mesh_level: Annotated[float | None, typer.Option(help="Mesh iso-level in density units (default: the generator's; EG3D: sigma 10).")] = None,
    progress: Annotated[str, typer.Option(help="rich, plain, json or off.")] = "rich",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace finished results.")] = False,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue interrupted runs from their checkpoints.")] = True,
) -> None:
    """Reconstruct faces from photos: crop + camera, inversion, views, orbit video, depth, mesh, report.

    Images are processed one after another; a failed image is reported and the others continue.
    """
    import time

    from rich.console import Console

    from sym3d.cli.progress import make_progress
    from sym3d.errors import Sym3DError, UserInputError
    from sym3d.plugins import default_registry
    from sym3d_extras.pipeline import process_photo

    _check_progress(progress)
    parts = _parse_export(export)
    for img in images:
        if img.is_dir():
            raise typer.BadParameter(f"{img} is a folder; pass image files, or use `sym3d batch {img}` for a folder.", param_hint="IMAGES")
    overrides = list(set_ or [])
    if steps is not None:
        overrides = [f"latent.steps={steps}", f"tune.steps={steps}", *overrides]
    labels = _read_cameras(cameras) if cameras is not None else None
    gen = load_generator_for(generator, network, device)
    estimator = None
    if labels is None:
        estimator = default_registry().build("pose", pose)
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    outcomes, failures = [], []
    for i, img in enumerate(images):
        t0 = time.perf_counter()
        dest = out / img.stem
        console.print(f"[bold]{i + 1}/{len(images)}[/] {img} -> {dest}")
        try:
            cam = None
            if labels is not None:
                import torch

                if img.name not in labels:
                    raise UserInputError(f"{img}: no camera label for {img.name!r} in {cameras}.")
                cam = torch.tensor(labels[img.name])
            with make_progress(progress, prefix=img.stem) as bar:  # type: ignore[arg-type]
                outcome = process_photo(
                    img,
                    dest,
                    generator=gen,
                    pose_estimator=estimator,
                    camera=cam,
                    preset=preset,
                    config=config,
                    overrides=overrides,
                    device=device,
                    callbacks=[bar],
                    export=parts,
                    export_options={"video_frames": video_frames, "mesh_resolution": mesh_resolution, "mesh_level": mesh_level},
                    overwrite=overwrite,
                    resume=resume,
                )
            outcomes.append(outcome)
            for note in outcome.notes:
                console.print(f"  note: {note}", markup=False)
            console.print(f"  [green]done[/] in {outcome.seconds:.0f} s: {Path(outcome.out_dir).resolve() / 'report.html'}")
        except Sym3DError as exc:
            failures.append((img, str(exc), isinstance(exc, UserInputError)))
            console.print(f"  [red]failed[/] after {time.perf_counter() - t0:.0f} s: ", end="")
            console.print(str(exc), markup=False)
    if len(images) > 1 or failures:
        console.print(f"\n{len(outcomes)} done, {len(failures)} failed")
        for img, err, _ in failures:
            console.print(f"  {img}: ", end="")
            console.print(err, markup=False)
    if failures:
        raise typer.Exit(2 if all(user for _, _, user in failures) else 1)


def _load_result(result_dir: Path, network: Path | None, device: str) -> tuple[Any, Any]:
    from sym3d.engine.result import InversionResult

    result = InversionResult.load(result_dir)
    options = result.generator_factory_options()  # refuses a generator it cannot rebuild
    if network is not None:
        options.pop("network", None)
    gen = load_generator_for(result.generator_name, network, device, options)
    return result, result.apply(gen)


def render(
    result_dir: Annotated[Path, typer.Argument(help="A result folder written by `sym3d invert`.", show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: RESULT/render).")] = None,
    network: Annotated[Path | None, typer.Option(help="Generator weights, if they moved since the inversion.")] = None,
    views: Annotated[int, typer.Option(help="Views in the novel-view grid.")] = 9,
    yaw_range: Annotated[float, typer.Option(help="Grid yaw range (degrees, +-).")] = 50.0,
    video_frames: Annotated[int, typer.Option(help="Frames of the orbit video (0: no video).")] = 120,
    mesh_resolution: Annotated[int, typer.Option(help="Marching-cubes resolution (0: no mesh).")] = 128,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Render novel views, an orbit video and a mesh from a saved result."""
    import math

    from sym3d_extras.export import export_result

    result, tuned = _load_result(result_dir, network, device)
    dest = out or (result_dir / "render")
    what = ["views", "depth"] + (["video"] if video_frames > 0 else []) + (["mesh"] if mesh_resolution > 0 else [])
    written = export_result(
        result, tuned, dest, what=what, num_views=views, yaw_range=math.radians(yaw_range), video_frames=max(video_frames, 1), mesh_resolution=max(mesh_resolution, 8)
    )
    for name, path in written.items():
        typer.echo(f"{name}: {path}")


def edit(
    result_dir: Annotated[Path, typer.Argument(help="A result folder written by `sym3d invert`.", show_default=False)],
    direction: Annotated[Path, typer.Option(help="Latent direction (.npy or .pt): [w_dim], [num_ws, w_dim] or [1, num_ws, w_dim].")],
    strength: Annotated[list[float] | None, typer.Option(help="Edit strength(s), repeatable (default: -2 -1 1 2).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: RESULT/edit-<direction>).")] = None,
    network: Annotated[Path | None, typer.Option(help="Generator weights, if they moved since the inversion.")] = None,
    views: Annotated[int, typer.Option(help="Views per strength.")] = 5,
    yaw_range: Annotated[float, typer.Option(help="Yaw range (degrees, +-).")] = 40.0,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Latent-direction editing: render ws + s * direction with the tuned generator, for each strength."""
    import math

    import torch

    from sym3d.camera import look_at
    from sym3d.errors import ShapeError, UserInputError
    from sym3d.image import from_model_range, save_image

    result, tuned = _load_result(result_dir, network, device)
    if not direction.exists():
        raise UserInputError(f"{direction}: no such file.")
    if direction.suffix == ".npy":
        import numpy as np

        d = torch.from_numpy(np.load(direction, allow_pickle=False)).float()
    else:
        d = torch.load(direction, map_location="cpu", weights_only=True).float()
    ws = result.ws.float()
    try:
        d = d.reshape(1, 1, -1).expand_as(ws) if d.numel() == ws.shape[-1] else d.reshape(ws.shape)
    except RuntimeError:
        raise ShapeError("direction", f"[{ws.shape[-1]}] or {list(ws.shape[1:])}", d.shape) from None
    strengths = strength or [-2.0, -1.0, 1.0, 2.0]
    yaws = torch.linspace(-math.radians(yaw_range), math.radians(yaw_range), views)
    cams = look_at(yaws, 0.0)[None].to(device)
    dest = out or (result_dir / f"edit-{direction.stem}")
    rows = []
    for s in [0.0, *strengths]:
        with torch.no_grad():
            img = from_model_range(tuned.render((ws + s * d).to(device), cams).image[0]).clamp(0, 1).cpu()
        rows.append(torch.cat(list(img), dim=-1))
        save_image(rows[-1], dest / f"strength_{s:+g}.png")
    grid = save_image(torch.cat(rows, dim=-2), dest / "grid.png")
    typer.echo(f"rows: strength 0 (the reconstruction), then {', '.join(f'{s:+g}' for s in strengths)}; columns: yaw -{yaw_range:g}..+{yaw_range:g} degrees")
    typer.echo(f"grid: {grid}")
