"""Image-space losses on the public ``[0, 1]`` range: pixel (MSE, L1), SSIM and contextual.

Each loss is a function plus a thin ``nn.Module`` holding its options (kornia's pattern).
Losses return per-sample ``[B]`` values with ``reduction="none"``. The LPIPS term lives in
:mod:`sym3d_extras.perceptual` because it needs pretrained weights.
"""

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

__all__ = [
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
