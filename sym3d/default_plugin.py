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
    )


def _loss(name: str) -> Any:
    def factory(**options: Any) -> Any:
        from sym3d import losses

        return losses.build_builtin(name, **options)

    return factory


@hookimpl
def register_losses(register) -> None:  # noqa: ANN001
    """Register the dependency-free image losses and feature extractors."""
    register("mse", _loss("mse"), description="Mean squared error on [0,1] images (optionally masked).")
    register("l1", _loss("l1"), description="Mean absolute error on [0,1] images (optionally masked).")
    register("ssim", _loss("ssim"), description="1 - SSIM (kornia), optionally masked.")
    register(
        "features:filterbank",
        _loss("features:filterbank"),
        description="Fixed colour/gradient filter bank: weight-free features for the contextual loss.",
    )


@hookimpl
def register_priors(register) -> None:  # noqa: ANN001
    """Register the SPI priors so they can be named in configs and on the command line."""

    def factory(name: str) -> Any:
        def build(**options: Any) -> Any:
            from sym3d import priors

            return priors.build_builtin(name, **options)

        return build

    register("mirror-view", factory("mirror-view"), description="Stage 1: the mirrored image at the mirrored camera, yaw-weighted.")
    register("warp-views", factory("warp-views"), description="Stage 2: input image warped by depth into nearby cameras.")
    register("mirror-regions", factory("mirror-regions"), description="Stage 2: warped mirror, contextual loss in eye/mouth regions, authentic mask.")
    register("depth-reg", factory("depth-reg"), description="Stage 2: depth of the tuned generator kept close to the frozen one.")
