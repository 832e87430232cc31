"""Shared helpers for priors: a base class with the protocol's defaults, loss-callable types."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from sym3d.protocols import PriorContext, PriorViews

__all__ = ["BasePrior", "ImageLossFn", "RegionLossFn"]


class ImageLossFn(Protocol):
    """``loss(pred [B,3,H,W], target [B,3,H,W], mask=None) -> [B]`` on images in ``[0, 1]``."""

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor: ...


RegionLossFn = Callable[..., torch.Tensor]
"""``loss(pred, target, boxes [B,R,4], mask=None, weight_mask=None) -> [B]`` (contextual loss in boxes)."""


class BasePrior(abc.ABC):
    """Convenience base: stores ``name``, ``stages``, ``every`` and asks for no extra views.

    Subclasses override :meth:`views` if they need renders and implement :meth:`__call__`.
    """

    def __init__(self, name: str, stages: Sequence[str], every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every: expected a positive integer, got {every}.")
        self.name = name
        self.stages = tuple(stages)
        self.every = every

    def views(self, ctx: PriorContext) -> torch.Tensor | None:
        """No extra views by default."""
        return None

    @abc.abstractmethod
    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Return the prior's weighted loss terms (see :meth:`sym3d.protocols.Prior.__call__`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, stages={self.stages}, every={self.every})"
