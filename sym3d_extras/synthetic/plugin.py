"""Entry module ``symheads``: the SymHeads synthetic generator; imports nothing heavy."""

from __future__ import annotations

from typing import Any

from sym3d.hookspecs import hookimpl


def _symheads(**options: Any) -> Any:
    from sym3d_extras.synthetic import build_symheads

    return build_symheads(**options)


@hookimpl
def register_generators(register) -> None:  # noqa: ANN001
    """The SymHeads synthetic generator (built in; CPU-friendly; needs no extra)."""
    register(
        "symheads",
        _symheads,
        description="SymHeads: procedural 3D heads with residual tri-planes for fine-tuning; "
        "the built-in default generator.",
    )
