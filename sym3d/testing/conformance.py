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

or all at once with :func:`check_generator` (raises :class:`ConformanceError` listing failures).
Each check raises :class:`ConformanceError` (an ``AssertionError``) whose message says what the
contract requires and what the generator did.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch

from sym3d.camera import look_at, ray_distance_to_z
from sym3d.errors import ConfigError, ShapeError
from sym3d.protocols import Generator3D, GeneratorInfo, RenderOutput

__all__ = ["ConformanceError", "ConformanceOptions", "CHECKS", "run_check", "check_generator"]


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
    """

    batch: int = 2
    views: int = 3
    image_tol: float = 0.05
    atol: float = 1e-4
    neural_resolution: int | None = None


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


def _render(gen: Generator3D, ws: torch.Tensor, cams: torch.Tensor, opts: ConformanceOptions, **kw: object) -> RenderOutput:
    return gen.render(ws, cams, neural_resolution=opts.neural_resolution, **kw)  # type: ignore[arg-type]


def _close(a: torch.Tensor, b: torch.Tensor, atol: float) -> float:
    return float((a - b).abs().max())


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
        _fail(f"mapping: expected ws of shape {[opts.batch, gen.num_ws, gen.w_dim]}, got {list(ws.shape)}.")
    if not torch.isfinite(ws).all():
        _fail("mapping returned NaN/inf.")
    c = _cameras(opts.batch, 1, dev)[:, 0]
    with torch.no_grad():
        mean = gen.mean_latent(c, num_samples=16, seed=1)
        std = gen.latent_std(c, num_samples=16, seed=1)
    if tuple(mean.shape) != (opts.batch, gen.num_ws, gen.w_dim):
        _fail(f"mean_latent: expected shape {[opts.batch, gen.num_ws, gen.w_dim]}, got {list(mean.shape)}.")
    if tuple(std.shape) != (opts.batch,) or not bool((std > 0).all()):
        _fail(f"latent_std: expected positive values of shape [{opts.batch}], got shape {list(std.shape)}.")


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
            _fail(f"render().{key}: expected values in [-1, 1], got [{float(x.min()):.3f}, {float(x.max()):.3f}].")
    if float(out.opacity.min()) < -1e-4 or float(out.opacity.max()) > 1 + 1e-4:
        _fail(f"render().opacity: expected values in [0, 1], got [{float(out.opacity.min()):.3f}, {float(out.opacity.max()):.3f}].")
    if float(out.depth.min()) <= 0:
        _fail(f"render().depth: expected positive distances, got min {float(out.depth.min()):.4f}.")
    expected_z = ray_distance_to_z(out.depth, cams)
    err = _close(out.depth_z, expected_z, opts.atol)
    if err > 1e-3 * float(out.depth.max()):
        _fail(f"render().depth_z must be the camera z of depth (ray distance); max difference {err:.3g}.")


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
        if k not in state_before or v.shape != state_before[k].shape or not torch.equal(v, state_before[k]):
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
        if ws.grad is None or not torch.isfinite(ws.grad).all() or float(ws.grad.abs().sum()) == 0.0:
            _fail("no (finite, non-zero) gradient reached ws through render().")
        got = [n for n, p in params.items() if p.grad is not None and float(p.grad.abs().sum()) > 0]
        if not got:
            _fail("no tunable parameter of scope 'all' received a non-zero gradient through render().")
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
        _fail(f"sample_density: expected shape [{opts.batch}, 2] for 2 points, got {list(d.shape)}.")
    if not torch.isfinite(d).all() or float(d.min()) < 0:
        _fail("sample_density must return finite, non-negative densities.")


def check_scopes(gen: Generator3D, opts: ConformanceOptions) -> None:
    """Every declared scope returns parameters of the module; an unknown scope raises ConfigError."""
    own = {id(p) for p in gen.parameters()}
    for scope in gen.tunable_scopes:
        params = gen.tunable_parameters(scope)
        if not params:
            _fail(f"tunable_parameters({scope!r}) is empty.")
        if any(id(p) not in own for p in params.values()):
            _fail(f"tunable_parameters({scope!r}) returned tensors that are not parameters of the generator.")
    try:
        gen.tunable_parameters("no-such-scope")
    except ConfigError:
        pass
    else:
        _fail("tunable_parameters('no-such-scope') must raise sym3d.errors.ConfigError.")


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
        _fail(f"render() with cameras of shape [1, 24] raised {type(exc).__name__}, expected sym3d.errors.ShapeError.")
    _fail("render() accepted cameras of shape [1, 24]; expected a ShapeError (cameras are [B, V, 25]).")


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
            _fail("changing the original generator's tunable parameters changed the frozen copy's renders.")
        if _close(after_tuned, before, 0) <= 1e-7:
            _fail("perturbing tunable_parameters('all') did not change the renders; they must affect the output.")
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


CHECKS: tuple[Check, ...] = (
    check_attributes,
    check_info,
    check_mapping,
    check_render_shapes_and_ranges,
    check_multiview_equals_single,
    check_determinism,
    check_gradients,
    check_density,
    check_scopes,
    check_bad_camera_shape,
    check_frozen_copy,
)
"""All checks, in a sensible order (cheap and structural first)."""


def run_check(check: Check, gen: Generator3D, options: ConformanceOptions | None = None) -> None:
    """Run one check (raises :class:`ConformanceError` with the reason)."""
    check(gen, options or ConformanceOptions())


def check_generator(gen: Generator3D, options: ConformanceOptions | None = None) -> None:
    """Run every check; raise one :class:`ConformanceError` listing all failures."""
    opts = options or ConformanceOptions()
    if not isinstance(gen, Generator3D):
        missing = [
            m
            for m in ("mapping", "mean_latent", "latent_std", "render", "sample_density", "tunable_parameters", "noise_buffers", "frozen_copy")
            if not hasattr(gen, m)
        ]
        raise ConformanceError(f"{type(gen).__name__} does not satisfy Generator3D; missing: {', '.join(missing) or 'attributes'}.")
    failures = []
    for check in CHECKS:
        try:
            check(gen, opts)
        except ConformanceError as exc:
            failures.append(f"{check.__name__}: {exc}")
    if failures:
        raise ConformanceError("generator failed the conformance suite:\n  - " + "\n  - ".join(failures))
