"""``sym3d plugins``: every component with its plugin and version, and broken plugins."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List installed plugins, the components they register, and plugins that failed to load."""
    from sym3d.plugins import default_plugin_manager, default_registry

    pm = default_plugin_manager()
    registry = default_registry()
    specs = registry.specs()
    if as_json:
        data = {
            "plugins": [{"name": p.name, "dist": p.dist, "version": p.version} for p in pm.loaded],
            "components": [
                {
                    "kind": s.kind,
                    "name": s.name,
                    "plugin": s.plugin,
                    "version": s.version,
                    "dist": s.dist,
                    "available": s.available,
                    "missing": s.missing_requirements(),
                    "description": s.description,
                    "options": s.accepted_options(),  # null: not declared
                }
                for s in specs
            ],
            "broken": [b.as_dict() for b in pm.broken],
        }
        typer.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="sym3d components", show_lines=False)
    for col in ("kind", "name", "plugin", "version", "status", "description"):
        table.add_column(col, overflow="fold")
    for s in specs:
        missing = s.missing_requirements()
        fix = f" (pip install '{s.dist or 'sym3d'}[{s.extra}]')" if s.extra else ""
        status = f"[yellow]needs {', '.join(missing)}{fix}[/]" if missing else "[green]ok[/]"
        options = s.accepted_options()
        about = f"{s.description} Options: {', '.join(options)}." if options else s.description
        table.add_row(s.kind, s.name, s.plugin, s.version, status, about)
    console.print(table)
    if pm.broken:
        # Plain lines (no wrapping) so that each broken plugin stays greppable on one line.
        typer.echo("Broken plugins (skipped; the others work):")
        for b in pm.broken:
            what = f"{b.component} of plugin {b.name}" if b.component else f"plugin {b.name}"
            typer.echo(f"  {what} ({b.source}): {b.error}")
