"""A conformance suite any :class:`~sym3d.protocols.Generator3D` plugin can run.

Use it from pytest in a plugin's test-suite::

    import pytest
    from sym3d.testing.conformance import CHECKS, run_check

    @pytest.fixture(scope="module")
    def generator():
        return MyGenerator()

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_conformance(generator, check):
        run_check(check, generator)

or all at once with :func:`check_generator` (raises :class:`ConformanceError` listing every check,
passed or failed) or :func:`conformance_report` (returns the report). Each check runs on its own:
it raises :class:`ConformanceError` (an ``AssertionError``) whose message says what the contract
requires and what the generator did, and any other exception it raises is reported as that
check's failure (``unexpected KeyError: ...``), never as an abort of the suite.

Suites for pose estimators, priors and losses: :mod:`sym3d.testing.components`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs
import torch

from sym3d.camera import CameraLabels, camera_ray_directions, look_at, ray_distance_to_z
from sym3d.errors import ConfigError, ShapeError
from sym3d.protocols import Generator3D, GeneratorInfo, RenderOutput

__all__ = [
    "ConformanceError",
    "ConformanceOptions",
    "CheckResult",
    "ConformanceReport",
    "CHECKS",
    "run_check",
    "run_checks",
    "check_generator",
    "conformance_report",
]


class ConformanceError(AssertionError):
    """A generator broke the :class:`~sym3d.protocols.Generator3D` contract."""


@attrs.frozen(kw_only=True)
class ConformanceOptions:
    """Tolerances and sizes of the suite.

    Attributes:
        batch: latents per call.
        views: views per latent in multi-view checks.
        image_tol: allowed excess beyond ``[-1, 1]`` for images (untrained weights may overshoot).
        atol: absolute tolerance when comparing two renders that must be equal.
        neural_resolution: render at this neural resolution (``None``: the generator's default).
        ray_range: ``(near, far)`` distances along each ray over which the renderer integrates
            density, for cameras 2.7 units from the origin (EG3D FFHQ: 2.25 to 3.3).
        ray_samples: samples per ray when the suite integrates ``sample_density`` itself.
        ray_stride: the density check casts a ray through every ``ray_stride``-th pixel (each way).
        agreement: least fraction of clearly hit and clearly missed pixels on which the render's
            opacity and the density integrated along the same ray must agree (opacity > 0.5).
        opacity_tol: largest mean absolute difference of those two opacities over all rays.
        depth_tol: largest median difference (world units) between the rendered depth and the
            depth where the integrated density accumulates, over pixels both call hit.
    """

    batch: int = 2
    views: int = 3
    image_tol: float = 0.05
    atol: float = 1e-4
    neural_resolution: int | None = None
    ray_range: tuple[float, float] = (2.25, 3.3)
    ray_samples: int = 128
    ray_stride: int = 2
    agreement: float = 0.95
    opacity_tol: float = 0.05
    depth_tol: float = 0.05


Check = Callable[[Generator3D, ConformanceOptions], None]


def _fail(msg: str) -> None:
    raise ConformanceError(msg)


def _device(gen: Generator3D) -> torch.device:
    try:
        return next(gen.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _cameras(b: int, v: int, device: torch.device, offset: float = 0.0) -> torch.Tensor:
    yaws = torch.linspace(-0.5, 0.5, v) + offset
    cams = look_at(yaws, 0.1 * torch.cos(3 * yaws), device=device)  # [V, 25]
    return cams[None].expand(b, v, 25).clone()


def _latents(gen: Generator3D, b: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, gen.z_dim, generator=g).to(device)
    c = _cameras(b, 1, device)[:, 0]
    with torch.no_grad():
        return gen.mapping(z, c)


def _render(
    gen: Generator3D, ws: torch.Tensor, cams: torch.Tensor, opts: ConformanceOptions, **kw: object
) -> RenderOutput:
    return gen.render(ws, cams, neural_resolution=opts.neural_resolution, **kw)  # type: ignore[arg-type]


def _close(a: torch.Tensor, b: torch.Tensor, atol: float) -> float:
    return float((a - b).abs().max())


_METHODS = (
    "mapping",
    "mean_latent",
    "latent_std",
    "render",
    "sample_density",
    "tunable_parameters",
    "noise_buffers",
    "frozen_copy",
    "parameters",
    "state_dict",
)


def check_protocol(gen: Generator3D, opts: ConformanceOptions) -> None:
    """Every method of :class:`~sym3d.protocols.Generator3D` is present and callable."""
    missing = [m for m in _METHODS if not callable(getattr(gen, m, None))]
    if missing:
        _fail(f"{type(gen).__name__} does not satisfy Generator3D; missing: {', '.join(missing)}.")


def check_attributes(gen: Generator3D, opts: ConformanceOptions) -> None:
    """Sizes are positive ints, ``name`` is a string, ``tunable_scopes`` includes "all"."""
    if not isinstance(getattr(gen, "name", None), str):
        _fail("generator.name must be a string (its registry name).")
    for attr in ("z_dim", "w_dim", "num_ws", "img_resolution", "neural_resolution"):
        val = getattr(gen, attr, None)
        if not isinstance(val, int) or val <= 0:
            _fail(f"generator.{attr} must be a positive int, got {val!r}.")
    scopes = getattr(gen, "tunable_scopes", ())
    if "all" not in scopes:
        _fail(f"generator.tunable_scopes must include 'all', got {scopes!r}.")


def check_mapping(gen: Generator3D, opts: ConformanceOptions) -> None:
    """``mapping`` returns finite ``[B, num_ws, w_dim]``; mean latent and its spread have the right shapes."""
    dev = _device(gen)
    ws = _latents(gen, opts.batch, dev)
    if tuple(ws.shape) != (opts.batch, gen.num_ws, gen.w_dim):
        _fail(
            f"mapping: expected ws of shape {[opts.batch, gen.num_ws, gen.w_dim]}, got {list(ws.shape)}."
        )
    if not torch.isfinite(ws).all():
        _fail("mapping returned NaN/inf.")
    c = _cameras(opts.batch, 1, dev)[:, 0]
    with torch.no_grad():
        mean = gen.mean_latent(c, num_samples=16, seed=1)
        std = gen.latent_std(c, num_samples=16, seed=1)
    if tuple(mean.shape) != (opts.batch, gen.num_ws, gen.w_dim):
        _fail(
            f"mean_latent: expected shape {[opts.batch, gen.num_ws, gen.w_dim]}, got {list(mean.shape)}."
        )
    if tuple(std.shape) != (opts.batch,) or not bool((std > 0).all()):
        _fail(
            f"latent_std: expected positive values of shape [{opts.batch}], got shape {list(std.shape)}."
        )


def check_render_shapes_and_ranges(gen: Generator3D, opts: ConformanceOptions) -> None:
    """Shapes ``[B, V, C, H, W]``; image in ``[-1, 1]``; opacity in ``[0, 1]``; depth positive; depth_z consistent."""
    dev = _device(gen)
    b, v = opts.batch, opts.views
    ws = _latents(gen, b, dev)
    cams = _cameras(b, v, dev)
    with torch.no_grad():
        out = _render(gen, ws, cams, opts)
    hi = gen.img_resolution
    lo = opts.neural_resolution or gen.neural_resolution
    expect = {
        "image": (b, v, 3, hi, hi),
        "image_raw": (b, v, 3, lo, lo),
        "depth": (b, v, 1, lo, lo),
        "depth_z": (b, v, 1, lo, lo),
        "opacity": (b, v, 1, lo, lo),
    }
    for key, shape in expect.items():
        got = tuple(getattr(out, key).shape)
        if got != shape:
            _fail(f"render().{key}: expected shape {list(shape)}, got {list(got)}.")
        if not torch.isfinite(getattr(out, key)).all():
            _fail(f"render().{key} has NaN/inf values.")
    for key in ("image", "image_raw"):
        x = getattr(out, key)
        if float(x.min()) < -1 - opts.image_tol or float(x.max()) > 1 + opts.image_tol:
            _fail(
                f"render().{key}: expected values in [-1, 1], got [{float(x.min()):.3f}, {float(x.max()):.3f}]."
            )
    if float(out.opacity.min()) < -1e-4 or float(out.opacity.max()) > 1 + 1e-4:
        _fail(
            f"render().opacity: expected values in [0, 1], got [{float(out.opacity.min()):.3f}, {float(out.opacity.max()):.3f}]."
        )
    if float(out.depth.min()) <= 0:
        _fail(f"render().depth: expected positive distances, got min {float(out.depth.min()):.4f}.")
    expected_z = ray_distance_to_z(out.depth, cams)
    err = _close(out.depth_z, expected_z, opts.atol)
    if err > 1e-3 * float(out.depth.max()):
        _fail(
            f"render().depth_z must be the camera z of depth (ray distance); max difference {err:.3g}."
        )


def check_multiview_equals_single(gen: Generator3D, opts: ConformanceOptions) -> None:
    """A ``V``-view call equals ``V`` single-view calls (deterministic rendering, ``generator=None``)."""
    dev = _device(gen)
    ws = _latents(gen, opts.batch, dev)
    cams = _cameras(opts.batch, opts.views, dev)
    with torch.no_grad():
        multi = _render(gen, ws, cams, opts)
        for i in range(opts.views):
            single = _render(gen, ws, cams[:, i : i + 1], opts)
            for key in ("image", "image_raw", "depth", "opacity"):
                err = _close(getattr(multi, key)[:, i : i + 1], getattr(single, key), opts.atol)
                if err > opts.atol:
                    _fail(
                        f"multi-view render differs from single-view render at view {i} in {key!r} "
                        f"(max abs diff {err:.3g} > {opts.atol:g}); render(ws, cameras[B,V,25]) must equal "
                        "V calls with one view each."
                    )


def check_determinism(gen: Generator3D, opts: ConformanceOptions) -> None:
    """The same seeded ``torch.Generator`` gives identical renders; rendering does not change state."""
    dev = _device(gen)
    ws = _latents(gen, 1, dev)
    cams = _cameras(1, 2, dev)
    state_before = {k: v.detach().clone() for k, v in gen.state_dict().items()}
    with torch.no_grad():
        a = _render(gen, ws, cams, opts, generator=torch.Generator().manual_seed(7))
        b = _render(gen, ws, cams, opts, generator=torch.Generator().manual_seed(7))
    for key in ("image", "depth"):
        err = _close(getattr(a, key), getattr(b, key), 0.0)
        if err > 0:
            _fail(f"two renders with the same seed differ in {key!r} (max abs diff {err:.3g}).")
    for k, v in gen.state_dict().items():
        if (
            k not in state_before
            or v.shape != state_before[k].shape
            or not torch.equal(v, state_before[k])
        ):
            _fail(f"render() changed the module state ({k!r}); rendering must be pure.")


def check_gradients(gen: Generator3D, opts: ConformanceOptions) -> None:
    """Gradients reach ``ws`` and the tunable parameters of scope "all"."""
    dev = _device(gen)
    ws = _latents(gen, 1, dev).clone().requires_grad_(True)
    cams = _cameras(1, 2, dev)
    params = gen.tunable_parameters("all")
    if not params:
        _fail("tunable_parameters('all') returned no parameters.")
    flags = {n: p.requires_grad for n, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
        p.grad = None
    try:
        out = _render(gen, ws, cams, opts)
        loss = out.image.square().mean() + out.depth.mean() + out.image_raw.mean()
        loss.backward()
        if (
            ws.grad is None
            or not torch.isfinite(ws.grad).all()
            or float(ws.grad.abs().sum()) == 0.0
        ):
            _fail("no (finite, non-zero) gradient reached ws through render().")
        got = [n for n, p in params.items() if p.grad is not None and float(p.grad.abs().sum()) > 0]
        if not got:
            _fail(
                "no tunable parameter of scope 'all' received a non-zero gradient through render()."
            )
    finally:
        for n, p in params.items():
            p.grad = None
            p.requires_grad_(flags[n])


def check_density(gen: Generator3D, opts: ConformanceOptions) -> None:
    """``sample_density`` returns finite, non-negative ``[B, N]`` densities."""
    dev = _device(gen)
    ws = _latents(gen, opts.batch, dev)
    inside = torch.zeros(opts.batch, 1, 3, device=dev)
    outside = torch.full((opts.batch, 1, 3), 0.9, device=dev)
    with torch.no_grad():
        d = gen.sample_density(ws, torch.cat([inside, outside], dim=1))
    if tuple(d.shape) != (opts.batch, 2):
        _fail(
            f"sample_density: expected shape [{opts.batch}, 2] for 2 points, got {list(d.shape)}."
        )
    if not torch.isfinite(d).all() or float(d.min()) < 0:
        _fail("sample_density must return finite, non-negative densities.")


def check_scopes(gen: Generator3D, opts: ConformanceOptions) -> None:
    """Every declared scope returns parameters of the module."""
    own = {id(p) for p in gen.parameters()}
    for scope in gen.tunable_scopes:
        params = gen.tunable_parameters(scope)
        if not params:
            _fail(f"tunable_parameters({scope!r}) is empty.")
        if any(id(p) not in own for p in params.values()):
            _fail(
                f"tunable_parameters({scope!r}) returned tensors that are not parameters of the generator."
            )


def check_unknown_scope(gen: Generator3D, opts: ConformanceOptions) -> None:
    """An unknown scope raises :class:`~sym3d.errors.ConfigError` (the CLI turns it into one line)."""
    try:
        gen.tunable_parameters("no-such-scope")
    except ConfigError:
        return
    except Exception as exc:
        _fail(
            f"tunable_parameters('no-such-scope') raised {type(exc).__name__}: {exc}; it must raise "
            "sym3d.errors.ConfigError naming the scopes it knows."
        )
    _fail("tunable_parameters('no-such-scope') returned; it must raise sym3d.errors.ConfigError.")


def check_bad_camera_shape(gen: Generator3D, opts: ConformanceOptions) -> None:
    """A camera tensor of the wrong shape raises :class:`~sym3d.errors.ShapeError`."""
    dev = _device(gen)
    ws = _latents(gen, 1, dev)
    bad = torch.zeros(1, 24, device=dev)
    try:
        with torch.no_grad():
            gen.render(ws, bad)
    except ShapeError:
        return
    except Exception as exc:
        _fail(
            f"render() with cameras of shape [1, 24] raised {type(exc).__name__}, expected sym3d.errors.ShapeError."
        )
    _fail(
        "render() accepted cameras of shape [1, 24]; expected a ShapeError (cameras are [B, V, 25])."
    )


def check_frozen_copy(gen: Generator3D, opts: ConformanceOptions) -> None:
    """``frozen_copy()`` is frozen and unaffected by tuning the original."""
    dev = _device(gen)
    ws = _latents(gen, 1, dev)
    cams = _cameras(1, 1, dev)
    frozen = gen.frozen_copy()
    if any(p.requires_grad for p in frozen.parameters()):
        _fail("frozen_copy() has parameters with requires_grad=True.")
    with torch.no_grad():
        before = _render(frozen, ws, cams, opts).image.clone()
    params = gen.tunable_parameters("all")
    saved = {n: p.detach().clone() for n, p in params.items()}
    try:
        with torch.no_grad():
            for p in params.values():
                p.add_(0.05 * torch.randn_like(p) + 0.05)
            after_frozen = _render(frozen, ws, cams, opts).image
            after_tuned = _render(gen, ws, cams, opts).image
        if _close(after_frozen, before, 0) > opts.atol:
            _fail(
                "changing the original generator's tunable parameters changed the frozen copy's renders."
            )
        if _close(after_tuned, before, 0) <= 1e-7:
            _fail(
                "perturbing tunable_parameters('all') did not change the renders; they must affect the output."
            )
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])


def check_info(gen: Generator3D, opts: ConformanceOptions) -> None:
    """An optional ``info`` is a :class:`GeneratorInfo` whose settings the engine accepts."""
    from sym3d.config import InversionConfig, apply_overrides
    from sym3d.errors import Sym3DError

    info = getattr(gen, "info", None)
    if info is None:
        return
    if not isinstance(info, GeneratorInfo):
        _fail(f"generator.info must be a sym3d.protocols.GeneratorInfo, got {type(info).__name__}.")
    try:
        apply_overrides(InversionConfig(), list(info.recommended_overrides))
    except Sym3DError as exc:
        _fail(f"info.recommended_overrides are not valid settings: {exc}")
    if tuple(info.image_range) != (-1.0, 1.0):
        _fail(f"info.image_range must be (-1, 1) for the engine, got {info.image_range}.")
    if info.ray_range is not None and not 0 < info.ray_range[0] < info.ray_range[1]:
        _fail(f"info.ray_range must be (near, far) with 0 < near < far, got {info.ray_range}.")


def check_image_range(gen: Generator3D, opts: ConformanceOptions) -> None:
    """Images use the model range ``[-1, 1]``, not ``[0, 1]`` or ``[0, 255]``, and are not constant.

    A head has dark parts (eyes, hair, shadows), so an image without a single negative value
    was produced in ``[0, 1]``: the losses would compare it against targets in the wrong range.
    """
    dev = _device(gen)
    ws = _latents(gen, opts.batch, dev)
    cams = _cameras(opts.batch, 2, dev)
    with torch.no_grad():
        out = _render(gen, ws, cams, opts)
    for key in ("image", "image_raw"):
        x = getattr(out, key).float()
        lo, hi = float(x.min()), float(x.max())
        if hi > 2.0:
            _fail(
                f"render().{key} has values up to {hi:.1f}: generators return [-1, 1], not [0, 255]."
            )
        if lo >= 0.0:
            _fail(
                f"render().{key} has no negative value (range [{lo:.3f}, {hi:.3f}]): it looks like "
                "[0, 1]; generators return [-1, 1] (sym3d.image.to_model_range converts)."
            )
        if float(x.std()) < 1e-3:
            _fail(f"render().{key} is constant ({lo:.3f}); the generator renders nothing.")


def _density_along_rays(
    gen: Generator3D, ws: torch.Tensor, cams: torch.Tensor, res: int, opts: ConformanceOptions
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integrate ``sample_density`` along EG3D rays through every ``ray_stride``-th pixel.

    Args:
        ws: ``[1, num_ws, w_dim]``; cams: ``[1, 1, 25]``; res: side of the render's depth map.

    Returns:
        ``(index, opacity, depth)``: flat pixel indices ``[K]`` into the ``res x res`` map, the
        accumulated opacity ``[K]`` in ``[0, 1]`` and the expected ray distance ``[K]``.
    """
    rows = torch.arange(opts.ray_stride // 2, res, opts.ray_stride, device=ws.device)
    index = (rows[:, None] * res + rows[None, :]).reshape(-1)
    dirs = camera_ray_directions(cams, res, res)[0, 0, index]  # [K, 3], unit length
    origin = CameraLabels(cams).position[0, 0]  # [3]
    near, far = opts.ray_range
    edges = torch.linspace(near, far, opts.ray_samples + 1, device=ws.device, dtype=ws.dtype)
    t = 0.5 * (edges[1:] + edges[:-1])  # [N]
    pts = origin + dirs[:, None, :] * t[None, :, None]  # [K, N, 3]
    with torch.no_grad():
        sigma = gen.sample_density(ws, pts.reshape(1, -1, 3)).reshape(len(index), -1).float()
    if not torch.isfinite(sigma).all() or float(sigma.min()) < 0:
        _fail("sample_density returned NaN/inf or negative values along the rays of the render.")
    alpha = 1.0 - torch.exp(-sigma * (far - near) / opts.ray_samples)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1]], 1), 1)
    weights = alpha * trans
    acc = weights.sum(1)
    depth = (weights * t.float()).sum(1) / acc.clamp_min(1e-6)
    return index, acc, depth


