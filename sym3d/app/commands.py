"""``sym3d invert``, ``sym3d render`` and ``sym3d edit``: thin commands over the library.

Import-light: torch and the pipeline are imported inside the commands.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from sym3d.defaults import DEFAULT_GENERATOR

EXPORT_PARTS = ("views", "video", "depth", "mesh", "plots", "metrics", "report")
GENERATOR_HELP = (
    f"Registered generator; {DEFAULT_GENERATOR} (the default) is built in and needs no weights, "
    "eg3d needs --network (real photos)."
)
# the options of a run that `invert` and `batch` share
GeneratorOption = Annotated[str, typer.Option(help=GENERATOR_HELP)]
RunNetworkOption = Annotated[
    Path | None,
    typer.Option(
        help="Generator weights: an official EG3D .pkl or a folder from `sym3d eg3d convert`."
    ),
]
PresetOption = Annotated[
    str, typer.Option(help="spi, pti, w, w+, pti-depth-reg or an ablation (see docs/engine.md).")
]
CamerasOption = Annotated[
    Path | None,
    typer.Option(
        help="EG3D dataset.json with camera labels of already aligned crops (skips pose estimation)."
    ),
]
VideoFramesOption = Annotated[int, typer.Option(help="Frames of the orbit video.")]
MeshResolutionOption = Annotated[int, typer.Option(help="Marching-cubes grid points per axis.")]
MeshLevelOption = Annotated[
    float | None,
    typer.Option(
        help="Mesh iso-level in density units (default: the generator's; EG3D: sigma 10)."
    ),
]
StepsOption = Annotated[
    int | None,
    typer.Option(
        help="Steps of each stage (shortcut for --set latent.steps=N --set tune.steps=N)."
    ),
]


def _check_progress(progress: str) -> str:
    if progress not in ("rich", "plain", "json", "off"):
        raise typer.BadParameter(
            f"expected one of rich, plain, json, off; got {progress!r}", param_hint="--progress"
        )
    return progress


def _parse_export(export: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in export.split(",") if p.strip())
    unknown = [p for p in parts if p not in EXPORT_PARTS]
    if unknown:
        raise typer.BadParameter(
            f"unknown output(s) {unknown}; choose from {', '.join(EXPORT_PARTS)}",
            param_hint="--export",
        )
    return parts


def _check_network(network: Path) -> None:
    """``--network``: a regular file, or a folder whose files are all regular files."""
    from sym3d.errors import InputFileError
    from sym3d.files import check_regular_file

    if not network.exists() and not network.is_symlink():
        raise InputFileError(network, "no such file or folder; --network expects weights.")
    if not network.is_dir():
        check_regular_file(network, "the --network file")
        return
    try:
        inside = sorted(network.rglob("*"))
    except OSError as exc:
        raise InputFileError(network, f"cannot list the folder ({exc.strerror or exc}).") from None
    for f in inside:
        if not f.is_dir():
            check_regular_file(f, "every file of the --network folder")


def load_generator_for(
    name: str, network: Path | None, device: str, options: dict[str, Any] | None = None
) -> Any:
    """Build a registered generator; ``--network`` becomes its ``network`` option.

    ``device`` is checked first (:func:`sym3d.checks.check_device`), and ``--network`` must be a
    regular file or a folder of regular files, so a typo or a FIFO fails before any loading.
    """
    from sym3d.checks import check_device
    from sym3d.engine.api import load_generator

    check_device(device)
    opts = dict(options or {})
    if network is not None:
        _check_network(network)
        opts["network"] = str(network)
    return load_generator(name, device=device, **opts)


def _generator_options(name: str, items: list[str]) -> dict[str, Any]:
    """``--generator-option key=value`` items as factory options, checked against the factory.

    Raises:
        ConfigError: not ``key=value``, a key given twice, ``network`` (``--network`` checks the
            file first), or an option the generator's factory does not accept (lists them).
        PluginNotFoundError: an unknown generator.
    """
    from sym3d.config import parse_option
    from sym3d.errors import ConfigError
    from sym3d.plugins import default_registry

    options: dict[str, Any] = {}
    for item in items:
        key, value = parse_option(item, "--generator-option")
        if key == "network":  # --network checks the file before anything is loaded
            raise ConfigError("--generator-option network=...: pass the weights with --network.")
        if key in options:
            raise ConfigError(f"--generator-option: {key!r} is given twice; give it once.")
        options[key] = value
    default_registry().check_options("generator", name, options)
    return options


def _check_out_folder(out: Path) -> None:
    """Refuse an output folder that cannot be created or written, before any work.

    Probes the folder (or its nearest existing parent) with an anonymous temporary file, which
    also catches read-only file systems and permissions that ``os.access`` misjudges for root.
    """
    import tempfile

    from sym3d.errors import UserInputError

    base = out
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        where = "is a file" if base == out else f"lies inside {base}, which is a file"
        hint = "choose another --out folder."
        raise UserInputError(f"--out {out}: {where}; expected a folder.", hint=hint)
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise UserInputError(
            f"--out {out}: cannot write to {base} ({exc.strerror or exc}).",
            hint="choose a writable --out folder, or fix its permissions.",
        ) from None


def _label_entry_problem(value: Any) -> str | None:
    """Why one JSON value of a camera label is not a number, or ``None``."""
    import math

    if isinstance(value, bool):
        return f"is {str(value).lower()} (a boolean)"
    if isinstance(value, int):
        return None if abs(value) < 1e300 else "is not a finite number"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"is {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 30 else value[:27] + "..."
        return f"is the string {shown!r}"
    return f"is {json.dumps(value)[:30]} ({'null' if value is None else type(value).__name__})"


def _refuse_entries(path: Path, name: str, label: list) -> None:
    """Raise ConfigError for the first entry of ``label`` that is not a finite JSON number."""
    from sym3d.camera import label_entry_name
    from sym3d.errors import ConfigError

    for i, value in enumerate(label):
        problem = _label_entry_problem(value)
        if problem is not None:
            entry = f"entry {i} ({label_entry_name(i)})"
            raise ConfigError(
                f"{path}: the label of {name!r}, {entry} {problem}; expected a finite number."
            )


def _read_cameras(path: Path, names: Sequence[str] | None = None) -> dict[str, list[float]]:
    """EG3D ``dataset.json``: ``{"labels": [[filename, [25 numbers]], ...]}`` -> name -> label.

    Every label of ``names`` (default: all labels) must be 25 finite JSON numbers forming a usable
    camera (:func:`sym3d.camera.first_bad_camera_label`); a missing one is an error too. Raises
    :class:`~sym3d.errors.ConfigError` (or ``InputFileError`` for a file that is not a regular
    file) naming the file, the image and the entry.
    """
    import numpy as np
    import torch

    from sym3d.camera import CAMERA_LABEL_HINT, first_bad_camera_label
    from sym3d.errors import ConfigError
    from sym3d.files import read_text

    shape = 'an EG3D dataset.json {"labels": [[filename, [25 numbers]], ...]}'
    text = read_text(path, "the camera file")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); expected {shape}.") from None
    entries = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f'{path}: expected {shape}; there is no "labels" list.')
    raw: dict[str, Any] = {}
    for n, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            got = json.dumps(entry)[:60]
            raise ConfigError(f"{path}: labels[{n}] is {got}; expected [filename, [25 numbers]].")
        raw[Path(entry[0]).name] = entry[1]
    wanted = list(raw) if names is None else list(names)
    missing = [name for name in wanted if name not in raw]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ConfigError(f"{path}: no camera label for {missing[0]!r}{more}.")
    labels: dict[str, list[float]] = {}
    for name in wanted:
        label = raw[name]
        if not isinstance(label, list) or len(label) != 25:
            got = f"{len(label)} values" if isinstance(label, list) else json.dumps(label)[:30]
            raise ConfigError(f"{path}: the label of {name!r} must be 25 numbers; got {got}.")
        if not all(type(v) is float or type(v) is int for v in label):  # fast path: all numbers
            _refuse_entries(path, name, label)
        labels[name] = label
    if labels:
        try:
            values = np.array(list(labels.values()), dtype=np.float64)
        except OverflowError:  # an integer beyond float64's range
            for name, label in labels.items():
                _refuse_entries(path, name, label)
            raise
        found = first_bad_camera_label(torch.from_numpy(values))
        if found is not None:
            i, problem = found
            name = list(labels)[i]
            raise ConfigError(f"{path}: the label of {name!r}: {problem}", hint=CAMERA_LABEL_HINT)
    return {name: [float(v) for v in label] for name, label in labels.items()}


def invert(
    images: Annotated[
        list[Path], typer.Argument(help="Photos (PNG, JPEG, WebP, ...).", show_default=False)
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder; one sub-folder per image.")
    ] = Path("sym3d-out"),
    generator: GeneratorOption = DEFAULT_GENERATOR,
    network: RunNetworkOption = None,
    preset: PresetOption = "spi",
    steps: StepsOption = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    config: Annotated[Path | None, typer.Option(help="TOML config merged on the preset.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Dotted override, repeatable: --set tune.lr=1e-4."),
    ] = None,
    prior: Annotated[
        list[str] | None,
        typer.Option(
            "--prior",
            help="Registered prior to add, repeatable: NAME or NAME:key=value,key=value (e.g. depth-tv:weight=0.1); added to the config's priors.",
        ),
    ] = None,
    generator_option: Annotated[
        list[str] | None,
        typer.Option(
            "--generator-option",
            help="Option of the generator's factory, repeatable: key=value (e.g. resolution=64).",
        ),
    ] = None,
    cameras: CamerasOption = None,
    pose: Annotated[str, typer.Option(help="Registered pose estimator for photos.")] = "mediapipe",
    export: Annotated[
        str, typer.Option(help=f"Outputs to write: {','.join(EXPORT_PARTS)}.")
    ] = ",".join(EXPORT_PARTS),
    video_frames: VideoFramesOption = 120,
    mesh_resolution: MeshResolutionOption = 128,
    mesh_level: MeshLevelOption = None,
    progress: Annotated[str, typer.Option(help="rich, plain, json or off.")] = "rich",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace finished results.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume", help="Continue interrupted runs from their checkpoints."
        ),
    ] = True,
) -> None:
    """Reconstruct faces from photos: crop + camera, inversion, views, orbit video, depth, mesh, report.

    Images are processed one after another; a failed image is reported and the others continue.
    """
    import errno
    import os
    import time

    from rich.console import Console

    from sym3d.app.outdir import check_key, describe_failure
    from sym3d.app.pipeline import process_photo
    from sym3d.checks import check_device
    from sym3d.cli.progress import make_progress
    from sym3d.config import PriorSpec, priors_override
    from sym3d.engine.api import resolve_config
    from sym3d.engine.result import ResultFiles
    from sym3d.errors import InputFileError, UserInputError
    from sym3d.image import check_image_file
    from sym3d.plugins import default_registry
    from sym3d.priors import check_priors

    _check_progress(progress)
    parts = _parse_export(export)
    # Every input is checked before the generator loads or anything is written.
    for img in images:
        if img.is_dir():
            hint = f"pass image files, or use `sym3d batch {img}` for a folder."
            raise InputFileError(img, "is a folder; expected an image file.", hint=hint)
        check_image_file(img)
    flags = [f"latent.steps={steps}", f"tune.steps={steps}"] if steps is not None else []
    if prior:  # added to the preset's and the config file's priors, below --set
        specs = [PriorSpec.parse(text) for text in prior]
        flags.append(priors_override([*resolve_config(preset, config).priors, *specs]))
    overrides = [*flags, *(set_ or [])]
    check_priors(resolve_config(preset, config, overrides).priors, default_registry())
    gen_options = _generator_options(generator, generator_option or [])
    labels = _read_cameras(cameras, [img.name for img in images]) if cameras is not None else None
    check_device(device)
    _check_out_folder(out)
    gen = load_generator_for(generator, network, device, gen_options)
    estimator = None
    if labels is None:
        estimator = default_registry().build("pose", pose)
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    outcomes, failures = [], []
    for i, img in enumerate(images):
        t0 = time.perf_counter()
        dest = out / img.stem  # checked by process_photo: a direct child named by a valid key
        console.print(f"[bold]{i + 1}/{len(images)}[/] ", end="")
        console.print(f"{img} -> {os.path.join(out, img.stem)}", markup=False)  # `OUT/.` as typed
        try:
            check_key(img.stem, img)  # before joining: `out / "."` would be `out` itself
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
                    export_options={
                        "video_frames": video_frames,
                        "mesh_resolution": mesh_resolution,
                        "mesh_level": mesh_level,
                    },
                    overwrite=overwrite,
                    resume=resume,
                )
            outcomes.append(outcome)
            for note in outcome.notes:
                console.print(f"  note: {note}", markup=False)
            report = Path(outcome.out_dir).resolve() / ResultFiles.REPORT
            console.print(f"  [green]done[/] in {outcome.seconds:.0f} s: {report}")
        except Exception as exc:  # one image's failure (disk full, ...) never stops the others
            message = describe_failure(exc, img)
            # as sym3d.cli.main decides: a path the user chose (permissions, ...) is exit 2
            user = isinstance(exc, UserInputError) or (
                isinstance(exc, OSError)
                and exc.errno
                in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR)
            )
            failures.append((img, message, user))
            console.print(f"  [red]failed[/] after {time.perf_counter() - t0:.0f} s: ", end="")
            console.print(message, markup=False)
    if len(images) > 1 or failures:
        console.print(f"\n{len(outcomes)} done, {len(failures)} failed")
        for img, err, _ in failures:  # most messages start with the file's name already
            console.print(
                f"  {err}" if err.startswith(str(img)) else f"  {img}: {err}", markup=False
            )
    if failures:
        raise typer.Exit(2 if all(user for _, _, user in failures) else 1)


_NETWORK_HELP = (
    "Generator weights (needed when the result was made with --network: a path the result "
    "records is never opened, and a recorded sha256 must match)."
)
# the options `render` and `edit` share (a result folder in, renders out)
_NetworkOption = Annotated[Path | None, typer.Option(help=_NETWORK_HELP)]
_DeviceOption = Annotated[str, typer.Option(help="cpu, cuda, ...")]
_ProgressOption = Annotated[
    str, typer.Option(help="rich, plain, json (one JSON object per event on stdout) or off.")
]


def _load_result(result_dir: Path, network: Path | None, device: str) -> tuple[Any, Any]:
    from sym3d.app.result_options import check_network_matches, check_stored_options
    from sym3d.checks import check_device
    from sym3d.engine.result import InversionResult

    check_device(device)  # before reading anything
    result = InversionResult.load(result_dir)
    stored = result.generator_factory_options()  # refuses a generator it cannot rebuild
    # data: checked, and a network path is never opened
    options = check_stored_options(
        result.generator_name, stored, result_dir=result_dir, network_given=network is not None
    )
    gen = load_generator_for(result.generator_name, network, device, options)
    check_network_matches(stored, gen, result_dir=result_dir)
    return result, result.apply(gen)


def render(
    result_dir: Annotated[
        Path, typer.Argument(help="A result folder written by `sym3d invert`.", show_default=False)
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: RESULT/render).")
    ] = None,
    network: _NetworkOption = None,
    views: Annotated[int, typer.Option(help="Views in the novel-view grid.")] = 9,
    yaw_range: Annotated[float, typer.Option(help="Grid yaw range (degrees, +-).")] = 50.0,
    video_frames: Annotated[
        int, typer.Option(help="Frames of the orbit video (0: no video).")
    ] = 120,
    mesh_resolution: Annotated[
        int, typer.Option(help="Marching-cubes resolution (0: no mesh).")
    ] = 128,
    device: _DeviceOption = "cpu",
    progress: _ProgressOption = "rich",
) -> None:
    """Render novel views, an orbit video and a mesh from a saved result.

    Progress (one bar or line per part: render, views, depth, video, mesh) goes to stderr.
    """
    import math

    from sym3d.app.export import export_result
    from sym3d.app.outdir import check_not_linked
    from sym3d.cli.stage_progress import make_stage_progress

    _check_progress(progress)
    dest = out or (result_dir / "render")
    check_not_linked(dest, result_dir if out is None else dest.parent)  # never write through a link
    result, tuned = _load_result(result_dir, network, device)
    what = (
        ["views", "depth"]
        + (["video"] if video_frames > 0 else [])
        + (["mesh"] if mesh_resolution > 0 else [])
    )
    with make_stage_progress(progress, prefix=result_dir.name) as bar:  # type: ignore[arg-type]
        written = export_result(
            result,
            tuned,
            dest,
            what=what,
            num_views=views,
            yaw_range=math.radians(yaw_range),
            video_frames=max(video_frames, 1),
            mesh_resolution=max(mesh_resolution, 8),
            progress=bar,
        )
    if progress == "json":
        typer.echo(json.dumps({"written": {name: str(path) for name, path in written.items()}}))
        return
    for name, path in written.items():
        typer.echo(f"{name}: {path}")


MAX_DIRECTION_BYTES = 64 * 1024 * 1024
"""Largest accepted ``--direction`` file (a [num_ws, w_dim] float32 direction is about 30 kB)."""


def _read_direction(path: Path) -> Any:
    """Read ``--direction`` (.npy without pickles, or a tensor saved with torch.save) as float32.

    Raises:
        InputFileError: not a regular file, or over :data:`MAX_DIRECTION_BYTES`.
        UserInputError: not a numeric array or tensor, or holds NaN/inf.
    """
    import io

    import torch

    from sym3d.errors import NonFiniteError, UserInputError
    from sym3d.files import read_bytes

    data = io.BytesIO(read_bytes(path, "the --direction file", max_bytes=MAX_DIRECTION_BYTES))
    try:
        if path.suffix == ".npy":
            import numpy as np

            d = torch.from_numpy(np.load(data, allow_pickle=False))
        else:
            d = torch.load(data, map_location="cpu", weights_only=True)
    except Exception as exc:  # numpy and torch raise many types for a malformed file
        why = str(exc).splitlines()[0] if str(exc) else ""
        raise UserInputError(
            f"{path}: not a readable direction ({type(exc).__name__}: {why}); "
            "expected a .npy array or a tensor saved with torch.save."
        ) from None
    integer = (torch.int32, torch.int64)
    numeric = isinstance(d, torch.Tensor) and (d.is_floating_point() or d.dtype in integer)
    if not numeric:
        got = type(d).__name__ if not isinstance(d, torch.Tensor) else f"a {d.dtype} tensor"
        raise UserInputError(
            f"{path}: expected a numeric array [w_dim] or [num_ws, w_dim], got {got}."
        )
    d = d.float()
    if not bool(torch.isfinite(d).all()):
        bad = int((~torch.isfinite(d)).sum())
        raise NonFiniteError(f"{path}: the direction holds {bad} NaN/inf values; expected none.")
    return d


def edit(
    result_dir: Annotated[
        Path, typer.Argument(help="A result folder written by `sym3d invert`.", show_default=False)
    ],
    direction: Annotated[
        Path,
        # "\[" keeps rich from reading the shapes as markup tags (which it drops)
        typer.Option(
            help="Latent direction (.npy or .pt) of shape "
            "\\[w_dim], \\[num_ws, w_dim] or \\[1, num_ws, w_dim]."
        ),
    ],
    strength: Annotated[
        list[float] | None, typer.Option(help="Edit strength(s), repeatable (default: -2 -1 1 2).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder (default: RESULT/edit-<direction>)."),
    ] = None,
    network: _NetworkOption = None,
    views: Annotated[int, typer.Option(help="Views per strength.")] = 5,
    yaw_range: Annotated[float, typer.Option(help="Yaw range (degrees, +-).")] = 40.0,
    device: _DeviceOption = "cpu",
    progress: _ProgressOption = "rich",
) -> None:
    """Latent-direction editing: render ws + s * direction with the tuned generator, per strength.

    Progress (one step per strength) goes to stderr.
    """
    import math

    import torch

    from sym3d.app.outdir import check_not_linked
    from sym3d.camera import look_at
    from sym3d.cli.stage_progress import make_stage_progress
    from sym3d.errors import ShapeError
    from sym3d.image import from_model_range, save_image

    _check_progress(progress)
    d = _read_direction(direction)
    result, tuned = _load_result(result_dir, network, device)
    ws = result.ws.float()
    try:
        d = d.reshape(1, 1, -1).expand_as(ws) if d.numel() == ws.shape[-1] else d.reshape(ws.shape)
    except RuntimeError:
        raise ShapeError(
            "direction", f"[{ws.shape[-1]}] or {list(ws.shape[1:])}", d.shape
        ) from None
    strengths = strength or [-2.0, -1.0, 1.0, 2.0]
    yaws = torch.linspace(-math.radians(yaw_range), math.radians(yaw_range), views)
    cams = look_at(yaws, 0.0)[None].to(device)
    dest = out or (result_dir / f"edit-{direction.stem}")
    check_not_linked(dest, result_dir if out is None else dest.parent)  # never write through a link
    rows = []
    with make_stage_progress(progress, prefix=result_dir.name) as bar:  # type: ignore[arg-type]
        todo = [0.0, *strengths]
        bar("edit", 0, len(todo))
        for i, s in enumerate(todo):
            with torch.no_grad():
                out_s = tuned.render((ws + s * d).to(device), cams)
                img = from_model_range(out_s.image[0]).clamp(0, 1).cpu()
            rows.append(torch.cat(list(img), dim=-1))
            save_image(rows[-1], dest / f"strength_{s:+g}.png")
            bar("edit", i + 1, len(todo))
    grid = save_image(torch.cat(rows, dim=-2), dest / "grid.png")
    if progress == "json":  # stdout stays one JSON object per line
        summary = {"grid": str(grid), "row_strengths": [0.0, *strengths], "yaw_range": yaw_range}
        typer.echo(json.dumps(summary))
        return
    typer.echo(
        f"rows: strength 0 (the reconstruction), then {', '.join(f'{s:+g}' for s in strengths)}; columns: yaw -{yaw_range:g}..+{yaw_range:g} degrees"
    )
    typer.echo(f"grid: {grid}")
