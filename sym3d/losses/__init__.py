"""Image-space losses on the public ``[0, 1]`` range: pixel (MSE, L1), SSIM and contextual.

Each loss is a function plus a thin ``nn.Module`` holding its options (kornia's pattern).
Losses return per-sample ``[B]`` values with ``reduction="none"``. The LPIPS term lives in
:mod:`sym3d_extras.perceptual` because it needs pretrained weights.

Any registered loss (built-in or from a plugin, ``sym3d plugins`` lists them) is built by name
with :func:`load_loss`, e.g. to compose it inside a prior of your own.
"""

from typing import TYPE_CHECKING, Any

from sym3d.losses.contextual import (
    SPI_REGION_NAMES,
    ContextualLoss,
    RegionContextualLoss,
    boxes_to_tensor,
    contextual_loss,
    crop_boxes,
    region_contextual_loss,
    spi_boxes_from_landmarks,
)
from sym3d.losses.features import FeatureExtractor, GaussianDerivativeFeatures
from sym3d.losses.pixel import L1Loss, MSELoss, l1_loss, mse_loss
from sym3d.losses.ssim import SSIMLoss, ssim, ssim_loss

if TYPE_CHECKING:
    from sym3d.registry import Registry

__all__ = [
    "load_loss",
    "mse_loss",
    "l1_loss",
    "MSELoss",
    "L1Loss",
    "ssim",
    "ssim_loss",
    "SSIMLoss",
    "contextual_loss",
    "region_contextual_loss",
    "crop_boxes",
    "boxes_to_tensor",
    "spi_boxes_from_landmarks",
    "SPI_REGION_NAMES",
    "ContextualLoss",
    "RegionContextualLoss",
    "FeatureExtractor",
    "GaussianDerivativeFeatures",
]


def load_loss(name: str, *, registry: "Registry | None" = None, **options: Any) -> Any:
    """Build a registered loss by name (``"mse"``, ``"ssim"``, ``"lpips-vgg"``, a plugin's).

    Example:
        >>> from sym3d.losses import load_loss
        >>> loss = load_loss("l1")  # loss(pred, target, *, mask=None, reduction="mean")

    Args:
        name: registry name of kind ``loss`` (the default registry holds the installed plugins).
        registry: another registry (tests); ``None``: the installed plugins.
        options: passed to the loss's factory (checked when it declares its options).

    Raises:
        sym3d.errors.PluginNotFoundError: unknown name (lists the losses, the closest first).
        sym3d.errors.ConfigError: an option the factory does not accept.
        sym3d.errors.MissingDependencyError: its extra is not installed (e.g. ``lpips``).
    """
    from sym3d.plugins import default_registry

    return (registry or default_registry()).build("loss", name, **options)