def _mismatch(render_opacity: torch.Tensor, density_opacity: torch.Tensor) -> tuple[float, float]:
    """Mean absolute opacity difference, and the disagreement on clearly hit or missed pixels.

    The second number is the fraction of pixels with render opacity > 0.9 or < 0.1 on which the
    two disagree about opacity > 0.5 (0 when there are fewer than 8 such pixels).
    """
    mad = float((render_opacity - density_opacity).abs().mean())
    clear = (render_opacity > 0.9) | (render_opacity < 0.1)
    if int(clear.sum()) < 8:
        return mad, 0.0
    differ = (render_opacity > 0.5) != (density_opacity > 0.5)
    return mad, float(differ[clear].float().mean())


def check_camera_convention(gen: Generator3D, opts: ConformanceOptions) -> None:
    """The render and ``sample_density`` agree along the EG3D camera rays.

    Along the ray of pixel ``(i, j)`` (OpenCV axes: x right, y down, z forward; pixel centre
    ``u = (j + 0.5) / W``, ``v = (i + 0.5) / H``; see :func:`sym3d.camera.camera_ray_directions`),
    the density integrated over :attr:`ConformanceOptions.ray_range` must accumulate the opacity
    the render reports for that pixel, at the depth the render reports. Checked from a frontal
    camera and from a camera that sees the head off-centre (turned, raised, aimed beside it), so
    an image flipped both ways (OpenGL-style axes) fails, and so does a density the renderer does
    not use (the mirror prior, depth warping and the mesh all rely on both).
    """
    dev = _device(gen)
    ws = _latents(gen, 1, dev)
    views = {
        "frontal": look_at(0.0, 0.0, device=dev),
        "off-centre": look_at(0.35, 0.2, pivot=(0.15, 0.15, 0.2), device=dev),
    }
    for label, cam in views.items():
        cams = cam.reshape(1, 1, 25)
        with torch.no_grad():
            out = _render(gen, ws, cams, opts)
        res = out.opacity.shape[-1]
        index, acc, depth = _density_along_rays(gen, ws, cams, res, opts)
        op_map = out.opacity[0, 0, 0].float()
        rend_op = op_map.reshape(-1)[index]
        mad, differ = _mismatch(rend_op, acc)
        if mad > opts.opacity_tol or differ > 1.0 - opts.agreement:
            hint = "sample_density may not be the density the renderer integrates"
            if float(acc.max()) < 0.05:
                hint = "sample_density accumulates no opacity along any ray of the render"
            flips = (
                ("flipped both ways (OpenGL-style axes)", (0, 1)),
                ("flipped upside down", (0,)),
                ("mirrored left-right", (1,)),
            )
            for name, dims in flips:
                f_mad, f_differ = _mismatch(op_map.flip(dims).reshape(-1)[index], acc)
                if f_mad <= opts.opacity_tol and f_differ <= 1.0 - opts.agreement:
                    hint = f"the rendered image is {name} relative to the EG3D camera convention"
                    break
            _fail(
                f"{label} view: the render's opacity and the opacity of sample_density integrated "
                f"along the same EG3D rays differ by {mad:.3f} on average (allowed "
                f"{opts.opacity_tol:g}) and disagree on {100 * differ:.0f}% of the clearly hit or "
                f"missed pixels: {hint}. Rays: OpenCV camera axes (x right, y down, z forward), "
                "pixel row 0 at the top."
            )
        both = (rend_op > 0.5) & (acc > 0.5)
        if int(both.sum()):
            rend_depth = out.depth[0, 0, 0].reshape(-1)[index].float()
            err = float((rend_depth[both] - depth[both]).abs().median())
            if err > opts.depth_tol:
                _fail(
                    f"{label} view: the rendered depth and the depth where sample_density "
                    f"accumulates along the same rays differ by {err:.3f} world units (median; allowed "
                    f"{opts.depth_tol:g}); depth must be the expected distance along the unit ray."
                )


