"""The image losses of one inversion, built by registry name and shared by every term."""

from __future__ import annotations

from typing import Any

import attrs
import torch

from sym3d.registry import Registry
from sym3d.resize import resize

__all__ = ["Losses", "build_losses"]


def _resize(x: torch.Tensor | None, size: int) -> torch.Tensor | None:
    """:func:`sym3d.resize.resize` to ``size`` x ``size``; ``None`` and ``size <= 0`` pass through."""
    return x if x is None or size <= 0 else resize(x, size)


@attrs.define
class Losses:
    """Per-sample image losses on ``[0, 1]`` images.

    Attributes:
        perceptual_module: the registered perceptual loss (e.g. LPIPS-VGG).
        mse_module: the registered MSE.
        resize: side images are resized to before the perceptual loss (0: no resize).
        contextual_features: registry name of the contextual-loss feature extractor.
        registry: where to build the extractor when first needed.
        device: where the extractor goes.
    """

    perceptual_module: Any
    mse_module: Any
    resize: int
    contextual_features: str
    registry: Registry
    device: torch.device
    _extractor: Any = None

    def perceptual(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[B]`` perceptual distance (images resized to :attr:`resize` first, as SPI does)."""
        return self.perceptual_module(
            _resize(pred, self.resize),
            _resize(target, self.resize),
            mask=_resize(mask, self.resize),
            reduction="none",
        )

    def mse(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
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


def build_losses(
    perceptual: str,
    perceptual_resize: int,
    contextual_features: str,
    registry: Registry,
    device: torch.device,
) -> Losses:
    """Build the named perceptual loss and the MSE on ``device`` (the extractor comes lazily)."""
    modules = [registry.build("loss", perceptual), registry.build("loss", "mse")]
    for m in modules:
        if isinstance(m, torch.nn.Module):
            m.to(device).eval().requires_grad_(False)
    return Losses(
        perceptual_module=modules[0],
        mse_module=modules[1],
        resize=perceptual_resize,
        contextual_features=contextual_features,
        registry=registry,
        device=device,
    )
