"""The root ``sym3d`` typer app and its built-in commands (thin: they call the library)."""

from __future__ import annotations

from typing import Annotated

import typer

from sym3d._version import __version__


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"sym3d {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """Create the app, add the core and application commands, then those of loaded plugins."""
    app = typer.Typer(
        name="sym3d",
        help="Reconstruct a 3D face from one photo by inverting a 3D GAN with a facial symmetry prior.",
        rich_markup_mode="rich",
        pretty_exceptions_enable=False,
        no_args_is_help=True,
        add_completion=False,
    )

    @app.callback()
    def root(
        version: Annotated[
            bool,
            typer.Option(
                "--version",
                callback=_version_callback,
                is_eager=True,
                help="Print the version and exit.",
            ),
        ] = False,
        debug: Annotated[
            bool, typer.Option("--debug", help="Show full tracebacks on errors.")
        ] = False,
    ) -> None:
        """sym3d: single-photo 3D face reconstruction with a facial symmetry prior."""

    from sym3d.app.batch.cli import batch
    from sym3d.app.commands import edit, invert, render
    from sym3d.cli import bench_cmd, doctor, plugins_cmd

    app.command("invert")(invert)
    app.command("render")(render)
    app.command("edit")(edit)
    app.command("batch")(batch)
    app.command("plugins")(plugins_cmd.plugins)
    app.command("doctor")(doctor.doctor)
    bench = bench_cmd.register(app)
    _add_plugin_commands(app, bench)
    return app


def _add_plugin_commands(app: typer.Typer, bench: typer.Typer) -> None:
    """Hand every plugin the objects it extends: the root app and its ``bench`` group."""
    from sym3d.plugins import default_plugin_manager

    # Each plugin on its own: one whose hook raises is reported by `sym3d plugins`/`doctor`.
    for _ in default_plugin_manager().call_each("register_commands", app=app, bench=bench):
        pass
