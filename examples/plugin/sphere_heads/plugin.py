"""Entry module of the plugin (``[project.entry-points.sym3d] sphere = "sphere_heads.plugin"``).

It only registers factories; each factory imports its module when sym3d builds the component,
so ``sym3d --help`` and ``sym3d plugins`` stay fast.
"""

from __future__ import annotations

from typing import Any

import sym3d


def _sphere(**options: Any) -> Any:
    from sphere_heads.generator import SphereHeads

    return SphereHeads(**options)


def _charbonnier(**options: Any) -> Any:
    from sphere_heads.terms import CharbonnierLoss

    return CharbonnierLoss(**options)


def _depth_tv(**options: Any) -> Any:
    from sphere_heads.terms import DepthTVPrior

    return DepthTVPrior(**options)


@sym3d.hookimpl
def register_generators(register) -> None:  # noqa: ANN001
    """``sphere``: the SphereHeads generator (options: resolution, num_samples, hidden, seed)."""
    register(
        "sphere",
        _sphere,
        description="SphereHeads: an SDF head with an MLP colour decoder (example plugin).",
        options=("resolution", "num_samples", "hidden", "seed"),
    )


@sym3d.hookimpl
def register_losses(register) -> None:  # noqa: ANN001
    """``charbonnier``: a robust pixel loss (option: eps)."""
    register(
        "charbonnier",
        _charbonnier,
        description="Charbonnier (smooth L1) pixel loss (example plugin).",
        options=("eps",),
    )


@sym3d.hookimpl
def register_priors(register) -> None:  # noqa: ANN001
    """``depth-tv``: smooth depth on the input view (options: weight, every)."""
    register(
        "depth-tv",
        _depth_tv,
        description="Total variation of the input view's depth (example plugin).",
        options=("weight", "every"),
    )
