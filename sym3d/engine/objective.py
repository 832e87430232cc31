"""The loss callables of one inversion, built by registry name from the config."""

from __future__ import annotations

from typing import Any

import attrs
import torch
import torch.nn.functional as F

from sym3d.config import InversionConfig, MirrorPseudoConfig
from sym3d.registry import Registry

__all__ = ["Objective", "build_objective"]


def _resize(x: torch.Tensor | None, size: int) -> torch.Tensor | None:
    if x is None or size <= 0 or x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


@attrs.define
class Objective:
    """Per-sample image losses on ``[0, 1]`` images, shared by the stages and the priors.

    Attributes:
        perceptual_module: the registered perceptual loss (e.g. LPIPS-VGG).
        mse_module: the registered MSE.
        resize: side images are resized to before the perceptual loss (0: no resize).
        contextual_features: registry name of the contextual-loss feature extractor.
        registry: where to build the extractor when first needed.
    """

    perceptual_module: Any
    mse_module: Any
    resize: int
    contextual_features: str
    registry: Registry
    device: torch.device
    _extractor: Any = None

    def perceptual(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B]`` perceptual distance (images resized to :attr:`resize` first, as SPI does)."""
        return self.perceptual_module(
            _resize(pred, self.resize), _resize(target, self.resize), mask=_resize(mask, self.resize), reduction="none"
        )

    def mse(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B]`` mean squared error on ``[0, 1]`` images."""
        return self.mse_module(pred, target, mask=mask, reduction="none")

    def extractor(self) -> Any:
        """The contextual-loss feature extractor (built on first use)."""
        if self._extractor is None:
            name = self.contextual_features
            key = name if name.startswith("features:") else f"features:{name}"
            ext = self.registry.build("loss", key)
            self._extractor = ext.to(self.device) if hasattr(ext, "to") else ext
        return self._extractor

    def region_contextual(self, config: MirrorPseudoConfig) -> Any:
        """A ``loss(pred, target, boxes, mask=, weight_mask=) -> [B]`` closure for the mirror prior."""
        from sym3d.losses.contextual import region_contextual_loss

        def loss(pred: torch.Tensor, target: torch.Tensor, boxes: torch.Tensor, *, mask: torch.Tensor | None = None, weight_mask: torch.Tensor | None = None) -> torch.Tensor:
            return region_contextual_loss(
                pred,
                target,
                boxes,
                self.extractor(),
                crop_size=config.crop_size,
                resize_to=self.resize or None,
                mask=mask,
                weight_mask=weight_mask,
                bandwidth=config.bandwidth,
                reduction="none",
            )

        return loss


def build_objective(config: InversionConfig, registry: Registry, device: torch.device) -> Objective:
    """Build the losses named in ``config`` (``perceptual``, MSE, contextual features) on ``device``."""
    perceptual = registry.build("loss", config.perceptual)
    mse = registry.build("loss", "mse")
    for m in (perceptual, mse):
        if isinstance(m, torch.nn.Module):
            m.to(device).eval().requires_grad_(False)
    return Objective(
        perceptual_module=perceptual,
        mse_module=mse,
        resize=config.perceptual_resize,
        contextual_features=config.contextual_features,
        registry=registry,
        device=device,
    )
