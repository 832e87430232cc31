"""What the symmetry prior was given: the photo, its flip, the relit mirror and the shading.

SPI shows the flipped photo at the mirrored camera. Under a side light the flip carries the lit
cheek to the wrong side; with ``relight`` on, the mirror terms use the flipped photo relit to the
photo's light (:func:`sym3d.lighting.relight_mirror`). This figure lets a user see, for their
photo, whether that estimate is sensible before trusting the unseen side of the result.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import torch

from sym3d.lighting import relight_mirror
from sym3d.resize import resize

__all__ = ["SymmetryPriorImages", "symmetry_prior_images", "write_symmetry_prior_figure"]


@attrs.frozen(kw_only=True)
class SymmetryPriorImages:
    """The pseudo labels of the mirror, for one photo.

    Attributes:
        photo: ``[3, H, W]`` in ``[0, 1]``, the aligned input.
        flipped: ``[3, H, W]`` the plain flipped photo (SPI's mirror label).
        relit: ``[3, H, W]`` the flipped photo relit to the photo's light (``flipped`` where
            the estimate was refused or the light is symmetric).
        shading: ``[3, H, W]`` the estimated shading at the photo's camera, mapped to
            ``[0, 1]`` (``shading / 2``: 0.5 is the sphere mean), grey outside the face.
        note: one line: the light's asymmetry, or why the plain mirror is used.
    """

    photo: torch.Tensor
    flipped: torch.Tensor
    relit: torch.Tensor
    shading: torch.Tensor
    note: str


def symmetry_prior_images(
    photo: torch.Tensor, depth_z: torch.Tensor, camera: torch.Tensor, mask: torch.Tensor
) -> SymmetryPriorImages:
    """The mirror's pseudo labels for a photo and the geometry that the inversion found.

    Args:
        photo: ``[1, 3, H, W]`` in ``[0, 1]``.
        depth_z: ``[1, 1, h, w]`` camera-z depth of the result at the photo's camera (world
            units; background values are masked out by ``mask``).
        camera: ``[1, 25]`` the photo's camera.
        mask: ``[1, 1, H', W']`` in ``[0, 1]``: the face (or foreground) to relight.
    """
    out = relight_mirror(photo, depth_z, camera, mask)
    est = out.estimate
    if not bool(est.ok[0]):
        note = f"plain mirror: {est.reason[0]}"
    elif bool(est.symmetric[0]):
        note = f"the light is symmetric (asymmetry {float(est.asymmetry[0]):.3f}): plain mirror"
    else:
        note = (
            f"relit: light asymmetry {float(est.asymmetry[0]):.3f} from "
            f"{int(est.num_pairs[0])} mirror pairs ({float(est.inlier_fraction[0]):.0%} kept)"
        )
    m = resize(mask.to(photo.dtype), tuple(photo.shape[-2:])).clamp(0.0, 1.0)
    grey = torch.full_like(photo, 0.5)
    shading = (out.shading.expand_as(photo) / 2.0).clamp(0.0, 1.0)
    shading = grey + m * (shading - grey)
    return SymmetryPriorImages(
        photo=photo[0],
        flipped=out.flipped[0],
        relit=out.image[0],
        shading=shading[0],
        note=note,
    )


def write_symmetry_prior_figure(images: SymmetryPriorImages, path: str | os.PathLike) -> Path:
    """One labelled PNG: photo, flipped photo, relit mirror, estimated shading."""
    from sym3d.app.export.plots import plot_image_grid

    return plot_image_grid(
        [[images.photo, images.flipped, images.relit, images.shading]],
        path,
        row_labels=["mirror prior"],
        col_labels=["photo", "flipped (SPI)", "relit mirror", "estimated shading"],
        tile_px=192,
    )
