"""Facial-feature boxes in a view, from the known 3D feature boxes of a SymHeads head."""

from __future__ import annotations

import itertools

import torch

from sym3d.camera import project_points
from sym3d.checks import check_shape
from sym3d_extras.synthetic.head import HeadGeometry

__all__ = ["feature_regions"]

_CORNERS = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=3)))  # [8, 3]


def feature_regions(
    geometry: HeadGeometry, camera: torch.Tensor, index: int = 0
) -> dict[str, tuple[float, float, float, float]]:
    """Normalised boxes ``(x0, y0, x1, y1)`` in ``[0, 1]`` of the eyes, nose and mouth in a view.

    The 8 corners of each feature's 3D box are projected with :func:`sym3d.camera.project_points`
    and bounded. Occlusion is ignored (a box of a feature hidden by the head is still given).
    Left/right are the subject's (``left_eye`` is at world ``+x``).

    Args:
        geometry: heads (uses head ``index``).
        camera: ``[25]`` or ``[1, 25]`` camera label.
        index: which head of the batch.

    Returns:
        ``{"left_eye", "right_eye", "nose", "mouth"} -> (x0, y0, x1, y1)``.

    """
    cam = camera.reshape(-1, 25)
    check_shape(cam, [1, 25], "camera")
    out: dict[str, tuple[float, float, float, float]] = {}
    with torch.no_grad():
        for name, (centre, half) in geometry.feature_boxes().items():
            pts = centre[index].detach() + _CORNERS.to(centre) * half[index].detach()
            uv, _ = project_points(pts[None], cam.to(pts))
            lo = uv[0].amin(0).clamp(0.0, 1.0)
            hi = uv[0].amax(0).clamp(0.0, 1.0)
            out[name] = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    return out
