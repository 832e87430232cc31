"""Depth-guided backward warping of a source image into other cameras, with visibility masks.

For every pixel of a *target* view: lift the pixel centre to 3D with the target's camera-z depth,
project the point into the *source* camera, and sample the source image there. A pixel is valid
when the point projects inside the source image, in front of the source camera, and is the
surface the source camera sees (its source z agrees with the source depth map within a
threshold: the occlusion test). SPI uses this to make pseudo labels of nearby and mirrored views.

All functions are pure and differentiable (``grid_sample``); depths must be **camera z** (use
:attr:`sym3d.protocols.RenderOutput.depth_z` or :func:`sym3d.camera.ray_distance_to_z`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs
import torch
import torch.nn.functional as F

from sym3d.camera import mirror_camera, project_points, unproject_depth
from sym3d.checks import check_shape
from sym3d.image import mirror_image
from sym3d.resize import resize

if TYPE_CHECKING:
    from sym3d.protocols import PriorContext, RenderOutput

__all__ = [
    "WarpResult",
    "warp_to_views",
    "conflict_mask",
    "DepthMode",
    "warp_depth",
    "source_mask",
    "warp_photo",
]

DepthMode = Literal["camera_z", "spi"]
"""``camera_z``: the renderer's camera z (correct); ``spi``: ray distance used as z (SPI's quirk)."""


@attrs.frozen(kw_only=True)
class WarpResult:
    """Output of :func:`warp_to_views` (all ``[B, V, C, H, W]`` at the source image resolution).

    Attributes:
        image: ``[B, V, 3, H, W]`` warped source image, multiplied by ``mask``.
        mask: ``[B, V, 1, H, W]`` in ``[0, 1]``: ``in_bounds * visible * source_mask(sampled)``.
        in_bounds: ``[B, V, 1, H, W]`` in {0, 1}: projects inside the source image, in front of it.
        visible: ``[B, V, 1, H, W]`` in {0, 1}: passes the occlusion test.
    """

    image: torch.Tensor
    mask: torch.Tensor
    in_bounds: torch.Tensor
    visible: torch.Tensor


def warp_to_views(
    source_image: torch.Tensor,
    source_depth: torch.Tensor,
    source_camera: torch.Tensor,
    target_depth: torch.Tensor,
    target_cameras: torch.Tensor,
    *,
    source_mask: torch.Tensor | None = None,
    occlusion_threshold: float = 0.05,
    occluder_window: float = 0.0,
) -> WarpResult:
    """Backward-warp ``source_image`` into each target camera.

    Depth maps may have a lower resolution than the image (e.g. EG3D's 128 neural resolution vs
    its 512 image); they are bilinearly upsampled to the image resolution first, as SPI does.

    Args:
        source_image: ``[B, 3, H, W]`` image seen from ``source_camera`` (any value range).
        source_depth: ``[B, 1, h, w]`` camera-z depth of the source view (world units).
        source_camera: ``[B, 25]``.
        target_depth: ``[B, V, 1, h, w]`` camera-z depth of each target view.
        target_cameras: ``[B, V, 25]``.
        source_mask: optional ``[B, 1, H', W']`` weights in ``[0, 1]`` in the source view (e.g. the
            face mask); sampled at the warped positions and multiplied into the mask.
        occlusion_threshold: max ``|z_source(point) - depth_source(projection)|`` (world units).
        occluder_window: reach of the occlusion test (fraction of the image side; 0: the
            projection only). Each pixel of the source depth map becomes the nearest depth within
            ``round(occluder_window * w)`` of its pixels, so a point counts as visible only where
            no surface near its projection lies in front of it by more than the threshold.

    Returns:
        :class:`WarpResult`.
    """
    dims = check_shape(source_image, ["B", 3, "H", "W"], "source_image")
    check_shape(source_depth, ["B", 1, "h", "w"], "source_depth", dims=dims)
    check_shape(source_camera, ["B", 25], "source_camera", dims=dims)
    check_shape(target_depth, ["B", "V", 1, "h", "w"], "target_depth", dims=dims)
    check_shape(target_cameras, ["B", "V", 25], "target_cameras", dims=dims)
    b, _, h_img, w_img = source_image.shape
    if h_img != w_img:
        raise ValueError(f"source_image: expected a square image, got {h_img}x{w_img}.")
    v = target_cameras.shape[1]
    size = h_img

    tgt_z = resize(target_depth.flatten(0, 1), size).unflatten(0, (b, v))  # [B, V, 1, H, W]
    points = unproject_depth(tgt_z, target_cameras)  # [B, V, H, W, 3]
    src_cams = source_camera[:, None, :].expand(b, v, 25)
    uv, z_src = project_points(points.flatten(2, 3), src_cams)  # [B, V, HW, 2], [B, V, HW]
    grid = (uv * 2.0 - 1.0).reshape(b * v, size, size, 2)

    def sample(x: torch.Tensor) -> torch.Tensor:
        xs = x[:, None].expand(b, v, *x.shape[1:]).flatten(0, 1)
        return F.grid_sample(xs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    k = round(occluder_window * source_depth.shape[-1])
    if k > 0:  # at the depth map's resolution: the window stays small for large images
        import kornia.morphology  # deferred: importing kornia costs ~0.4 s

        window = source_depth.new_ones(2 * k + 1, 2 * k + 1)
        source_depth = kornia.morphology.erosion(source_depth, window)  # the nearest depth
    src_z = resize(source_depth, size)
    sampled_image = sample(source_image).unflatten(0, (b, v))
    sampled_depth = sample(src_z).unflatten(0, (b, v))  # [B, V, 1, H, W]
    z_src = z_src.reshape(b, v, 1, size, size)
    inside = (grid.abs() <= 1.0).all(-1).reshape(b, v, 1, size, size) & (z_src > 1e-6)
    visible = (z_src - sampled_depth).abs() < occlusion_threshold
    in_bounds = inside.to(source_image.dtype)
    vis = (visible & inside).to(source_image.dtype)
    mask = in_bounds * vis
    if source_mask is not None:
        check_shape(source_mask, ["B", 1, "Hm", "Wm"], "source_mask", dims=dims)
        mask = mask * sample(resize(source_mask, size)).unflatten(0, (b, v)).clamp(0.0, 1.0)
    return WarpResult(image=sampled_image * mask, mask=mask, in_bounds=in_bounds, visible=vis)


def conflict_mask(
    warped_a: WarpResult,
    warped_b: WarpResult,
    *,
    threshold: float,
) -> torch.Tensor:
    """Pixels where two pseudo labels of the same views disagree: ``[B, V, 1, H, W]`` in {0, 1}.

    A pixel conflicts when both warps are valid there and the mean absolute RGB difference
    exceeds ``threshold`` (images in ``[0, 1]``). Used as SPI's "authentic" filter: the warped
    mirror image is not trusted where the warped real image, seen at that pixel, says otherwise
    (an asymmetric mole, a fringe on one side, side light).
    """
    both = warped_a.mask * warped_b.mask
    diff = (warped_a.image - warped_b.image).abs().mean(dim=2, keepdim=True)
    return ((diff > threshold) & (both > 0.5)).to(diff.dtype)


def warp_depth(render: RenderOutput, mode: DepthMode) -> torch.Tensor:
    """Detached depth ``[B, V, 1, h, w]`` of a render for warping (see :data:`DepthMode`)."""
    return (render.depth_z if mode == "camera_z" else render.depth).detach()


def source_mask(ctx: PriorContext, use_face_mask: bool) -> torch.Tensor:
    """Where pseudo labels may come from in the input view.

    The face mask when known (and ``use_face_mask``), else the rendered foreground (the opacity
    of ``ctx.render``).

    Returns:
        ``[1, 1, H, W]`` in ``[0, 1]`` at the target image resolution.
    """
    size = ctx.target.shape[-1]
    obs = ctx.observation
    if use_face_mask and obs is not None and obs.face_mask is not None:
        m = obs.face_mask
    else:
        assert ctx.render is not None, "the input-view render is needed for its opacity"
        m = ctx.render.opacity[:, 0].detach()
    if m.shape[-1] != size:
        m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
    return m.clamp(0.0, 1.0)


def warp_photo(
    ctx: PriorContext,
    target_render: RenderOutput,
    target_cameras: torch.Tensor,
    *,
    depth_mode: DepthMode,
    use_face_mask: bool,
    occlusion_threshold: float,
    mirrored: bool = False,
    photo: torch.Tensor | None = None,
    occluder_window: float = 0.0,
) -> WarpResult:
    """Warp the photo into ``target_cameras [1, V, 25]`` with the depth of this step's renders.

    The photo is ``ctx.target`` seen from ``ctx.camera``; every input is detached (pseudo labels
    are targets).

    ``mirrored=True`` warps the *flipped* photo from the mirrored camera, using the flipped depth
    and mask of the input view (a symmetric head is assumed, as SPI does). ``photo``
    ``[1, 3, H, W]`` replaces ``ctx.target`` (e.g. the photo relit for the mirror; it is flipped
    too when ``mirrored``). ``occluder_window``: as :func:`warp_to_views`.
    """
    assert ctx.render is not None, "warping needs the input-view render"
    image = ctx.target if photo is None else photo.detach()
    depth = warp_depth(ctx.render, depth_mode)[:, 0]
    camera, mask = ctx.camera, source_mask(ctx, use_face_mask)
    if mirrored:
        image, depth, mask = mirror_image(image), mirror_image(depth), mirror_image(mask)
        camera = mirror_camera(camera)
    return warp_to_views(
        image,
        depth,
        camera,
        warp_depth(target_render, depth_mode),
        target_cameras,
        source_mask=mask,
        occlusion_threshold=occlusion_threshold,
        occluder_window=occluder_window,
    )
