"""Contextual loss (Mechrez et al., ECCV 2018) on feature maps and on facial-feature boxes.

The contextual loss compares two *sets* of feature vectors, ignoring where each vector sits, so
it tolerates misalignment. SPI uses it in stage 2 to compare renders of the mirrored view with
depth-warped mirror images inside the eye and mouth boxes ("BoxCX"), where the symmetry prior
is only approximately right and pixel-aligned losses would blur.

:func:`contextual_loss` works on feature maps. :func:`region_contextual_loss` reproduces
BoxCX: resize, crop every box with ``roi_align`` sampling, extract features, and sum the loss
over boxes. :func:`crop_boxes` is the crop on its own (``torchvision.ops.roi_align``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from sym3d.checks import check_finite, check_shape
from sym3d.errors import ConfigError, ShapeError, UserInputError
from sym3d.losses._reduce import ReducingLoss, check_reduction, reduce
from sym3d.losses.features import FeatureExtractor
from sym3d.protocols import Reduction

__all__ = [
    "contextual_loss",
    "region_contextual_loss",
    "crop_boxes",
    "boxes_to_tensor",
    "spi_boxes_from_landmarks",
    "SPI_REGION_NAMES",
    "ContextualLoss",
    "RegionContextualLoss",
    "Centering",
    "Normalization",
]

Centering = Literal["batch", "sample"]
Normalization = Literal["imagenet", "spi_quirk"]

SPI_REGION_NAMES: tuple[str, ...] = ("mouth", "right_eye", "left_eye")
"""Region order of :func:`spi_boxes_from_landmarks` (left/right are the subject's)."""


# --------------------------------------------------------------------------------------------
# contextual loss on feature maps
# --------------------------------------------------------------------------------------------


def _flatten_weights(weights: torch.Tensor, b: int, n: int, name: str) -> torch.Tensor:
    """Accept ``[B, N]``, ``[B, h, w]`` or ``[B, 1, h, w]`` weights for ``N = h * w`` positions."""
    if weights.dim() == 4 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.dim() == 3:
        weights = weights.flatten(1)
    if weights.dim() != 2 or weights.shape[0] != b or weights.shape[1] != n:
        raise ShapeError(name, f"[B,1,h,w] or [B,h*w] with B={b}, h*w={n}", weights.shape)
    return weights


def contextual_loss(
    pred_feats: torch.Tensor,
    target_feats: torch.Tensor,
    *,
    bandwidth: float = 0.5,
    eps: float = 1e-5,
    max_relative_distance: float = 10.0,
    center: Centering = "batch",
    target_weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Contextual loss between two feature maps, per sample.

    With pred features :math:`x_i` and target features :math:`y_j` (the spatial positions of
    each map, as sets):

    1. centre both by the channel mean of the target features (over the batch and all positions
       for ``center="batch"``, as SPI and Mechrez's code do; per sample for ``"sample"``), then
       L2-normalise each vector;
    2. cosine distance :math:`d_{ij} = 1 - \cos(x_i, y_j)`;
    3. relative distance :math:`\tilde d_{ij} = d_{ij} / (\min_k d_{ik} + \epsilon)`, clamped
       to at most ``max_relative_distance``;
    4. affinity :math:`w_{ij} = \exp((1 - \tilde d_{ij}) / h)`, normalised over targets:
       :math:`CX_{ij} = w_{ij} / \sum_k w_{ik}`;
    5. :math:`CX = \operatorname{mean}_j \max_i CX_{ij}` and the loss is
       :math:`-\log(CX + \epsilon)`.

    The loss is invariant to permutations of positions within either map. It is at its minimum
    (close to 0) when every target feature has a distinct, closely matching pred feature.

    Args:
        pred_feats: ``[B, C, Hp, Wp]`` features of the prediction (gradients flow here).
        target_feats: ``[B, C, Ht, Wt]`` features of the target; sizes may differ from pred's.
        bandwidth: ``h`` > 0; SPI uses 0.5.
        eps: the epsilon of steps 3 and 5 (SPI: 1e-5).
        max_relative_distance: clamp of the relative distance (SPI clamps to 10).
        center: ``"batch"`` (SPI parity; the batch's samples then influence each other) or
            ``"sample"`` (each sample on its own).
        target_weights: optional ``[B, 1, Ht, Wt]`` (or ``[B, Ht*Wt]``) weights in ``[0, 1]`` of
            the target positions: a weight of 0 removes the position from the target set (the
            centring mean, the min, the normalisation and the final mean), a weight of 1 keeps
            it as it is, and fractional weights count fractionally: step 4 becomes
            :math:`CX_{ij} = m_j w_{ij} / \sum_k m_k w_{ik}` and step 5 the ``m``-weighted mean
            over targets. Only the ratios of the weights matter (uniform weights give the
            unweighted loss). A sample whose weights are all zero gives a loss of 0 with zero
            gradient.
        reduction: ``"none"`` returns ``[B]``; ``"mean"`` / ``"sum"`` a scalar.

    Returns:
        ``[B]`` or a scalar; values in ``[-log(1 + eps), -log(eps)]`` (about 0 to 11.5), with or
        without ``target_weights``: every :math:`CX_{ij}` is in ``[0, 1]``, and so is ``CX``.

    Raises:
        sym3d.errors.ShapeError: if the maps are not 4D, or batch/channel sizes differ.
        sym3d.errors.ConfigError: for a non-positive ``bandwidth`` or a bad ``center``/``reduction``.

    Example:
        >>> f = torch.randn(2, 8, 5, 5)
        >>> bool(contextual_loss(f, f) < contextual_loss(f, torch.randn(2, 8, 5, 5)))
        True
    """
    check_reduction(reduction)
    if not bandwidth > 0:
        raise ConfigError(f"bandwidth: expected > 0, got {bandwidth!r}.")
    if center not in ("batch", "sample"):
        raise ConfigError(f"center: expected 'batch' or 'sample', got {center!r}.")
    dims = check_shape(pred_feats, ["B", "C", "Hp", "Wp"], "pred_feats")
    check_shape(target_feats, ["B", "C", "Ht", "Wt"], "target_feats", dims=dims)
    b = dims["B"]
    x = pred_feats.flatten(2)  # [B, C, Np]
    y = target_feats.flatten(2)  # [B, C, Nt]
    n_t = y.shape[2]

    if target_weights is None:
        m = None
        stat_dims = (0, 2) if center == "batch" else (2,)
        mu = y.mean(dim=stat_dims, keepdim=True)
    else:
        m = _flatten_weights(target_weights, b, n_t, "target_weights").to(y.dtype)
        empty = m.sum(dim=1) <= 0  # [B]
        m = torch.where(
            empty[:, None], torch.ones_like(m), m
        )  # keeps the math finite; zeroed below
        if center == "batch":
            mw = m * (~empty)[:, None].to(m.dtype)  # empty samples do not shift the batch mean
            mu = (y * mw[:, None]).sum(dim=(0, 2), keepdim=True) / mw.sum().clamp_min(1e-12)
        else:
            mu = (y * m[:, None]).sum(dim=2, keepdim=True) / m.sum(dim=1)[:, None, None]

    x = F.normalize(x - mu, dim=1)
    y = F.normalize(y - mu, dim=1)
    dist = 1.0 - torch.bmm(x.transpose(1, 2), y)  # [B, Np, Nt] cosine distance
    if m is None:
        d_min = dist.min(dim=2, keepdim=True).values
    else:
        d_min = (
            torch.where(m[:, None] > 0, dist, torch.full_like(dist, math.inf))
            .min(dim=2, keepdim=True)
            .values
        )
    # (1 - rel) / h up to a per-row constant, which the normalisation over targets cancels;
    # clamping rel at max_relative_distance is clamping these logits at -max_relative_distance / h
    logits = (dist * (-1.0 / (bandwidth * (d_min + eps)))).clamp(
        min=-max_relative_distance / bandwidth
    )
    if m is None:
        cx = torch.softmax(logits, dim=2)  # [B, Np, Nt]
        score = cx.max(dim=1).values.mean(dim=1)  # max over pred, mean over targets
    else:
        # CX_ij is target j's share of pred i's affinity mass, each target's affinity scaled by
        # its weight, so CX_ij <= 1 and the weighted mean over targets stays in [0, 1]. (Reading
        # weights as multiplicities, i.e. the share of *one copy* of j, lets a target of weight
        # m < 1 reach CX = 1 / m: a uniform weight of 0.5 used to halve the loss's argument.)
        log_m = torch.log(m)[:, None]
        cx = torch.exp(logits + log_m - torch.logsumexp(logits + log_m, dim=2, keepdim=True))
        score = (cx.max(dim=1).values * m).sum(dim=1) / m.sum(dim=1)
    loss = -torch.log(score + eps)
    if m is not None:
        loss = torch.where(empty, torch.zeros_like(loss), loss)
    return reduce(loss, reduction)


# --------------------------------------------------------------------------------------------
# boxes and crops
# --------------------------------------------------------------------------------------------


def boxes_to_tensor(
    boxes: torch.Tensor | Mapping[str, Sequence[float]] | Sequence[Sequence[float]],
    batch_size: int,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalise the accepted box formats to a ``[B, R, 4]`` tensor.

    Args:
        boxes: ``[R, 4]`` (shared by the batch) or ``[B, R, 4]`` tensor, a sequence of
            ``(x0, y0, x1, y1)``, or a mapping ``name -> (x0, y0, x1, y1)`` such as
            :attr:`sym3d.protocols.FaceObservation.regions` (insertion order is kept).
            Coordinates are normalised: 0 is the left/top edge, 1 the right/bottom edge.
        batch_size: ``B``.
        device: target device; dtype: target dtype.

    Returns:
        ``[B, R, 4]`` boxes.

    Raises:
        sym3d.errors.ShapeError: for a wrong shape or no boxes.
        sym3d.errors.UserInputError: for non-finite boxes or ``x1 < x0`` / ``y1 < y0``.
    """
    if isinstance(boxes, Mapping):
        boxes = [tuple(v) for v in boxes.values()]
    t = boxes if isinstance(boxes, torch.Tensor) else torch.as_tensor(boxes, dtype=dtype)
    t = t.to(device=device, dtype=dtype)
    if t.dim() == 2:
        check_shape(t, ["R", 4], "boxes")
        t = t.unsqueeze(0).expand(batch_size, -1, -1)
    else:
        check_shape(t, [batch_size, "R", 4], "boxes")
    if t.shape[1] == 0:
        raise ShapeError("boxes", "[B,R,4] or [R,4] with R >= 1", t.shape)
    check_finite(t, "boxes")
    if bool(((t[..., 2] < t[..., 0]) | (t[..., 3] < t[..., 1])).any()):
        raise UserInputError(
            "boxes: expected (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0, got a reversed box.",
            hint="boxes are (x_min, y_min, x_max, y_max) in normalised [0, 1] coordinates.",
        )
    return t


def crop_boxes(
    images: torch.Tensor,
    boxes: torch.Tensor,
    output_size: int | tuple[int, int],
    *,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """Crop and resample boxes with ``torchvision.ops.roi_align``, all boxes in one call.

    Each output cell averages ``sh x sw`` bilinear samples spread evenly inside its bin
    (``sampling_ratio`` per side, or ``ceil(box_size / output_size)`` when ``-1``). Pixel centres
    sit at integer coordinates (so pass ``aligned=True`` for half-pixel-corrected boxes);
    samples up to one pixel outside the image use the border value, farther ones count as 0.
    The boxes stay on the images' device (no host synchronisation).

    Args:
        images: ``[B, C, H, W]``.
        boxes: ``[B, R, 4]`` boxes ``(x0, y0, x1, y1)`` in **pixel** coordinates of ``images``
            (cast to the images' dtype and device).
        output_size: side (or ``(h, w)``) of each crop.
        sampling_ratio: samples per bin side; ``-1`` is adaptive as in torchvision.
        aligned: shift boxes by -0.5 pixel (torchvision's ``aligned=True``).

    Returns:
        ``[B, R, C, h, w]`` crops (differentiable with respect to ``images``).
    """
    from torchvision.ops import roi_align  # imported here: torchvision is slow to import

    dims = check_shape(images, ["B", "C", "H", "W"], "images")
    check_shape(boxes, [dims["B"], "R", 4], "boxes")
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    b, c = dims["B"], dims["C"]
    r = boxes.shape[1]
    flat = boxes.reshape(b * r, 4).to(device=images.device, dtype=images.dtype)
    index = torch.arange(b, device=images.device, dtype=images.dtype).repeat_interleave(r)
    rois = torch.cat([index[:, None], flat], dim=1)  # [B*R, 5]: batch index, x0, y0, x1, y1
    crops = roi_align(images, rois, (out_h, out_w), 1.0, sampling_ratio, aligned)
    return crops.reshape(b, r, c, out_h, out_w)


def spi_boxes_from_landmarks(
    landmarks: torch.Tensor,
    image_size: int | tuple[int, int],
    *,
    mouth_padding: float = 8.0,
    eye_padding: float = 15.0,
    reference_size: int = 256,
) -> torch.Tensor:
    """SPI's mouth and eye boxes from iBUG-68 landmarks, as normalised boxes.

    SPI takes the bounding box of points 48-67 (mouth) padded by 8 px, and of 36-41 / 42-47
    (the subject's right / left eye, i.e. image-left / image-right) padded by 15 px, with the
    landmarks at 256 x 256 scale. The padding is given at ``reference_size`` scale and scaled
    with the image.

    Args:
        landmarks: ``[B, 68, 2]`` pixel coordinates ``(x, y)`` in an image of ``image_size``.
        image_size: side (or ``(h, w)``) of the image the landmarks refer to.
        mouth_padding: mouth padding in pixels at ``reference_size``.
        eye_padding: eye padding in pixels at ``reference_size``.
        reference_size: the image side at which paddings are expressed.

    Returns:
        ``[B, 3, 4]`` normalised boxes in :data:`SPI_REGION_NAMES` order (mouth, right eye, left eye).
    """
    check_shape(landmarks, ["B", 68, 2], "landmarks")
    ih, iw = (image_size, image_size) if isinstance(image_size, int) else image_size
    scale = landmarks.new_tensor([iw, ih, iw, ih])
    out = []
    for idx, pad in (
        (slice(48, 68), mouth_padding),
        (slice(36, 42), eye_padding),
        (slice(42, 48), eye_padding),
    ):
        pts = landmarks[:, idx]
        lo, hi = pts.min(dim=1).values, pts.max(dim=1).values  # [B, 2]
        pad_xy = landmarks.new_tensor([pad * iw / reference_size, pad * ih / reference_size])
        out.append(torch.cat([lo - pad_xy, hi + pad_xy], dim=1) / scale)
    return torch.stack(out, dim=1)


# --------------------------------------------------------------------------------------------
# BoxCX
# --------------------------------------------------------------------------------------------


def region_contextual_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    boxes: torch.Tensor | Mapping[str, Sequence[float]] | Sequence[Sequence[float]],
    extractor: FeatureExtractor,
    *,
    crop_size: int = 80,
    resize_to: int | None = 256,
    mask: torch.Tensor | None = None,
    weight_mask: torch.Tensor | None = None,
    normalization: Normalization = "imagenet",
    bandwidth: float = 0.5,
    eps: float = 1e-5,
    center: Centering = "batch",
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """SPI's "BoxCX": the contextual loss inside facial-feature boxes, summed over boxes.

    Steps: optionally multiply both images by ``mask``; bilinearly resize to
    ``resize_to x resize_to``; crop every box to ``crop_size x crop_size`` with
    ``roi_align`` sampling (:func:`crop_boxes`); run ``extractor`` on all crops at once; compute
    :func:`contextual_loss` per box (the batch of one box shares the centring mean, as in
    SPI); sum over boxes. SPI's defaults: 256, 80, VGG ``conv2_1`` (pre-ReLU), ``h = 0.5``.
    SPI then weights the sum by 0.1 (and the term by 0.05 x 4); weights are the caller's job.

    **Normalisation quirk.** SPI applies the ImageNet mean/std to images in ``[-1, 1]``
    instead of ``[0, 1]``. ``normalization="imagenet"`` (default, correct) hands the extractor
    the ``[0, 1]`` crops it is specified to take. ``normalization="spi_quirk"`` reproduces SPI by
    handing it ``2 x - 1`` (values in ``[-1, 1]``) instead, so an extractor that applies the
    ImageNet statistics (:class:`sym3d_extras.perceptual.VGGContextualFeatures`) sees exactly
    SPI's input; with that option ``mask`` also zeroes pixels in ``[-1, 1]`` space (mid-grey)
    as SPI's masking does. The quirk is meaningless for extractors without ImageNet statistics.

    Args:
        pred: ``[B, 3, H, W]`` prediction in ``[0, 1]`` (gradients flow here).
        target: ``[B, 3, H, W]`` target (pseudo-label) in ``[0, 1]``.
        boxes: normalised ``(x0, y0, x1, y1)`` boxes: ``[R, 4]`` shared, ``[B, R, 4]`` per
            sample, or a mapping name -> box (see :func:`boxes_to_tensor`). Converted to pixels
            of the resized image as ``x * W``, then cropped with roi_align's ``aligned=False``
            convention as SPI does.
        extractor: any :class:`~sym3d.losses.features.FeatureExtractor`. No default on purpose.
        crop_size: side of each crop in pixels.
        resize_to: side both images are resized to before cropping; ``None`` keeps ``H x W``.
        mask: optional ``[B, 1, H, W]`` in ``[0, 1]`` multiplied into both images first
            (SPI's authentic mask on the render and the warp).
        weight_mask: optional ``[B, 1, H, W]`` in ``[0, 1]``: pixels with weight 0 are ignored
            as *targets* of the contextual loss (e.g. non-authentic pixels of the warped
            pseudo-label). It is cropped like the images and area-averaged to the feature
            resolution, then passed as ``target_weights`` to :func:`contextual_loss`. A box
            with no valid pixel contributes 0.
        normalization: ``"imagenet"`` or ``"spi_quirk"`` (see above).
        bandwidth, eps, center: see :func:`contextual_loss`.
        reduction: ``"none"`` returns ``[B]`` (summed over boxes); ``"mean"`` / ``"sum"`` a scalar.

    Returns:
        ``[B]`` or a scalar.

    Raises:
        sym3d.errors.ShapeError: for mismatched image/mask/box shapes.
        sym3d.errors.ConfigError: for a bad option value.
    """
    check_reduction(reduction)
    if normalization not in ("imagenet", "spi_quirk"):
        raise ConfigError(
            f"normalization: expected 'imagenet' or 'spi_quirk', got {normalization!r}."
        )
    if crop_size < 1 or (resize_to is not None and resize_to < 1):
        raise ConfigError(
            f"crop_size/resize_to: expected positive sizes, got {crop_size!r}/{resize_to!r}."
        )
    dims = check_shape(pred, ["B", 3, "H", "W"], "pred")
    check_shape(target, ["B", 3, "H", "W"], "target", dims=dims)
    for name, t in (("mask", mask), ("weight_mask", weight_mask)):
        if t is not None:
            check_shape(t, ["B", 1, "H", "W"], name, dims=dict(dims))
    b = dims["B"]
    box_t = boxes_to_tensor(boxes, b, device=pred.device, dtype=torch.float64)  # [B, R, 4]
    r = box_t.shape[1]

    if normalization == "spi_quirk":
        pred, target = 2.0 * pred - 1.0, 2.0 * target - 1.0
    if mask is not None:
        pred, target = pred * mask, target * mask

    stacked = torch.cat(
        [pred, target] + ([weight_mask.to(pred.dtype)] if weight_mask is not None else []), dim=1
    )
    if resize_to is not None and tuple(stacked.shape[-2:]) != (resize_to, resize_to):
        stacked = F.interpolate(
            stacked, size=(resize_to, resize_to), mode="bilinear", align_corners=False
        )
    h, w = stacked.shape[-2:]
    pix = box_t * box_t.new_tensor([w, h, w, h])
    crops = crop_boxes(stacked, pix, crop_size)  # [B, R, 6|7, s, s]
    crops_pred = crops[:, :, 0:3].reshape(b * r, 3, crop_size, crop_size)
    crops_tgt = crops[:, :, 3:6].reshape(b * r, 3, crop_size, crop_size)

    feats = extractor(torch.cat([crops_pred, crops_tgt], dim=0))  # [2*B*R, C, fh, fw]
    check_shape(
        feats,
        [2 * b * r, "C", "h", "w"],
        f"features of extractor {getattr(extractor, 'name', '?')!r}",
    )
    feats = feats.reshape(2, b, r, *feats.shape[1:])
    if weight_mask is not None:
        wm = crops[:, :, 6:7].reshape(b * r, 1, crop_size, crop_size)
        wm = F.adaptive_avg_pool2d(wm, feats.shape[-2:]).reshape(b, r, 1, *feats.shape[-2:])

    total = pred.new_zeros(b)
    for ri in range(r):
        total = total + contextual_loss(
            feats[0, :, ri],
            feats[1, :, ri],
            bandwidth=bandwidth,
            eps=eps,
            center=center,
            target_weights=None if weight_mask is None else wm[:, ri],
            reduction="none",
        )
    return reduce(total, reduction)


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------


class ContextualLoss(ReducingLoss):
    """Module form of :func:`contextual_loss` (feature maps in, per-sample loss out).

    Args:
        bandwidth, eps, max_relative_distance, center: see :func:`contextual_loss`.
        reduction: default reduction, overridable per call.

    Shape:
        - pred_feats: ``(B, C, Hp, Wp)``; target_feats: ``(B, C, Ht, Wt)``.
        - output: ``(B,)`` for ``"none"``, else ``()``.
    """

    def __init__(
        self,
        bandwidth: float = 0.5,
        eps: float = 1e-5,
        max_relative_distance: float = 10.0,
        center: Centering = "batch",
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(reduction)
        if not bandwidth > 0:
            raise ConfigError(f"bandwidth: expected > 0, got {bandwidth!r}.")
        self.bandwidth, self.eps, self.max_relative_distance = bandwidth, eps, max_relative_distance
        self.center: Centering = center

    def forward(
        self,
        pred_feats: torch.Tensor,
        target_feats: torch.Tensor,
        *,
        target_weights: torch.Tensor | None = None,
        reduction: Reduction | None = None,
    ) -> torch.Tensor:
        """See :func:`contextual_loss`."""
        return contextual_loss(
            pred_feats,
            target_feats,
            bandwidth=self.bandwidth,
            eps=self.eps,
            max_relative_distance=self.max_relative_distance,
            center=self.center,
            target_weights=target_weights,
            reduction=reduction or self.reduction,
        )


class RegionContextualLoss(ReducingLoss):
    """Module form of :func:`region_contextual_loss`, holding the extractor and options.

    Args:
        extractor: the feature extractor (registered as a submodule if it is an ``nn.Module``).
        crop_size, resize_to, normalization, bandwidth, eps, center: see
            :func:`region_contextual_loss`.
        reduction: default reduction, overridable per call.

    Shape:
        - pred, target: ``(B, 3, H, W)`` in ``[0, 1]``; boxes: ``(R, 4)`` or ``(B, R, 4)``.
        - output: ``(B,)`` for ``"none"``, else ``()``.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        *,
        crop_size: int = 80,
        resize_to: int | None = 256,
        normalization: Normalization = "imagenet",
        bandwidth: float = 0.5,
        eps: float = 1e-5,
        center: Centering = "batch",
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(reduction)
        if normalization not in ("imagenet", "spi_quirk"):
            raise ConfigError(
                f"normalization: expected 'imagenet' or 'spi_quirk', got {normalization!r}."
            )
        self.extractor = extractor
        self.crop_size, self.resize_to = crop_size, resize_to
        self.normalization: Normalization = normalization
        self.bandwidth, self.eps = bandwidth, eps
        self.center: Centering = center

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        boxes: torch.Tensor | Mapping[str, Sequence[float]] | Sequence[Sequence[float]],
        *,
        mask: torch.Tensor | None = None,
        weight_mask: torch.Tensor | None = None,
        reduction: Reduction | None = None,
    ) -> torch.Tensor:
        """See :func:`region_contextual_loss`."""
        return region_contextual_loss(
            pred,
            target,
            boxes,
            self.extractor,
            crop_size=self.crop_size,
            resize_to=self.resize_to,
            mask=mask,
            weight_mask=weight_mask,
            normalization=self.normalization,
            bandwidth=self.bandwidth,
            eps=self.eps,
            center=self.center,
            reduction=reduction or self.reduction,
        )
