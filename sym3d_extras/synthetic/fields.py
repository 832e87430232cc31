"""Fields that :func:`~sym3d_extras.synthetic.render.volume_render` draws.

:class:`HeadField` is the analytic head alone (what the latent expresses); :class:`GeneratorField`
adds the generator's tunable residual. The ground-truth scene's field, which adds detail the
latent cannot express, lives in :mod:`~sym3d_extras.synthetic.detail`.
"""

from __future__ import annotations

import torch

from sym3d_extras.synthetic.head import HeadGeometry, HeadValues, evaluate_head
from sym3d_extras.synthetic.render import FieldSample
from sym3d_extras.synthetic.residual import TriPlaneResidual

__all__ = ["HeadField", "GeneratorField"]


class HeadField:
    """The analytic head field of ``B`` heads; labels: ``("face",)``.

    Args:
        geometry: primitives, colours and light of the heads.

    """

    label_names: tuple[str, ...] = ("face",)

    def __init__(self, geometry: HeadGeometry) -> None:
        self.geometry = geometry
        self.light_dir = geometry.light_dir
        self.ambient = geometry.ambient
        self.diffuse = geometry.diffuse

    def shade(self, normal: torch.Tensor) -> torch.Tensor:
        """``[B, N, 1]`` light ``ambient + diffuse * max(0, n . l)`` at normals ``[B, N, 3]``."""
        lambert = (normal * self.light_dir[:, None, :]).sum(-1).clamp_min(0.0)
        return (self.ambient[:, None] + self.diffuse[:, None] * lambert)[..., None]

    def head(self, p: torch.Tensor, *, with_colour: bool) -> HeadValues:
        """Raw head values at ``p [B, N, 3]``."""
        return evaluate_head(p, self.geometry, with_colour=with_colour)

    def sdf(self, p: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` signed distance."""
        return self.head(p, with_colour=False).sdf

    def evaluate(self, p: torch.Tensor) -> FieldSample:
        """Distance, albedo and the face label at ``p [B, N, 3]``."""
        hv = self.head(p, with_colour=True)
        assert hv.albedo is not None and hv.face is not None
        return FieldSample(sdf=hv.sdf, albedo=hv.albedo, labels=hv.face[..., None])


class GeneratorField(HeadField):
    """The analytic head plus the generator's residual (SDF offset and additive colour).

    Args:
        geometry: the heads decoded from ``ws``.
        residual: the tunable residual fields shared by all heads.

    """

    def __init__(self, geometry: HeadGeometry, residual: TriPlaneResidual) -> None:
        super().__init__(geometry)
        self.residual = residual
        # Synthesised once per render and shared by every query of it (fine pass, normals, colour).
        self.density_planes, self.colour_planes = residual.planes()

    def sdf(self, p: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` analytic distance plus the residual offset."""
        return super().sdf(p) + self.residual.sdf(p, self.density_planes)

    def evaluate(self, p: torch.Tensor) -> FieldSample:
        """Distance, albedo, residual radiance and the face label at ``p [B, N, 3]``."""
        hv = self.head(p, with_colour=True)
        assert hv.albedo is not None and hv.face is not None
        return FieldSample(
            sdf=hv.sdf + self.residual.sdf(p, self.density_planes),
            albedo=hv.albedo,
            radiance=self.residual.colour(p, self.colour_planes),
            labels=hv.face[..., None],
        )
