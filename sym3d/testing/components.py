"""Conformance suites for loss, prior and pose-estimator plugins.

They test :class:`~sym3d.protocols.Loss`, :class:`~sym3d.protocols.Prior` and
:class:`~sym3d.protocols.PoseEstimator` implementations.

Each suite is a tuple of checks ``check(subject, options)`` run by :func:`check_loss`,
:func:`check_prior` and :func:`check_pose_estimator`: every check runs on its own, an unexpected
exception is that check's failure, and one :class:`~sym3d.testing.conformance.ConformanceError`
lists every check with its outcome. From pytest, one test per check::

    @pytest.mark.parametrize("check", LOSS_CHECKS, ids=lambda c: c.__name__)
    def test_my_loss(check):
        run_check(check, MyLoss(), LossOptions())

Priors are exercised on the tiny generator of :mod:`sym3d.testing` (stage-1 and stage-2
contexts built by :func:`prior_context`); pose estimators on a photo you pass (a face) and on a
blank image (no face).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch

from sym3d.camera import CameraLabels, look_at
from sym3d.errors import FaceNotFoundError
from sym3d.protocols import (
    FaceObservation,
    Generator3D,
    PoseEstimator,
    Prior,
    PriorContext,
    PriorViews,
)
from sym3d.testing.conformance import ConformanceError, ConformanceReport, run_checks

__all__ = [
    "LossOptions",
    "PriorOptions",
    "PoseOptions",
    "LOSS_CHECKS",
    "PRIOR_CHECKS",
    "POSE_CHECKS",
    "check_loss",
    "check_prior",
    "check_pose_estimator",
    "prior_context",
]


def _fail(msg: str) -> None:
    raise ConformanceError(msg)


def _raise_report(kind: str, report: ConformanceReport) -> None:
    if not report.passed:
        raise ConformanceError(f"{kind} failed the conformance suite:\n{report}")


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    return bool(((a - b).abs() <= atol + rtol * b.abs()).all())


# ---------------------------------------------------------------------------------------- losses
@attrs.frozen(kw_only=True)
class LossOptions:
    """Sizes and tolerances of the loss suite.

    Attributes:
        batch, size: the test images are ``[batch, 3, size, size]`` in ``[0, 1]``.
        rtol: relative tolerance of reductions and masks.
        local: the loss is pixel-wise or windowed (at most ``size // 4`` pixels wide), so that
            changing pixels a quarter of the image away from a mask cannot change it. Set False
            for deep-feature losses (LPIPS) whose receptive field spans the image.
    """

    batch: int = 2
    size: int = 32
    rtol: float = 1e-4
    local: bool = True


def _images(opts: LossOptions, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(opts.batch, 3, opts.size // 4, opts.size // 4, generator=g)
    x = torch.nn.functional.interpolate(base, size=opts.size, mode="bilinear", align_corners=False)
    y = (x + 0.25 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


def check_loss_reductions(loss: Callable[..., torch.Tensor], opts: LossOptions) -> None:
    """``reduction="none"`` gives ``[B]`` finite values >= 0; ``"mean"``/``"sum"`` reduce them."""
    x, y = _images(opts)
    with torch.no_grad():
        per = loss(x, y, reduction="none")
        mean = loss(x, y, reduction="mean")
        total = loss(x, y, reduction="sum")
    if tuple(per.shape) != (opts.batch,):
        _fail(f"reduction='none' must return shape [{opts.batch}], got {list(per.shape)}.")
    if not torch.isfinite(per).all() or float(per.min()) < 0:
        _fail(f"reduction='none' must return finite values >= 0, got {per.tolist()}.")
    if mean.dim() != 0 or total.dim() != 0:
        _fail(
            "reduction='mean'/'sum' must return scalars, "
            f"got {list(mean.shape)}, {list(total.shape)}."
        )
    if not _close(mean, per.mean(), opts.rtol, 1e-7) or not _close(
        total, per.sum(), opts.rtol, 1e-7
    ):
        _fail(
            f"mean/sum ({float(mean):.6g}/{float(total):.6g}) are not the mean/sum of the "
            "per-sample "
            f"values {per.tolist()}."
        )


def check_loss_identity(loss: Callable[..., torch.Tensor], opts: LossOptions) -> None:
    """``loss(x, x)`` is (close to) 0 and smaller than ``loss(x, y)`` for a different ``y``."""
    x, y = _images(opts)
    with torch.no_grad():
        same = float(loss(x, x.clone()))
        diff = float(loss(x, y))
    if not diff > 0:
        _fail(f"loss of two different images is {diff:.3g}; it must be > 0.")
    if abs(same) > 1e-3 * diff + 1e-6:
        _fail(f"loss(x, x) = {same:.3g}, expected 0 (loss(x, y) = {diff:.3g}).")


def check_loss_gradient(loss: Callable[..., torch.Tensor], opts: LossOptions) -> None:
    """The loss is differentiable in ``pred``: a finite, non-zero gradient."""
    x, y = _images(opts)
    pred = x.clone().requires_grad_(True)
    loss(pred, y).backward()
    if (
        pred.grad is None
        or not torch.isfinite(pred.grad).all()
        or float(pred.grad.abs().sum()) == 0
    ):
        _fail("no finite, non-zero gradient reached pred; the loss must be differentiable.")


def check_loss_mask(loss: Callable[..., torch.Tensor], opts: LossOptions) -> None:
    """A mask of ones changes nothing; pixels outside a mask do not count (``local`` losses)."""
    x, y = _images(opts)
    b, _, s, _ = x.shape
    with torch.no_grad():
        plain = loss(x, y, reduction="none")
        ones = loss(x, y, mask=torch.ones(b, 1, s, s), reduction="none")
        if not _close(ones, plain, opts.rtol, 1e-7):
            _fail(f"a mask of ones changed the loss from {plain.tolist()} to {ones.tolist()}.")
        if not opts.local:
            return
        mask = torch.zeros(b, 1, s, s)
        mask[..., : s // 2] = 1.0
        x2 = x.clone()
        x2[..., 3 * s // 4 :] = 1.0 - x2[..., 3 * s // 4 :]
        a = loss(x, y, mask=mask, reduction="none")
        c = loss(x2, y, mask=mask, reduction="none")
    if not _close(c, a, opts.rtol, 1e-7):
        _fail(
            f"changing pixels outside the mask changed the masked loss from {a.tolist()} to "
            f"{c.tolist()}; masked-out pixels must not count."
        )


LOSS_CHECKS = (check_loss_reductions, check_loss_identity, check_loss_gradient, check_loss_mask)
"""The loss suite."""


def check_loss(loss: Callable[..., torch.Tensor], options: LossOptions | None = None) -> None:
    """Run the loss suite; raise :class:`ConformanceError` listing every check if one fails."""
    _raise_report("loss", run_checks(loss, LOSS_CHECKS, options or LossOptions()))


# ---------------------------------------------------------------------------------------- priors
@attrs.frozen(kw_only=True)
class PriorOptions:
    """Contexts of the prior suite.

    Attributes:
        yaw: input camera yaw (radians); not frontal, so that symmetry priors are active.
        seed: seed of the context's ``rng`` and of the test latents.
        make_generator: builds the generator the contexts use (default: the tiny generator with
            16 samples per ray).
    """

    yaw: float = 0.35
    seed: int = 0
    make_generator: Callable[[], Generator3D] | None = None


_REGIONS: Mapping[str, tuple[float, float, float, float]] = {
    "left_eye": (0.55, 0.35, 0.75, 0.5),
    "right_eye": (0.25, 0.35, 0.45, 0.5),
    "nose": (0.4, 0.45, 0.6, 0.65),
    "mouth": (0.35, 0.65, 0.65, 0.8),
}


def prior_context(stage: str, opts: PriorOptions | None = None) -> PriorContext:
    """A step context for ``stage`` (``"latent"`` or ``"generator"``) on a small generator.

    Stage 1: ``ws`` requires grad. Stage 2: the generator's tunable parameters require grad and
    were moved away from ``reference`` (its frozen copy). ``render`` is the input view's render.
    """
    from sym3d.image import from_model_range
    from sym3d.testing.tiny import TinyGenerator3D

    opts = opts or PriorOptions()
    gen = opts.make_generator() if opts.make_generator else TinyGenerator3D(num_samples=16)
    camera = look_at(opts.yaw, 0.05)[None]
    g = torch.Generator().manual_seed(opts.seed)
    with torch.no_grad():
        ws = gen.mapping(torch.randn(1, gen.z_dim, generator=g), camera)
        other = gen.mapping(torch.randn(1, gen.z_dim, generator=g), camera)
        target = from_model_range(gen.render(other, camera[:, None]).image[:, 0]).clamp(0, 1)
    reference = gen.frozen_copy()
    params = gen.tunable_parameters("all")
    if stage == "generator":
        with torch.no_grad():
            for p in params.values():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        for p in params.values():
            p.requires_grad_(True)
    else:
        ws = ws.clone().requires_grad_(True)
        for p in params.values():
            p.requires_grad_(False)
    s = target.shape[-1]
    obs = FaceObservation(
        image=target,
        camera=camera,
        face_mask=torch.ones(1, 1, s, s),
        foreground_mask=torch.ones(1, 1, s, s),
        regions=dict(_REGIONS),
    )
    return PriorContext(
        stage=stage,
        step=0,
        num_steps=4,
        generator=gen,
        reference=reference,
        ws=ws,  # type: ignore[arg-type]
        target=target,
        camera=camera,
        observation=obs,
        render=None,
        rng=torch.Generator().manual_seed(opts.seed),
    )


def _prior_step(
    prior: Prior, ctx: PriorContext
) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """One engine step: ask for views, render the input view and them together, call the prior."""
    cams = prior.views(ctx)
    if cams is not None:
        if cams.dim() != 2 or cams.shape[-1] != 25 or cams.shape[0] < 1:
            _fail(f"views() must return cameras of shape [V, 25] or None, got {list(cams.shape)}.")
        if not torch.isfinite(cams).all():
            _fail("views() returned cameras with NaN/inf values.")
        rot = CameraLabels(cams).rotation
        eye = torch.eye(3).expand_as(rot)
        if float((rot.transpose(-1, -2) @ rot - eye).abs().max()) > 1e-3:
            _fail("views() returned cameras whose rotation is not orthonormal (see sym3d.camera).")
    all_cams = ctx.camera[:, None] if cams is None else torch.cat([ctx.camera, cams])[None]
    out = ctx.generator.render(ctx.ws, all_cams)
    ctx = attrs.evolve(ctx, render=out.views(0, 1))
    views = (
        None if cams is None else PriorViews(cameras=cams[None], render=out.views(1, 1 + len(cams)))
    )
    return cams, prior(ctx, views)


def check_prior_attributes(prior: Prior, opts: PriorOptions) -> None:
    """``name`` is a non-empty string, ``stages`` names latent/generator, ``every`` >= 1."""
    name = getattr(prior, "name", None)
    if not isinstance(name, str) or not name:
        _fail(f"prior.name must be a non-empty string, got {name!r}.")
    stages = tuple(getattr(prior, "stages", ()))
    if not stages or not set(stages) <= {"latent", "generator"}:
        _fail(f"prior.stages must name 'latent' and/or 'generator', got {stages!r}.")
    every = getattr(prior, "every", None)
    if not isinstance(every, int) or every < 1:
        _fail(f"prior.every must be an int >= 1, got {every!r}.")
    for method in ("views", "__call__"):
        if not callable(getattr(prior, method, None)):
            _fail(f"prior has no {method}() method.")


def _check_terms(prior: Prior, terms: Any, stage: str) -> None:
    if not isinstance(terms, Mapping):
        _fail(
            f"stage {stage!r}: __call__ must return a dict of scalar tensors, "
            f"got {type(terms).__name__}."
        )
    for key, value in terms.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor) or value.dim() != 0:
            _fail(f"stage {stage!r}: term {key!r} must be a scalar tensor keyed by a string.")
        if not torch.isfinite(value):
            _fail(f"stage {stage!r}: term {key!r} is not finite ({float(value)}).")


def check_prior_terms(prior: Prior, opts: PriorOptions) -> None:
    """In each of its stages: valid view cameras, finite scalar terms, gradients where optimised.

    Terms not starting with ``"_"`` must send a finite gradient to ``ws`` (stage ``"latent"``)
    or to the tunable parameters (stage ``"generator"``); ``"_"`` terms are diagnostics.
    """
    for stage in prior.stages:
        ctx = prior_context(stage, opts)
        _, terms = _prior_step(prior, ctx)
        _check_terms(prior, terms, stage)
        optimised = [v for k, v in terms.items() if not k.startswith("_")]
        if not optimised:
            continue
        total = torch.stack(optimised).sum()
        if not total.requires_grad:
            _fail(
                f"stage {stage!r}: the terms {sorted(terms)} carry no gradient; "
                "they cannot steer anything."
            )
        leaves = (
            [ctx.ws]
            if stage == "latent"
            else list(ctx.generator.tunable_parameters("all").values())
        )
        grads = torch.autograd.grad(total, leaves, allow_unused=True)
        if any(g is not None and not torch.isfinite(g).all() for g in grads):
            _fail(f"stage {stage!r}: the gradient of the terms has NaN/inf values.")
        if all(g is None or float(g.abs().sum()) == 0 for g in grads):
            what = "ws" if stage == "latent" else "the generator's tunable parameters"
            _fail(f"stage {stage!r}: the terms send no gradient to {what}.")


def check_prior_reproducible(prior: Prior, opts: PriorOptions) -> None:
    """Two steps from equal contexts (same seeded ``rng``) give the same cameras and terms."""
    for stage in prior.stages:
        runs = [_prior_step(prior, prior_context(stage, opts)) for _ in range(2)]
        (c1, t1), (c2, t2) = runs
        if (c1 is None) != (c2 is None) or (c1 is not None and not torch.equal(c1, c2)):
            _fail(
                f"stage {stage!r}: views() differ between equal contexts; "
                "draw randomness from ctx.rng."
            )
        if set(t1) != set(t2) or any(
            not _close(t1[k].detach(), t2[k].detach(), 1e-5, 1e-7) for k in t1
        ):
            _fail(
                f"stage {stage!r}: terms differ between equal contexts; "
                "draw randomness from ctx.rng."
            )


PRIOR_CHECKS = (check_prior_attributes, check_prior_terms, check_prior_reproducible)
"""The prior suite."""


def check_prior(prior: Prior, options: PriorOptions | None = None) -> None:
    """Run the prior suite; raise :class:`ConformanceError` listing every check if one fails."""
    _raise_report("prior", run_checks(prior, PRIOR_CHECKS, options or PriorOptions()))


# ---------------------------------------------------------------------------------- pose estimators
@attrs.frozen(kw_only=True)
class PoseOptions:
    """Inputs of the pose-estimator suite.

    Attributes:
        photo: ``[1, 3, H, W]`` in ``[0, 1]`` showing one face.
        blank: an image without a face (default: uniform grey, 256 x 256).
    """

    photo: torch.Tensor
    blank: torch.Tensor | None = None


def _in_unit(name: str, x: torch.Tensor) -> None:
    if not torch.isfinite(x).all() or float(x.min()) < -1e-5 or float(x.max()) > 1 + 1e-5:
        _fail(
            f"{name} must be finite and in [0, 1], "
            f"got [{float(x.min()):.3g}, {float(x.max()):.3g}]."
        )


def check_pose_observation(est: PoseEstimator, opts: PoseOptions) -> None:
    """A face photo gives a valid :class:`~sym3d.protocols.FaceObservation`; input unchanged."""
    if not isinstance(getattr(est, "name", None), str):
        _fail("pose estimator .name must be a string (its registry name).")
    photo = opts.photo.clone()
    obs = est(photo)
    if not torch.equal(photo, opts.photo):
        _fail("the estimator changed its input image in place.")
    if not isinstance(obs, FaceObservation):
        _fail(f"must return a sym3d.protocols.FaceObservation, got {type(obs).__name__}.")
    img = obs.image
    if img.dim() != 4 or img.shape[:2] != (1, 3) or img.shape[2] != img.shape[3]:
        _fail(f"observation.image must be [1, 3, S, S], got {list(img.shape)}.")
    _in_unit("observation.image", img)
    s = img.shape[-1]
    if tuple(obs.camera.shape) != (1, 25) or not torch.isfinite(obs.camera).all():
        _fail(f"observation.camera must be a finite [1, 25] label, got {list(obs.camera.shape)}.")
    labels = CameraLabels(obs.camera)
    rot = labels.rotation[0]
    if float((rot.T @ rot - torch.eye(3)).abs().max()) > 1e-3 or float(torch.det(rot)) < 0:
        _fail("observation.camera's rotation is not a proper rotation (OpenCV axes, det +1).")
    if float(labels.intrinsics[0, 0, 0]) <= 0 or float(labels.intrinsics[0, 1, 1]) <= 0:
        _fail("observation.camera's focal lengths must be positive (normalised by image size).")
    for name in ("face_mask", "foreground_mask"):
        m = getattr(obs, name)
        if m is not None:
            if tuple(m.shape) != (1, 1, s, s):
                _fail(f"observation.{name} must be [1, 1, {s}, {s}], got {list(m.shape)}.")
            _in_unit(f"observation.{name}", m)
    if obs.landmarks is not None:
        lm = obs.landmarks
        if lm.dim() != 3 or lm.shape[0] != 1 or lm.shape[-1] != 2:
            _fail(
                f"observation.landmarks must be [1, N, 2] pixel coordinates, got {list(lm.shape)}."
            )
    for key, box in obs.regions.items():
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            _fail(
                f"observation.regions[{key!r}] = {box} is not a box (x0 < x1, y0 < y1) in [0, 1]."
            )
    if not 0.0 <= float(obs.confidence) <= 1.0:
        _fail(f"observation.confidence must be in [0, 1], got {obs.confidence}.")


def check_pose_no_face(est: PoseEstimator, opts: PoseOptions) -> None:
    """An image without a face raises :class:`~sym3d.errors.FaceNotFoundError` (one CLI line)."""
    blank = opts.blank if opts.blank is not None else torch.full((1, 3, 256, 256), 0.5)
    try:
        est(blank)
    except FaceNotFoundError:
        return
    except Exception as exc:
        _fail(
            f"an image without a face raised {type(exc).__name__}: {exc}; "
            "expected FaceNotFoundError."
        )
    _fail(
        "an image without a face returned an observation; expected sym3d.errors.FaceNotFoundError."
    )


POSE_CHECKS = (check_pose_observation, check_pose_no_face)
"""The pose-estimator suite."""


def check_pose_estimator(est: PoseEstimator, options: PoseOptions) -> None:
    """Run the pose suite; raise :class:`ConformanceError` listing every check if one fails."""
    _raise_report("pose estimator", run_checks(est, POSE_CHECKS, options))
