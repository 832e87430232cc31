"""What the ground-truth scene holds beyond the latent: symmetric fine detail and asymmetry.

* :class:`AsymmetryConfig` chooses the factors (each can be switched off on its own).
* :class:`SymmetricDetail` is a seeded sum of even-in-``x`` plane waves: high-frequency skin
  texture (wavelengths 0.025..0.06 world units, about 3..7 pixels at 64 x 64) and small shape
  bumps (0.05..0.1). It stays symmetric, so the mirror prior is right about it.
* :class:`SceneField` composes the analytic head with that detail, a one-sided mole (a dark
  Gaussian spot in the skin albedo at a known world position), a one-sided fringe of hair over
  the forehead, and the light: turned off the symmetry plane, raised or lowered, coloured, and an
  optional second light.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import attrs
import torch

from sym3d.errors import ConfigError
from sym3d_extras.synthetic.fields import HeadField
from sym3d_extras.synthetic.head import HeadGeometry
from sym3d_extras.synthetic.render import FieldSample
from sym3d_extras.synthetic.sdf import ellipsoids, smooth_min, soft_step

__all__ = ["AsymmetryConfig", "SymmetricDetail", "SceneField", "surface_point", "SCENE_LABELS"]

SCENE_LABELS: tuple[str, ...] = ("face", "mole", "ghost")
"""Label channels of :class:`SceneField` (composited like colour)."""


def _non_negative(_inst: object, attribute: attrs.Attribute, value: float) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name}: expected a value >= 0, got {value}.")


def _rgb(value: object) -> tuple[float, float, float]:
    try:
        rgb = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(
            f"light_colour: expected three numbers (R, G, B), got {value!r}."
        ) from None
    if len(rgb) != 3 or min(rgb) < 0:
        raise ConfigError(f"light_colour: expected three numbers >= 0 (R, G, B), got {value!r}.")
    return rgb  # type: ignore[return-value]


def _elevation(_inst: object, attribute: attrs.Attribute, value: float) -> None:
    if not -1.2 <= value <= 1.2:
        raise ConfigError(
            f"{attribute.name}: expected radians in [-1.2, 1.2] (the light stays in front of the "
            f"face), got {value}."
        )


@attrs.frozen(kw_only=True)
class AsymmetryConfig:
    """Detail the latent cannot express, as separate factors.

    Attributes:
        detail_amplitude: scale of the **symmetric** fine detail (skin texture of 7% albedo
            RMS and shape bumps of 1.2 mm RMS at 1.0); 0 switches it off.
        mole_radius: radius of the mole (world units; Gaussian sigma, 0.016 is about 1.7 pixels at 64 x 64).
        mole_contrast: darkening at the mole centre in ``[0, 1]``; 0 switches the mole off.
        mole_side: the subject's ``"left"`` (world +x) or ``"right"`` cheek.
        fringe_amount: length of a one-sided fringe over the forehead in ``[0, 1]``; 0 = none.
        fringe_side: the subject's side the fringe covers.
        light_azimuth: radians the light is turned about the vertical axis toward the subject's
            left (world +x); 0 keeps the light in the symmetry plane.
        light_elevation: radians added to the head's light elevation (about 0.25 rad above the
            horizon): > 0 raises the light (toward a top light), < 0 lowers it (light from below).
        light_colour: RGB multiplier of the (key) light's diffuse term; the ambient term stays
            white, so a coloured key light tints lit and shadowed sides differently.
        fill_strength: a second, white light with this fraction of the key's diffuse strength at
            the key's elevation; 0 = none.
        fill_azimuth: radians the second light is turned toward the subject's left.

    """

    detail_amplitude: float = attrs.field(default=1.0, validator=_non_negative)
    mole_radius: float = attrs.field(default=0.016, validator=_non_negative)
    mole_contrast: float = attrs.field(default=0.75, validator=_non_negative)
    mole_side: Literal["left", "right"] = attrs.field(
        default="left", validator=attrs.validators.in_(("left", "right"))
    )
    fringe_amount: float = attrs.field(default=0.0, validator=_non_negative)
    fringe_side: Literal["left", "right"] = attrs.field(
        default="right", validator=attrs.validators.in_(("left", "right"))
    )
    light_azimuth: float = 0.0
    light_elevation: float = attrs.field(default=0.0, validator=_elevation)
    light_colour: tuple[float, float, float] = attrs.field(default=(1.0, 1.0, 1.0), converter=_rgb)
    fill_strength: float = attrs.field(default=0.0, validator=_non_negative)
    fill_azimuth: float = 0.0

    @classmethod
    def none(cls) -> AsymmetryConfig:
        """No extra detail at all: the scene is exactly its latent part."""
        return cls(detail_amplitude=0.0, mole_contrast=0.0)

    @classmethod
    def symmetric(cls, detail_amplitude: float = 1.0) -> AsymmetryConfig:
        """Symmetric fine detail only (no mole, fringe or side light)."""
        return cls(detail_amplitude=detail_amplitude, mole_contrast=0.0)

    @property
    def light_is_symmetric(self) -> bool:
        """Whether the lights are mirror-symmetric about ``x = 0``.

        True when every light lies in the symmetry plane (elevation and colour do not matter), or
        when the second light is the exact mirror image of the key (opposite azimuth, equal
        strength, both white).
        """
        if self.fill_strength == 0.0:
            return self.light_azimuth == 0.0
        if self.light_azimuth == 0.0 and self.fill_azimuth == 0.0:
            return True
        return (
            self.fill_azimuth == -self.light_azimuth
            and self.fill_strength == 1.0
            and self.light_colour == (1.0, 1.0, 1.0)
        )

    @property
    def has_extra_light(self) -> bool:
        """Whether the scene's light differs from the head's own beyond its azimuth."""
        return (
            self.light_elevation != 0.0
            or self.light_colour != (1.0, 1.0, 1.0)
            or self.fill_strength != 0.0
        )

    @property
    def is_symmetric(self) -> bool:
        """Whether the scene stays mirror-symmetric (no mole or fringe, symmetric lights)."""
        return self.mole_contrast == 0.0 and self.fringe_amount == 0.0 and self.light_is_symmetric


def _even_waves(
    num: int, wavelengths: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """``[num, 5]`` rows ``(kx, ky, kz, phase, amplitude)`` of random even-in-x plane waves."""
    direction = torch.nn.functional.normalize(torch.randn(num, 3, generator=generator), dim=-1)
    lam = wavelengths[0] + (wavelengths[1] - wavelengths[0]) * torch.rand(num, generator=generator)
    k = direction * (2 * math.pi / lam)[:, None]
    phase = 2 * math.pi * torch.rand(num, generator=generator)
    amp = 0.5 + torch.rand(num, generator=generator)
    amp = amp / amp.square().mul(0.25).sum().sqrt()  # unit RMS of the sum
    return torch.cat([k, phase[:, None], amp[:, None]], dim=-1)


def _evaluate_waves(waves: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` sum of ``a cos(kx x) cos(ky y + kz z + phi)`` at ``p [B, N, 3]`` (even in x)."""
    w = waves.to(p)
    x, y, z = p[..., 0:1], p[..., 1:2], p[..., 2:3]
    return (w[:, 4] * torch.cos(w[:, 0] * x) * torch.cos(w[:, 1] * y + w[:, 2] * z + w[:, 3])).sum(
        -1
    )


