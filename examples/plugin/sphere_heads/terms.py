"""A loss and a prior, written against ``sym3d.protocols.Loss`` and ``sym3d.protocols.Prior``."""

from __future__ import annotations

import torch

from sym3d.protocols import PriorContext, PriorViews, Reduction
from sym3d.terms import BasePrior

__all__ = ["CharbonnierLoss", "DepthTVPrior"]


class CharbonnierLoss:
    """``sqrt((pred - target)^2 + eps^2) - eps``, averaged over channels and (masked) pixels.

    Args:
        eps: smoothing (in the ``[0, 1]`` image range); small values approach L1.
    """

    def __init__(self, eps: float = 1e-3) -> None:
        self.eps = eps

    def __call__(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> torch.Tensor:
        """``pred``, ``target``: ``[B, 3, H, W]`` in ``[0, 1]``; ``mask``: ``[B, 1, H, W]``."""
        err = torch.sqrt((pred - target).square() + self.eps**2) - self.eps  # [B, 3, H, W]
        if mask is None:
            per = err.flatten(1).mean(1)
        else:
            w = mask.expand_as(err)
            per = (err * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1e-8)
        if reduction == "none":
            return per
        return per.sum() if reduction == "sum" else per.mean()


class DepthTVPrior(BasePrior):
    """``weight * mean |grad depth|`` of the input view where the head is (opacity-weighted).

    Uses the input view's render (no extra views); applies to both stages.
    """

    def __init__(self, weight: float = 0.05, every: int = 1) -> None:
        super().__init__("depth_tv", stages=("latent", "generator"), every=every)
        self.weight = weight

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """One term ``"tv"`` plus the diagnostic ``"_tv"`` (unweighted)."""
        if ctx.render is None:
            return {}
        depth = ctx.render.depth[:, 0]  # [1, 1, h, w], world units
        occ = ctx.render.opacity[:, 0].detach()
        dx = (depth[..., :, 1:] - depth[..., :, :-1]).abs() * occ[..., :, 1:] * occ[..., :, :-1]
        dy = (depth[..., 1:, :] - depth[..., :-1, :]).abs() * occ[..., 1:, :] * occ[..., :-1, :]
        tv = dx.mean() + dy.mean()
        return {"tv": self.weight * tv, "_tv": tv.detach()}
