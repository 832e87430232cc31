"""``SymHeadsScene``: one ground-truth head of the SymHeads world, rendered at any camera.

A scene is the analytic head of a latent ``ws`` (drawn from the world's mapping with the scene's
seed) plus the detail the latent cannot express (:class:`AsymmetryConfig`). Benchmarks render
it at the input camera (the "photo") and at novel cameras (ground truth), and use its masks to
measure the mole where it truly is and the ghost at its mirrored spot.
"""

from __future__ import annotations

import attrs
import torch

from sym3d.checks import check_shape
from sym3d.errors import ShapeError
from sym3d.protocols import FaceObservation
from sym3d_extras.synthetic.detail import AsymmetryConfig, SceneField
from sym3d_extras.synthetic.generator import SymHeadsGenerator
from sym3d_extras.synthetic.head import HeadGeometry
from sym3d_extras.synthetic.regions import feature_regions
from sym3d_extras.synthetic.render import volume_render

__all__ = ["SymHeadsScene", "SceneRender"]


@attrs.frozen(kw_only=True)
class SceneRender:
    """A scene seen from cameras ``[..., 25]``; every map is ``[..., C, H, W]`` (leading dims of the cameras).

    Attributes:
        image: ``[..., 3, H, W]`` in ``[0, 1]``.
        depth: ``[..., 1, H, W]`` expected distance along the unit ray (world units).
        depth_z: ``[..., 1, H, W]`` camera-space z.
        opacity: ``[..., 1, H, W]`` in ``[0, 1]``.
        foreground_mask: ``[..., 1, H, W]`` ``1`` where ``opacity > 0.5`` else ``0``.
        face_mask: ``[..., 1, H, W]`` soft face-parsing mask (skin and features; not hair,
            neck or fringe) in ``[0, 1]``.
        mole_mask: ``[..., 1, H, W]`` soft mask of the visible mole region.
        ghost_mask: ``[..., 1, H, W]`` soft mask of the mirrored ("ghost") mole position.

    """

    image: torch.Tensor
    depth: torch.Tensor
    depth_z: torch.Tensor
    opacity: torch.Tensor
    foreground_mask: torch.Tensor
    face_mask: torch.Tensor
    mole_mask: torch.Tensor
    ghost_mask: torch.Tensor


class SymHeadsScene:
    """A ground-truth SymHeads head.

    Args:
        seed: which head (``z ~ N(0, I)`` drawn with this seed, then mapped).
        asymmetry: the extra detail and asymmetric factors (default: symmetric detail and a mole
            on the subject's left cheek; ``AsymmetryConfig.none()`` gives exactly the latent part).
        world: the generator whose latent space defines the world (default ``SymHeadsGenerator()``);
            only its layout, mapping and render settings are used, never its residual.
        truncation_psi: truncation of the scene's latent toward ``w_avg`` (typical heads).
        resolution: default image side of :meth:`render`.

    Attributes:
        ws: ``[1, num_ws, w_dim]`` the ground-truth latent part (mirror-symmetric: its asymmetric
            components are zero, see :meth:`LatentLayout.symmetrize`).
        geometry: the analytic head of ``ws``.
        mole_position, ghost_position: ``[3]`` world positions of the mole (on the skin surface)
            and of its mirror image.

    """

    def __init__(
        self,
        seed: int,
        asymmetry: AsymmetryConfig = AsymmetryConfig(),
        *,
        world: SymHeadsGenerator | None = None,
        truncation_psi: float = 0.8,
        resolution: int = 64,
    ) -> None:
        self.seed, self.asymmetry, self.resolution = int(seed), asymmetry, int(resolution)
        self.world = world if world is not None else SymHeadsGenerator()
        with torch.no_grad():
            z = torch.randn(1, self.world.z_dim, generator=torch.Generator().manual_seed(self.seed))
            c = torch.zeros(1, 25)
            # The true latent part is mirror-symmetric: its asymmetric components are removed.
            self.ws = self.world.layout.symmetrize(
                self.world.mapping(z, c, truncation_psi=truncation_psi)
            )
            self.geometry: HeadGeometry = self.world.decode(self.ws)
            self.field = SceneField(self.geometry, asymmetry, self.seed)
        self.mole_position = self.field.mole_position
        self.ghost_position = self.field.ghost_position

    def render(
        self,
        cameras: torch.Tensor,
        *,
        resolution: int | None = None,
        generator: torch.Generator | None = None,
    ) -> SceneRender:
        """Render the scene.

        Args:
            cameras: ``[V, 25]`` or ``[B, V, 25]`` (any leading dims; all views of the one head).
            resolution: image side (default: the scene's ``resolution``).
            generator: random source of the stratified jitter; ``None`` = deterministic.

        Returns:
            :class:`SceneRender` with maps ``[*cameras.shape[:-1], C, H, W]``.

        """
        check_shape(cameras, ["*", 25], "cameras")
        if cameras.dim() < 2:
            raise ShapeError(
                "cameras",
                "[V,25] or [B,V,25]",
                cameras.shape,
                hint="use cameras[None] for one view.",
            )
        lead = cameras.shape[:-1]
        res = self.resolution if resolution is None else int(resolution)
        with torch.no_grad():
            raw = volume_render(
                self.field,
                cameras.reshape(1, -1, 25).float(),
                res,
                self.world.render_settings,
                generator=generator,
            )

        def shaped(x: torch.Tensor) -> torch.Tensor:
            return x[0].reshape(*lead, *x.shape[2:])

        opacity = shaped(raw.opacity)
        return SceneRender(
            image=shaped(raw.rgb).clamp(0.0, 1.0),
            depth=shaped(raw.depth),
            depth_z=shaped(raw.depth_z),
            opacity=opacity,
            foreground_mask=(opacity > 0.5).to(opacity.dtype),
            face_mask=shaped(raw.labels[:, :, 0:1]),
            mole_mask=shaped(raw.labels[:, :, 1:2]),
            ghost_mask=shaped(raw.labels[:, :, 2:3]),
        )

    def face_observation(
        self, camera: torch.Tensor, *, resolution: int | None = None
    ) -> FaceObservation:
        """The scene photographed at ``camera [1, 25]`` as a pose estimator would deliver it.

        Returns:
            :class:`~sym3d.protocols.FaceObservation` with the ``[1, 3, S, S]`` image, the exact
            camera, soft face and foreground masks, and ``regions`` from the projected 3D feature
            boxes (subject's left/right). No landmarks.

        """
        cam = camera.reshape(-1, 25)
        check_shape(cam, [1, 25], "camera")
        r = self.render(cam, resolution=resolution)
        return FaceObservation(
            image=r.image,
            camera=cam.clone(),
            face_mask=r.face_mask,
            foreground_mask=r.opacity,
            regions=feature_regions(self.geometry, cam),
            notes=(f"SymHeads scene seed={self.seed}",),
        )
