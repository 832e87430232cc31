"""The analytic SymHeads head: attributes -> primitives -> signed distance and albedo fields.

World frame (EG3D FFHQ): +y up, the face looks toward +z, the head sits inside the unit box.
Every primitive is either centred on ``x = 0`` or one of a mirrored pair, and every colour term
depends on ``x`` only through even functions, so the head is symmetric in ``x`` by
construction. The subject's left is world ``+x``.

Fields (all world units):

* signed distance ``sdf``: a smooth union (log-sum-exp, radius ``0.012``) of ellipsoids (cranium,
  mid-face, jaw, chin, cheeks, nose tip, lips, ears, brow ridges) and capsules (nose bridge,
  neck); eye sockets carved by a smooth difference; eyeballs added back; a hair cap (the
  cranium inflated by the hair thickness, cut at a tilted hairline plane) united on top.
* albedo in ``[0, 1]``: skin (tone, warmth, cheek blush, low-frequency symmetric texture), lips,
  brows, eye whites / iris / pupil and hair, blended by soft region weights.
* ``face`` weight: 1 on skin and facial features, 0 on hair and neck (the face-parsing mask).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs
import torch

from sym3d_extras.synthetic.sdf import smooth_max, smooth_min, soft_step

__all__ = ["HeadGeometry", "HeadValues", "head_geometry", "evaluate_head", "FEATURES"]

_UNION_K = 0.012
_REGION_W = 0.004

FEATURES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth")
"""Facial features whose 3D boxes :attr:`HeadGeometry.feature_boxes` exposes (subject's left = +x)."""

# Ellipsoid slots in HeadGeometry.ell_* (order matters for the region weights below).
_E_CRANIUM, _E_MIDFACE, _E_JAW, _E_CHIN, _E_CHEEK_L, _E_CHEEK_R = 0, 1, 2, 3, 4, 5
_E_NOSETIP, _E_UPPER_LIP, _E_LOWER_LIP, _E_EAR_L, _E_EAR_R, _E_BROW_L, _E_BROW_R = (
    6,
    7,
    8,
    9,
    10,
    11,
    12,
)


@attrs.frozen(kw_only=True)
class HeadGeometry:
    """Primitives and colours of a batch of ``B`` heads (all tensors differentiable in ``ws``).

    Attributes:
        ell_centre, ell_radii: ``[B, 13, 3]`` union ellipsoids.
        cap_a, cap_b: ``[B, 2, 3]`` capsule end points (nose bridge, neck); ``cap_r`` ``[B, 2]``.
        socket_centre: ``[B, 2, 3]`` eye-socket sphere centres (left, right); ``socket_r`` ``[B]``.
        eye_centre: ``[B, 2, 3]`` eyeball centres; ``eye_r`` ``[B]``.
        hair_centre, hair_radii: ``[B, 1, 3]`` hair-cap ellipsoid; ``hairline`` ``[B, 3]`` =
            (height at the front, front z, slope) of the hairline cut.
        brow_centre, brow_radii: ``[B, 2, 3]`` brow colour regions; ``brow_tilt`` ``[B]``.
        skin, hair, iris, lips, brow: ``[B, 3]`` albedo colours in ``[0, 1]``.
        blush: ``[B]`` cheek redness; ``texture``: ``[B, 8]`` low-frequency texture coefficients
            (six symmetric, two antisymmetric).
        side_tint: ``[B]`` left-right albedo gradient (asymmetric; 0 for symmetric heads).
        light_dir: ``[B, 3]`` unit direction toward the light (in the ``x = 0`` plane unless the
            asymmetric azimuth turns it).
        ambient, diffuse: ``[B]`` shading terms (``ambient + diffuse <= 1``).
        quad: ``[B, 8, 34]`` quadric coefficients of all ellipsoid-like primitives (derived).

    """

    ell_centre: torch.Tensor
    ell_radii: torch.Tensor
    cap_a: torch.Tensor
    cap_b: torch.Tensor
    cap_r: torch.Tensor
    socket_centre: torch.Tensor
    socket_r: torch.Tensor
    eye_centre: torch.Tensor
    eye_r: torch.Tensor
    hair_centre: torch.Tensor
    hair_radii: torch.Tensor
    hairline: torch.Tensor
    brow_centre: torch.Tensor
    brow_radii: torch.Tensor
    brow_tilt: torch.Tensor
    skin: torch.Tensor
    hair: torch.Tensor
    iris: torch.Tensor
    lips: torch.Tensor
    brow: torch.Tensor
    blush: torch.Tensor
    texture: torch.Tensor
    side_tint: torch.Tensor
    light_dir: torch.Tensor
    ambient: torch.Tensor
    diffuse: torch.Tensor
    quad: torch.Tensor = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "quad", _quadrics(self))

    def feature_boxes(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """3D boxes of the facial features: ``name -> (centre [B, 3], half_extent [B, 3])``.

        Left/right are the subject's (left eye at ``+x``). Used to project region boxes.
        """
        er = self.eye_r[:, None]
        eye_half = torch.cat([er * 1.6, er * 1.3, er], dim=-1)
        ul, ll = self.ell_centre[:, _E_UPPER_LIP], self.ell_centre[:, _E_LOWER_LIP]
        mouth_c = 0.5 * (ul + ll)
        mouth_half = torch.stack(
            [
                self.ell_radii[:, _E_UPPER_LIP, 0] * 1.15,
                (ul[:, 1] - ll[:, 1]).abs() * 0.5 + self.ell_radii[:, _E_LOWER_LIP, 1] * 1.6,
                self.ell_radii[:, _E_UPPER_LIP, 2],
            ],
            dim=-1,
        )
        top, tip = self.cap_a[:, 0], self.ell_centre[:, _E_NOSETIP]
        nose_c = 0.5 * (top + tip)
        nose_half = torch.stack(
            [
                self.ell_radii[:, _E_NOSETIP, 0] * 1.3,
                (top[:, 1] - tip[:, 1]).abs() * 0.5 + self.ell_radii[:, _E_NOSETIP, 1],
                (tip[:, 2] - top[:, 2]).abs() * 0.5 + self.ell_radii[:, _E_NOSETIP, 2],
            ],
            dim=-1,
        )
        return {
            "left_eye": (self.eye_centre[:, 0], eye_half),
            "right_eye": (self.eye_centre[:, 1], eye_half),
            "nose": (nose_c, nose_half),
            "mouth": (mouth_c, mouth_half),
        }


@attrs.frozen(kw_only=True)
class HeadValues:
    """Field values at ``N`` points of ``B`` heads.

    Attributes:
        sdf: ``[B, N]`` signed distance (world units, negative inside).
        albedo: ``[B, N, 3]`` in ``[0, 1]`` or ``None`` when colour was not asked for.
        face: ``[B, N]`` face-parsing weight in ``[0, 1]`` (skin and features, not hair/neck).
        skin: ``[B, N]`` weight of bare skin in ``[0, 1]`` (where skin texture and marks apply).
        body_sdf: ``[B, N]`` signed distance of the head without the hair cap.

    """

    sdf: torch.Tensor
    albedo: torch.Tensor | None = None
    face: torch.Tensor | None = None
    skin: torch.Tensor | None = None
    body_sdf: torch.Tensor | None = None


def _pair(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mirrored pair of centres ``[B, 2, 3]``: ``(+x, y, z)`` (subject's left) and ``(-x, y, z)``."""
    left = torch.stack([x, y, z], dim=-1)
    right = torch.stack([-x, y, z], dim=-1)
    return torch.stack([left, right], dim=1)


def _vec(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return torch.stack([x, y, z], dim=-1)


def _mix(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return a + (b - a) * s[..., None]


def head_geometry(t: Mapping[str, torch.Tensor]) -> HeadGeometry:
    """Build the primitives of ``B`` heads from normalised attributes.

    Args:
        t: ``"group.attribute" -> [B]`` values in ``(-1, 1)`` (see
            :meth:`sym3d_extras.synthetic.layout.LatentLayout.decode`).

    Returns:
        The head geometry, colours and light, differentiable in ``t``.

    """
    one = torch.ones_like(t["skull.width"])
    zero = torch.zeros_like(one)

    def v(name: str, base: float, span: float) -> torch.Tensor:
        return base + span * t[name]

    # Skull and face masses.
    sk_rx, sk_ry, sk_rz = (
        v("skull.width", 0.195, 0.018),
        v("skull.height", 0.25, 0.02),
        v("skull.depth", 0.265, 0.02),
    )
    sk_cy, sk_cz = v("skull.crown_y", 0.10, 0.02), v("skull.back_z", 0.0, 0.02)
    jaw_w, jaw_h, jaw_d = (
        v("jaw.width", 0.15, 0.018),
        v("jaw.height", 0.19, 0.018),
        v("jaw.depth", 0.19, 0.015),
    )
    chin = t["jaw.chin"]
    cheek_r, cheek_y = v("jaw.cheek_size", 0.062, 0.01), v("jaw.cheek_height", -0.035, 0.015)
    # Eyes.
    eye_x, eye_y, eye_r = (
        v("eyes.spacing", 0.083, 0.008),
        v("eyes.height", 0.05, 0.012),
        v("eyes.size", 0.031, 0.004),
    )
    eye_depth = v("eyes.depth", 0.0, 0.006)
    # Nose.
    nose_len, nose_proj = v("nose.length", 0.09, 0.014), v("nose.projection", 0.36, 0.016)
    nose_w, bridge = v("nose.width", 0.032, 0.007), v("nose.bridge", 0.018, 0.005)
    # Mouth.
    mouth_y, mouth_w = v("mouth.height", -0.115, 0.012), v("mouth.width", 0.043, 0.007)
    upper, lower, protr = (
        v("mouth.upper_lip", 0.009, 0.003),
        v("mouth.lower_lip", 0.011, 0.003),
        v("mouth.protrusion", 0.0, 0.006),
    )
    # Brows.
    brow_h, ridge, brow_th = (
        v("brows.height", 0.052, 0.01),
        v("brows.ridge", 0.016, 0.005),
        v("brows.thickness", 0.011, 0.003),
    )
    brow_tilt, brow_dark = 0.25 * t["brows.tilt"], t["brows.darkness"]
    # Ears.
    ear_size, ear_out = v("ears.size", 0.058, 0.01), v("ears.protrusion", 0.012, 0.008)
    ear_y, ear_th = v("ears.height", 0.03, 0.015), v("ears.thickness", 0.022, 0.004)
    # Hair.
    hair_th, hairline_y = v("hair.thickness", 0.03, 0.014), v("hair.hairline", 0.2, 0.025)
    hair_back, temple, curve = (
        v("hair.back_volume", 0.04, 0.025),
        v("hair.temple", 0.0, 0.015),
        v("hair.curve", 0.75, 0.15),
    )

    face_front = 0.115 + jaw_d  # z of the mid-face front at y = 0
    midface = (_vec(zero, 0.0 * one, face_front - 0.17), _vec(jaw_w, 0.17 * one, 0.17 * one))
    centres = [
        _vec(zero, sk_cy, sk_cz),  # cranium
        midface[0],
        _vec(zero, -0.065 * one, face_front - 0.2),  # jaw
        _vec(zero, -0.215 - 0.012 * chin, face_front - 0.075 + 0.01 * chin),  # chin
    ]
    radii = [
        _vec(sk_rx, sk_ry, sk_rz),
        midface[1],
        _vec(jaw_w * 1.02, jaw_h, 0.2 * one),
        _vec(0.055 * one, 0.048 * one, 0.06 * one),
    ]
    # Asymmetric attributes (0 for a symmetric head; see layout.ASYMMETRIC).
    cheek_asym = 0.15 * t["jaw.cheek_asym"]
    nose_shift = 0.006 * t["nose.shift"]
    mouth_shift = 0.008 * t["mouth.shift"]
    brow_asym = 0.008 * t["brows.height_asym"]
    cheeks = _pair(0.098 * one, cheek_y, face_front - 0.105)
    tip = _vec(nose_shift, eye_y - nose_len, nose_proj - 0.015)
    lip_z = face_front - 0.012 + protr
    ears = _pair(sk_rx + ear_out + 0.008, ear_y, -0.005 * one)
    brows = _pair(
        eye_x + 0.004, eye_y + brow_h - 0.01, face_front - 0.045 + 0.006 * t["brows.ridge"]
    )
    brow_dy = torch.stack(
        [brow_asym, -brow_asym], dim=1
    )  # [B, 2]: left up, right down (or the reverse)
    brows = brows + torch.stack(
        [zero[:, None].expand(-1, 2), brow_dy, zero[:, None].expand(-1, 2)], dim=-1
    )
    ell_c = torch.stack(
        centres
        + [
            cheeks[:, 0],
            cheeks[:, 1],
            tip,
            _vec(mouth_shift, mouth_y + 0.008, lip_z),
            _vec(mouth_shift, mouth_y - 0.01, lip_z - 0.003),
        ]
        + [ears[:, 0], ears[:, 1], brows[:, 0], brows[:, 1]],
        dim=1,
    )
    cheek_l = cheek_r * (1.0 + cheek_asym)
    cheek_rr = cheek_r * (1.0 - cheek_asym)
    ell_r = torch.stack(
        radii
        + [_vec(cheek_l, cheek_l * 0.85, cheek_l), _vec(cheek_rr, cheek_rr * 0.85, cheek_rr)]
        + [_vec(nose_w * 1.15, 0.024 * one, 0.028 * one)]
        + [_vec(mouth_w, upper, upper * 1.3), _vec(mouth_w * 0.92, lower, lower * 1.3)]
        + [_vec(ear_th, ear_size, ear_size * 0.62)] * 2
        + [_vec(0.045 * one, ridge, ridge * 1.1)] * 2,
        dim=1,
    )
    # Capsules: nose bridge (from between the eyes to above the tip), neck.
    cap_a = torch.stack(
        [
            _vec(zero, eye_y + 0.005, face_front - 0.035 + bridge),
            _vec(zero, -0.14 * one, -0.035 * one),
        ],
        dim=1,
    )
    cap_b = torch.stack(
        [
            _vec(zero, eye_y - nose_len + 0.02, nose_proj - 0.03),
            _vec(zero, -0.75 * one, -0.05 * one),
        ],
        dim=1,
    )
    cap_r = torch.stack([nose_w * 0.55, 0.105 * one], dim=1)
    # Eyes: sockets carved into the face, eyeballs inside.
    socket_c = _pair(eye_x, eye_y, face_front - 0.005 + eye_depth)
    eye_c = _pair(eye_x, eye_y, face_front - 0.052 - eye_depth)
    # Hair cap and hairline (hair where hairline_y - y - slope * (front_z - z) < 0).
    hair_c = _vec(zero, sk_cy + 0.2 * hair_th, sk_cz - 0.5 * hair_back)
    hair_r = _vec(sk_rx + hair_th + temple, sk_ry + hair_th, sk_rz + hair_th + 0.5 * hair_back)
    hairline = torch.stack([hairline_y, face_front * one, curve], dim=-1)
    brow_c = _pair(eye_x + 0.005, eye_y + brow_h, face_front + 0.0 * one)
    brow_c = brow_c + torch.stack(
        [zero[:, None].expand(-1, 2), brow_dy, zero[:, None].expand(-1, 2)], dim=-1
    )
    brow_r = torch.stack([_vec(0.043 * one, brow_th, 0.12 * one)] * 2, dim=1)

    # Colours (albedo in [0, 1]).
    tone = 0.8 + 0.2 * t["skin_colour.tone"]
    warm = 0.04 * t["skin_colour.warmth"]
    skin = torch.stack([0.80 * tone + warm, 0.60 * tone, 0.50 * tone - warm], dim=-1)
    light_hair = (1.0 - t["hair_colour.darkness"]) * 0.5
    hair = _mix(
        torch.tensor([0.07, 0.055, 0.045]).to(one).expand(one.shape[0], 3),
        torch.tensor([0.55, 0.42, 0.26]).to(one).expand(one.shape[0], 3),
        light_hair,
    )
    hair = hair + 0.05 * t["hair_colour.warmth"][:, None] * torch.tensor([1.0, 0.3, -0.6]).to(one)
    hair = _mix(hair, 0.55 * torch.ones_like(hair), 0.25 * (1.0 + t["hair_colour.grey"]))
    blue = 0.5 * (1.0 + t["eye_colour.hue"])
    iris = _mix(
        torch.tensor([0.36, 0.21, 0.10]).to(one).expand(one.shape[0], 3),
        torch.tensor([0.28, 0.45, 0.60]).to(one).expand(one.shape[0], 3),
        blue,
    )
    iris = iris * (0.8 - 0.2 * t["eye_colour.darkness"])[:, None]
    iris = _mix(
        iris, iris.mean(-1, keepdim=True).expand_as(iris), 0.3 * (1.0 - t["eye_colour.saturation"])
    )
    lips = (
        torch.stack(
            [
                0.72 + 0.08 * t["lip_colour.redness"],
                0.36 - 0.04 * t["lip_colour.redness"],
                0.37 * one,
            ],
            dim=-1,
        )
        * (0.85 - 0.12 * t["lip_colour.darkness"])[:, None]
    )
    lips = _mix(lips, skin, 0.3 * (1.0 - t["lip_colour.saturation"]))
    brow = hair * (0.75 - 0.2 * brow_dark)[:, None]
    blush = 0.05 * (1.0 + t["skin_colour.blush"])
    texture = 0.06 * torch.stack(
        [t[f"texture.c{i}"] for i in range(6)] + [t["texture.a0"], t["texture.a1"]], dim=-1
    )
    side_tint = 0.08 * t["skin_colour.side_tint"]
    # Light: in the symmetry plane x = 0 unless the (asymmetric) azimuth turns it sideways.
    elev = v("light.elevation", 0.25, 0.35)
    azim = 0.6 * t["light.azimuth"]
    light_dir = torch.stack(
        [torch.cos(elev) * torch.sin(azim), torch.sin(elev), torch.cos(elev) * torch.cos(azim)],
        dim=-1,
    )
    ambient = v("light.ambient", 0.36, 0.08)
    diffuse = v("light.strength", 0.55, 0.06)
    return HeadGeometry(
        ell_centre=ell_c,
        ell_radii=ell_r,
        cap_a=cap_a,
        cap_b=cap_b,
        cap_r=cap_r,
        socket_centre=socket_c,
        socket_r=eye_r * 1.32,
        eye_centre=eye_c,
        eye_r=eye_r,
        hair_centre=hair_c[:, None],
        hair_radii=hair_r[:, None],
        hairline=hairline,
        brow_centre=brow_c,
        brow_radii=brow_r,
        brow_tilt=brow_tilt,
        skin=skin,
        hair=hair,
        iris=iris,
        lips=lips,
        brow=brow,
        blush=blush,
        texture=texture,
        side_tint=side_tint,
        light_dir=light_dir,
        ambient=ambient,
        diffuse=diffuse,
    )


def _low_freq_texture(p: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` low-frequency skin modulation ``sum_k coeff_k phi_k(p)``.

    The first six basis functions are even in x (symmetric), the last two odd (asymmetric).
    """
    x, y, z = p.unbind(-1)
    basis = torch.stack(
        [
            torch.cos(math.pi * x / 0.2),
            torch.cos(math.pi * y / 0.15),
            torch.cos(math.pi * x / 0.3) * torch.cos(math.pi * (y - 0.05) / 0.3),
            y / 0.2,
            (z - 0.2) / 0.15,
            torch.cos(2 * math.pi * x / 0.18) * torch.cos(2 * math.pi * y / 0.2),
            torch.sin(math.pi * x / 0.2),
            torch.sin(math.pi * x / 0.25) * torch.cos(math.pi * (y + 0.05) / 0.25),
        ],
        dim=-1,
    )
    return (basis * coeff[:, None, :]).sum(-1)


def _quadric_columns(
    centre: torch.Tensor, axx: torch.Tensor, ayy: torch.Tensor, azz: torch.Tensor, axy: torch.Tensor
) -> torch.Tensor:
    """Coefficients ``[..., 8]`` of ``q(p) = a_xx X^2 + a_yy Y^2 + a_zz Z^2 + a_xy X Y`` (``X = x - c_x``...).

    Ordered against the monomials ``(x^2, y^2, z^2, xy, x, y, z, 1)`` so that a batch of quadrics
    is evaluated at ``N`` points by one matrix product.
    """
    cx, cy, cz = centre.unbind(-1)
    return torch.stack(
        [
            axx,
            ayy,
            azz,
            axy,
            -2 * axx * cx - axy * cy,
            -2 * ayy * cy - axy * cx,
            -2 * azz * cz,
            axx * cx**2 + ayy * cy**2 + azz * cz**2 + axy * cx * cy,
        ],
        dim=-1,
    )


def _quadrics(g: HeadGeometry) -> torch.Tensor:
    """``[B, 8, K]`` quadric coefficients of every ellipsoid-like primitive (see :data:`_Q`)."""
    ell_c = torch.cat([g.ell_centre, g.hair_centre], dim=1)  # [B, 14, 3]
    ell_r = torch.cat([g.ell_radii, g.hair_radii], dim=1)
    inv2 = ell_r.pow(-2)
    zeros = torch.zeros_like(inv2[..., 0])
    k0 = _quadric_columns(ell_c, inv2[..., 0], inv2[..., 1], inv2[..., 2], zeros)
    inv4 = inv2 * inv2
    k1 = _quadric_columns(ell_c, inv4[..., 0], inv4[..., 1], inv4[..., 2], zeros)
    sph_c = torch.cat([g.socket_centre, g.eye_centre], dim=1)  # [B, 4, 3]
    sph_r = torch.stack([g.socket_r, g.socket_r, g.eye_r, g.eye_r], dim=1)
    s_inv = sph_r.pow(-2)
    sph = _quadric_columns(sph_c, s_inv, s_inv, s_inv, torch.zeros_like(s_inv))
    # Tilted brow regions: Y' = Y - m X with m = +tilt (left, +x) / -tilt (right).
    br = g.brow_radii.pow(-2)
    m = g.brow_tilt[:, None] * torch.tensor([1.0, -1.0]).to(br)
    brow = _quadric_columns(
        g.brow_centre, br[..., 0] + br[..., 1] * m**2, br[..., 1], br[..., 2], -2 * m * br[..., 1]
    )
    return torch.cat([k0, k1, sph, brow], dim=1).transpose(1, 2)


def _capsules(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``[B, 2, N]`` capsule distances for points ``p [B, 3, N]`` (coordinate-major layout)."""
    ab = (b - a)[..., None]  # [B,2,3,1]
    inv = 1.0 / (ab * ab).sum(-2).clamp_min(1e-12)  # [B,2,1]
    rel = p[:, None] - a[..., None]  # [B,2,3,N]
    h = ((rel * ab).sum(-2) * inv).clamp(0.0, 1.0)  # [B,2,N]
    d2 = (rel - h[:, :, None] * ab).square().sum(-2)
    return d2.clamp_min(1e-12).sqrt() - r[..., None]


def evaluate_head(p: torch.Tensor, g: HeadGeometry, *, with_colour: bool = True) -> HeadValues:
    """Evaluate the head fields at points.

    All ellipsoid-like primitives (13 union ellipsoids, the hair cap, eye sockets, eyeballs and
    the brow colour regions) are evaluated together as quadrics: one ``[K, 8] x [8, N]`` matrix
    product with the monomials ``(x^2, y^2, z^2, xy, x, y, z, 1)``. Internally the layout is
    primitive-major (``[B, K, N]``) so that every elementwise pass runs over contiguous memory.

    Args:
        p: ``[B, N, 3]`` world points.
        g: geometry of the ``B`` heads.
        with_colour: also compute albedo and region weights (otherwise only ``sdf``).

    Returns:
        :class:`HeadValues` with ``[B, N]`` distances (and ``[B, N, 3]`` albedo).

    """
    pt = p.transpose(1, 2)  # [B,3,N]
    x, y, z = pt.unbind(1)
    mono = torch.stack([x * x, y * y, z * z, x * y, x, y, z, torch.ones_like(x)], dim=1)  # [B,8,N]
    q = (g.quad.transpose(1, 2) @ mono).clamp_min(1e-10)  # [B,K,N]
    k0sq = q[:, :14]
    d_ell = (k0sq - k0sq.sqrt()) * q[:, 14:28].rsqrt()  # [B,14,N]; slot 13 is the hair cap
    d_cap = _capsules(pt, g.cap_a, g.cap_b, g.cap_r)  # [B,2,N]
    d_all = torch.cat([d_ell[:, :13], d_cap], dim=1)
    d_union = -_UNION_K * torch.logsumexp(d_all * (-1.0 / _UNION_K), dim=1)
    radii = torch.stack([g.socket_r, g.socket_r, g.eye_r, g.eye_r], -1)[..., None]
    sph = (q[:, 28:32].sqrt() - 1.0) * radii
    d_socket = torch.minimum(sph[:, 0], sph[:, 1])
    d_eye = torch.minimum(sph[:, 2], sph[:, 3])
    d_carved = smooth_max(d_union, -d_socket, 0.006)
    d_body = smooth_min(d_carved, d_eye, 0.003)
    hl = g.hairline[..., None]  # [B,3,1]
    above = hl[:, 0] - y - hl[:, 2] * (hl[:, 1] - z)  # < 0 where hair may grow
    d_hair = smooth_max(d_ell[:, 13], above, 0.01)
    sdf = smooth_min(d_body, d_hair, 0.006)
    if not with_colour:
        return HeadValues(sdf=sdf)

    w_hair = soft_step(d_body - d_hair, _REGION_W)
    w_eye = soft_step(d_carved - d_eye, _REGION_W)
    d_lips = torch.minimum(d_ell[:, _E_UPPER_LIP], d_ell[:, _E_LOWER_LIP])
    others = torch.minimum(
        d_ell[:, :_E_UPPER_LIP].amin(1), torch.minimum(d_ell[:, _E_EAR_L:13].amin(1), d_cap.amin(1))
    )
    w_lip = soft_step(others - d_lips - 0.001, 0.003)
    w_neck = soft_step(torch.minimum(d_ell[:, :13].amin(1), d_cap[:, 0]) - d_cap[:, 1], 0.01)
    w_brow = soft_step(1.0 - q[:, 32:34].sqrt(), 0.12).amax(1)
    fz = (z - g.eye_centre[:, 0, 2:3]) / g.eye_r[:, None]  # both eyes share their depth
    w_iris = soft_step(fz - 0.8, 0.025)
    w_pupil = soft_step(fz - 0.955, 0.01)

    cheek = torch.exp(-(((x.abs() - 0.1) ** 2) + (y + 0.04) ** 2) / 0.0025)
    skin = (
        g.skin[:, None, :]
        * (1.0 + _low_freq_texture(p, g.texture) + g.side_tint[:, None] * x / 0.2)[..., None]
    )
    skin = skin + (g.blush[:, None] * cheek)[..., None] * torch.tensor([1.0, -0.5, -0.5]).to(p)
    white = torch.tensor([0.93, 0.91, 0.88]).to(p)
    eye_col = white + (g.iris[:, None] - white) * w_iris[..., None]
    eye_col = eye_col + (0.04 - eye_col) * w_pupil[..., None]
    albedo = _mix(skin, g.lips[:, None], w_lip)
    albedo = _mix(albedo, g.brow[:, None], w_brow * (1.0 - w_eye))
    albedo = _mix(albedo, eye_col, w_eye)
    albedo = _mix(albedo, g.hair[:, None], w_hair)
    albedo = albedo.clamp(0.0, 1.0)
    face = (1.0 - w_hair) * (1.0 - w_neck)
    skin_w = (1.0 - w_hair) * (1.0 - w_eye) * (1.0 - w_lip) * (1.0 - w_brow)
    return HeadValues(sdf=sdf, albedo=albedo, face=face, skin=skin_w, body_sdf=d_body)