class SymmetricDetail:
    """Seeded symmetric fine detail: skin texture and shape bumps (both even in ``x``).

    Args:
        seed: the scene's seed.
        amplitude: overall scale (``AsymmetryConfig.detail_amplitude``).

    """

    texture_rms: float = 0.07
    bump_rms: float = 0.0012

    def __init__(self, seed: int, amplitude: float) -> None:
        g = torch.Generator().manual_seed(10_000 + seed)
        self.amplitude = amplitude
        self.texture_waves = _even_waves(16, (0.025, 0.06), g)
        self.bump_waves = _even_waves(10, (0.05, 0.1), g)

    def texture(self, p: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` relative albedo modulation (RMS ``0.07 * amplitude``)."""
        return self.amplitude * self.texture_rms * _evaluate_waves(self.texture_waves, p)

    def bumps(self, p: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` signed-distance offset (world units, RMS ``0.0012 * amplitude``)."""
        return self.amplitude * self.bump_rms * _evaluate_waves(self.bump_waves, p)


def surface_point(
    sdf: Callable[[torch.Tensor], torch.Tensor],
    x: float,
    y: float,
    *,
    z_front: float = 0.6,
    z_back: float = -0.1,
    steps: int = 40,
) -> torch.Tensor:
    """First surface point met by the ray from ``(x, y, z_front)`` toward ``-z``: ``[3]``.

    Marches in steps of 5 mm to the first inside sample, then bisects. ``sdf`` maps ``[1, N, 3]``
    points to ``[1, N]`` distances.
    """
    with torch.no_grad():
        zs = torch.arange(z_front, z_back, -0.005)
        pts = torch.stack([torch.full_like(zs, x), torch.full_like(zs, y), zs], dim=-1)[None]
        d = sdf(pts)[0]
        inside = (d < 0).nonzero()
        if len(inside) == 0:
            raise ConfigError(f"surface_point: no surface along z at x={x:.3f}, y={y:.3f}.")
        i = int(inside[0])
        lo, hi = float(zs[max(i - 1, 0)]), float(zs[i])  # lo outside (larger z), hi inside
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            if float(sdf(torch.tensor([[[x, y, mid]]]))[0, 0]) < 0:
                hi = mid
            else:
                lo = mid
        return torch.tensor([x, y, 0.5 * (lo + hi)])


def _turn(direction: torch.Tensor, azimuth: float) -> torch.Tensor:
    """``[B, 3]`` directions turned by ``azimuth`` radians about world y, toward world +x."""
    az = torch.tensor(azimuth, dtype=direction.dtype)
    return torch.stack(
        [
            direction[:, 0] * torch.cos(az) + direction[:, 2] * torch.sin(az),
            direction[:, 1],
            -direction[:, 0] * torch.sin(az) + direction[:, 2] * torch.cos(az),
        ],
        dim=-1,
    )


class SceneField(HeadField):
    """A ground-truth head: analytic head + symmetric detail + the configured asymmetry.

    Labels (``SCENE_LABELS``): ``face`` (skin and features, not hair/neck/fringe), ``mole`` (within
    ``1.5 * mole_radius`` of the mole), ``ghost`` (the same around the mirrored mole position).

    Args:
        geometry: the scene's analytic head (batch of 1).
        config: the asymmetry factors.
        seed: the scene's seed (drives the symmetric detail).

    """

    label_names = SCENE_LABELS

    def __init__(self, geometry: HeadGeometry, config: AsymmetryConfig, seed: int) -> None:
        super().__init__(geometry)
        self.config = config
        self.detail = SymmetricDetail(seed, config.detail_amplitude)
        self._fringe: tuple[torch.Tensor, torch.Tensor] | None = None
        side = 1.0 if config.mole_side == "left" else -1.0
        cheek_y = float(geometry.ell_centre[0, 4, 1]) - 0.02
        self.mole_position = surface_point(self.sdf, side * 0.1, cheek_y)
        self.ghost_position = self.mole_position * torch.tensor([-1.0, 1.0, 1.0])
        if config.fringe_amount > 0:
            fside = 1.0 if config.fringe_side == "left" else -1.0
            a = config.fringe_amount
            hairline = float(geometry.hairline[0, 0])
            ry = 0.02 + 0.05 * a
            cy = hairline + 0.012 - ry
            x = fside * 0.06
            surf = surface_point(self.sdf, x, cy)
            self._fringe = (
                torch.tensor([[[x, cy, float(surf[2]) + 0.004]]]),
                torch.tensor([[[0.07, ry, 0.012]]]),
            )
        ld = geometry.light_dir
        if config.light_elevation != 0.0:
            # About the world x axis: for a light in the x = 0 plane this adds to its elevation.
            el = torch.tensor(config.light_elevation, dtype=ld.dtype)
            ld = torch.stack(
                [
                    ld[:, 0],
                    ld[:, 1] * torch.cos(el) + ld[:, 2] * torch.sin(el),
                    ld[:, 2] * torch.cos(el) - ld[:, 1] * torch.sin(el),
                ],
                dim=-1,
            )
        self.light_dir = _turn(ld, config.light_azimuth)
        self.fill_dir = _turn(ld, config.fill_azimuth)
        self.light_colour = torch.tensor(config.light_colour, dtype=ld.dtype)

    def shade(self, normal: torch.Tensor) -> torch.Tensor:
        """Light at normals ``[B, N, 3]``: ``[B, N, 1]`` (the head's own light) or ``[B, N, 3]``.

        ``ambient + diffuse * (colour * max(0, n . l_key) + fill * max(0, n . l_fill))``.
        """
        if not self.config.has_extra_light:
            return super().shade(normal)
        key = (normal * self.light_dir[:, None, :]).sum(-1).clamp_min(0.0)[..., None]
        fill = (normal * self.fill_dir[:, None, :]).sum(-1).clamp_min(0.0)[..., None]
        direct = self.light_colour.to(normal) * key + self.config.fill_strength * fill
        return self.ambient[:, None, None] + self.diffuse[:, None, None] * direct

    def _fringe_sdf(self, p: torch.Tensor) -> torch.Tensor | None:
        if self._fringe is None:
            return None
        c, r = (t.to(p).expand(p.shape[0], 1, 3) for t in self._fringe)
        return ellipsoids(p, c, r)[..., 0]

    def _shape(
        self, head_sdf: torch.Tensor, p: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        d = head_sdf
        if self.config.detail_amplitude > 0:
            d = d + self.detail.bumps(p)
        d_fringe = self._fringe_sdf(p)
        if d_fringe is not None:
            return smooth_min(d, d_fringe, 0.004), d_fringe
        return d, None

    def sdf(self, p: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` distance of the head with bumps and fringe."""
        return self._shape(self.head(p, with_colour=False).sdf, p)[0]

    def _spot(self, p: torch.Tensor, centre: torch.Tensor, radius: float) -> torch.Tensor:
        return ((p - centre.to(p)).square().sum(-1) / (-2.0 * radius**2)).exp()

    def evaluate(self, p: torch.Tensor) -> FieldSample:
        """Distance, albedo and the ``face``/``mole``/``ghost`` labels at ``p [B, N, 3]``."""
        hv = self.head(p, with_colour=True)
        assert hv.albedo is not None and hv.face is not None and hv.skin is not None
        sdf, d_fringe = self._shape(hv.sdf, p)
        albedo, face = hv.albedo, hv.face
        cfg = self.config
        if cfg.detail_amplitude > 0:
            albedo = albedo * (1.0 + hv.skin * self.detail.texture(p))[..., None]
        if cfg.mole_contrast > 0 and cfg.mole_radius > 0:
            spot = self._spot(p, self.mole_position, cfg.mole_radius)
            albedo = albedo * (1.0 - min(cfg.mole_contrast, 1.0) * hv.skin * spot)[..., None]
        if d_fringe is not None:
            w = soft_step(hv.sdf - d_fringe, 0.004)
            albedo = albedo + (self.geometry.hair[:, None] - albedo) * w[..., None]
            face = face * (1.0 - w)
        albedo = albedo.clamp(0.0, 1.0)
        r = max(cfg.mole_radius, 1e-3) * 1.5
        mole = soft_step(r - (p - self.mole_position.to(p)).norm(dim=-1), 0.002)
        ghost = soft_step(r - (p - self.ghost_position.to(p)).norm(dim=-1), 0.002)
        return FieldSample(sdf=sdf, albedo=albedo, labels=torch.stack([face, mole, ghost], dim=-1))
