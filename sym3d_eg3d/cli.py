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
    in_pkl: Annotated[Path, typer.Argument(help="Official EG3D snapshot, e.g. ffhq512-128.pkl.", show_default=False)],
    out_dir: Annotated[
        Path, typer.Argument(help="Output folder for generator.safetensors and generator.json.", show_default=False)
    ],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing conversion in OUT_DIR.")] = False,
    verify: Annotated[
        bool,
        typer.Option("--verify/--no-verify", help="Build the generator and load the weights strictly before writing."),
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
