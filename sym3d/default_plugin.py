"""The core's built-in components, registered as a plugin like any other.

Factories import their modules when called, so listing components stays cheap.
"""

from __future__ import annotations

from typing import Any

from sym3d.hookspecs import hookimpl


def _tiny_generator(**options: Any) -> Any:
    from sym3d.testing.tiny import TinyGenerator3D

    return TinyGenerator3D(**options)


@hookimpl
def register_generators(register) -> None:  # noqa: ANN001
    """Register the tiny analytic generator used by tests and examples."""
    register(
        "tiny",
        _tiny_generator,
        description="Tiny analytic 3D generator (a coloured density blob) for tests and examples; CPU, milliseconds.",
        options=("resolution", "num_samples", "plane_resolution", "seed", "near", "far"),
    )


def _loss(name: str) -> Any:
    def factory(**options: Any) -> Any:
        from sym3d import losses

        classes = {
            "mse": losses.MSELoss,
            "l1": losses.L1Loss,
            "ssim": losses.SSIMLoss,
            "features:filterbank": losses.GaussianDerivativeFeatures,
        }
        return classes[name](**options)

    return factory


@hookimpl
def register_losses(register) -> None:  # noqa: ANN001
    """Register the dependency-free image losses and feature extractors."""
    register(
        "mse", _loss("mse"), description="Mean squared error on [0,1] images (optionally masked)."
    )
    register(
        "l1", _loss("l1"), description="Mean absolute error on [0,1] images (optionally masked)."
    )
    register(
        "ssim", _loss("ssim"), description="(1 - SSIM) / 2 (kornia convention), optionally masked."
    )
    register(
        "features:filterbank",
        _loss("features:filterbank"),
        description="Fixed colour/gradient filter bank: weight-free features for the contextual loss.",
    )
