"""``sym3d plugins``: every component with its plugin and version, and broken plugins."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List installed plugins, the components they register, and plugins that failed to load."""
    from sym3d.plugins import build_registry, default_plugin_manager

    pm = default_plugin_manager()
    registry = build_registry(pm)
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
                    "available": s.available,
                    "missing": s.missing_requirements(),
                    "description": s.description,
                }
                for s in specs
            ],
            "broken": [{"name": b.name, "dist": b.dist, "error": b.error} for b in pm.broken],
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
        status = "[green]ok[/]" if not missing else f"[yellow]needs {', '.join(missing)}" + (f" (pip install 'sym3d[{s.extra}]')" if s.extra else "") + "[/]"
        table.add_row(s.kind, s.name, s.plugin, s.version, status, s.description)
    console.print(table)
    if pm.broken:
        console.print("[bold red]Broken plugins[/] (skipped):")
        for b in pm.broken:
            console.print(f"  [red]{b.name}[/] ({b.dist or 'unknown distribution'}): {b.error}", markup=True)
