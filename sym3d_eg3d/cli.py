"""``sym3d eg3d ...`` commands. Import-light: torch is imported inside the commands only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="eg3d",
    help="EG3D checkpoints: convert official .pkl snapshots to safetensors + JSON without running their code.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _group() -> None:
    """EG3D checkpoints: convert official .pkl snapshots to safetensors + JSON without running their code."""


@app.command("convert")
def convert(
    in_pkl: Annotated[
        Path,
        typer.Argument(help="Official EG3D snapshot, e.g. ffhq512-128.pkl.", show_default=False),
    ],
    out_dir: Annotated[
        Path,
        typer.Argument(
            help="Output folder for generator.safetensors and generator.json.", show_default=False
        ),
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing conversion in OUT_DIR.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Build the generator and load the weights strictly before writing.",
        ),
    ] = True,
) -> None:
    """Convert an official EG3D .pkl to OUT_DIR/generator.safetensors + generator.json.

    The pickle is read with a restricted unpickler: nothing from it is imported or executed.
    """
    from sym3d_eg3d.checkpoints import CONFIG_FILE, WEIGHTS_FILE, convert_checkpoint

    out = convert_checkpoint(in_pkl, out_dir, overwrite=overwrite, verify=verify)
    config = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))
    typer.echo(
        f"converted {in_pkl.name}: {len(config['tensor_names'])} tensors, "
        f"{config['num_parameters']:,} parameters -> {out / WEIGHTS_FILE} (+ {CONFIG_FILE})"
    )


def bench(
    configs: Annotated[
        str, typer.Option(help="Comma-separated: small, sr512, ffhq512 (random weights).")
    ] = "small",
    resolutions: Annotated[
        str, typer.Option(help="Comma-separated neural rendering resolutions.")
    ] = "32,64",
    views: Annotated[str, typer.Option(help="Comma-separated view counts per latent.")] = "1,6",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    repeats: Annotated[
        int,
        typer.Option(
            help="Timed rounds (median) after one warm-up; view counts alternate within a round."
        ),
    ] = 5,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: default).")] = 0,
) -> None:
    """EG3D forward and forward+backward time and peak memory: one view vs V views through one backbone pass."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from sym3d_eg3d.bench import bench_eg3d

    if threads:
        torch.set_num_threads(threads)
    rows = bench_eg3d(
        [c.strip() for c in configs.split(",") if c.strip()],
        neural_resolutions=[int(r) for r in resolutions.split(",")],
        views=[int(v) for v in views.split(",")],
        device=device,
        repeats=repeats,
    )
    table = Table(title=f"EG3D render: device={device} threads={torch.get_num_threads()}")
    columns = (
        "config",
        "neural res",
        "views",
        "fwd ms",
        "fwd+bwd ms",
        "fwd peak MB",
        "fwd+bwd peak MB",
    )
    for col in (*columns, "fwd / 1 view", "fwd+bwd / 1 view"):
        table.add_column(col, justify="right")
    single = {(r.config, r.neural_resolution): r for r in rows if r.views == 1}
    for r in rows:
        base = single.get((r.config, r.neural_resolution))
        ratios = (
            [
                f"{r.forward_ms / base.forward_ms:.2f}x",
                f"{r.forward_backward_ms / base.forward_backward_ms:.2f}x",
            ]
            if base
            else ["-", "-"]
        )
        table.add_row(
            r.config,
            str(r.neural_resolution),
            str(r.views),
            f"{r.forward_ms:.0f}",
            f"{r.forward_backward_ms:.0f}",
            f"{r.peak_forward_mb:.0f}",
            f"{r.peak_backward_mb:.0f}",
            *ratios,
        )
    Console().print(table)


def bench_gpu(
    device: Annotated[str, typer.Option(help="cuda, cuda:1, ... (cpu: with --smoke).")] = "cuda",
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for bench_gpu.json and .md (default: $OUT, else ./bench-gpu)."),
    ] = None,
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke", help="Tiny config, few steps: checks the command, e.g. on the CPU."
        ),
    ] = False,
    tests: Annotated[
        Path, typer.Option(help="The checkout's tests folder (its gpu-marked tests are run).")
    ] = Path("tests"),
) -> None:
    """The GPU path measured: kernels, FFHQ512 synthesis, engine steps, spi inversion, options.

    Kernel checks (the gpu-marked tests), synthesis for 1/2/6 views with and without the custom
    kernels, engine steps, one whole spi inversion (or its extrapolation) and speed options. Writes
    one JSON and one markdown table; parts that cannot run here are recorded as skipped with the
    reason.
    """
    import os

    import torch

    from sym3d.errors import UserInputError
    from sym3d_eg3d.bench_gpu import run_gpu_bench

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(
            f"sym3d bench gpu: --device {device} needs a CUDA device, and torch sees none "
            f"(torch {torch.__version__}).",
            hint="run it on a machine with an NVIDIA GPU, or check the command here with "
            "--device cpu --smoke",
        )
    if dev.type != "cuda" and not smoke:
        raise UserInputError(
            "sym3d bench gpu: the full benchmark (FFHQ512 at 512 px) is for a CUDA device; "
            f"got --device {device}.",
            hint="add --smoke for the tiny version that checks the command on the CPU",
        )
    folder = out if out is not None else Path(os.environ.get("OUT") or "bench-gpu")
    smoke_flag = ["--smoke"] if smoke else []
    argv = ["sym3d bench gpu", f"--device {device}", *smoke_flag, f"--out {folder}"]
    run_gpu_bench(
        folder,
        device=dev,
        smoke=smoke,
        tests_dir=tests,
        command=" ".join(argv),
        log=lambda msg: typer.echo(msg, err=True),
    )
    typer.echo((folder / "bench_gpu.md").read_text(encoding="utf-8"))
    typer.echo(f"wrote {folder / 'bench_gpu.json'} and {folder / 'bench_gpu.md'}")