CHECKS: tuple[Check, ...] = (
    check_protocol,
    check_attributes,
    check_info,
    check_mapping,
    check_render_shapes_and_ranges,
    check_image_range,
    check_multiview_equals_single,
    check_determinism,
    check_gradients,
    check_density,
    check_camera_convention,
    check_scopes,
    check_unknown_scope,
    check_bad_camera_shape,
    check_frozen_copy,
)
"""All checks, in a sensible order (cheap and structural first)."""


@attrs.frozen
class CheckResult:
    """The outcome of one check: its name, whether it passed and, if not, why."""

    name: str
    passed: bool
    reason: str = ""


@attrs.frozen
class ConformanceReport:
    """Every check of a suite with its outcome, in the order run."""

    subject: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        """The checks that failed."""
        return [r for r in self.results if not r.passed]

    def __str__(self) -> str:
        n_ok = len(self.results) - len(self.failures)
        lines = [f"{self.subject}: {n_ok}/{len(self.results)} checks passed"]
        for r in self.results:
            lines.append(f"  - {r.name}: " + ("passed" if r.passed else f"FAILED: {r.reason}"))
        return "\n".join(lines)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConformanceError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


def run_checks(
    subject: object, checks: Iterable[Callable[[Any, Any], None]], options: Any
) -> ConformanceReport:
    """Run each check on its own; a :class:`ConformanceError` or any other exception fails it."""
    results = []
    for check in checks:
        try:
            check(subject, options)
        except Exception as exc:
            results.append(CheckResult(check.__name__, False, _reason(exc)))
        else:
            results.append(CheckResult(check.__name__, True))
    return ConformanceReport(type(subject).__name__, tuple(results))


def run_check(check: Check, gen: Generator3D, options: ConformanceOptions | None = None) -> None:
    """Run one check; raise :class:`ConformanceError` naming the check with the reason.

    An unexpected exception inside the check becomes that check's ``ConformanceError``.
    """
    try:
        check(gen, options or ConformanceOptions())
    except ConformanceError:
        raise
    except Exception as exc:
        raise ConformanceError(f"{check.__name__}: {_reason(exc)}") from exc


def conformance_report(
    gen: Generator3D, options: ConformanceOptions | None = None, checks: Iterable[Check] = CHECKS
) -> ConformanceReport:
    """Run every check on ``gen`` and return the report (each check passed or failed + reason)."""
    return run_checks(gen, checks, options or ConformanceOptions())


def check_generator(gen: Generator3D, options: ConformanceOptions | None = None) -> None:
    """Run every check; raise one :class:`ConformanceError` listing each check and its outcome."""
    report = conformance_report(gen, options)
    if not report.passed:
        raise ConformanceError(f"generator failed the conformance suite:\n{report}")
