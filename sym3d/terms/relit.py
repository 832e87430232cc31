"""The photo relit for the mirror pseudo label, shared by ``mirror_view`` and ``mirror_regions``.

With ``relight = true`` a mirror term shows the flipped photo relit to the photo's own light
(:func:`sym3d.lighting.relight_mirror`) instead of the plain flipped photo. The light is fitted
from this step's input-view depth (detached) inside the face mask (else the rendered opacity), at
most once per step and only on the steps the term runs; no extra render is needed.

With ``max_correction > 0`` the term leaves the mirror out while the *mean* correction of the
stage's fits so far exceeds it, and the fit is not snapped to a symmetric light. One step's fit
is noisy, and at large yaws the visible mirror pairs lie near the midline, where the odd part of
the light vanishes: there the pairs look symmetric although the light over the face is not.
Snapped and judged step by step, the gate flipped between leaving the mirror out and using the
plain flipped photo under a side light (``docs/benchmarks.md``, "The gate at 60 degrees").

With ``max_render_asymmetry > 0`` the mirror is also left out when the generator's own render
is asymmetric: :func:`render_asymmetry` compares the render at the mirrored camera with the
flipped render at the photo's camera, for a latent fitted to the photo alone for a few steps
(:func:`probe_latent`; the stage's own latent would not do: the mirror pulls it toward symmetry).
Each stage probes once, before its first mirror view. A latent fitted to a side-lit photo
renders the unseen side under that light, which the mirror pairs of a far-turned photo can no
longer measure (``docs/benchmarks.md``, "The generator's own light").
"""

from __future__ import annotations

import logging

import torch

from sym3d.camera import mirror_camera
from sym3d.generator_base import latent_stats
from sym3d.image import from_model_range, mirror_image
from sym3d.lighting import relight_mirror
from sym3d.protocols import Generator3D, PriorContext, PriorViews, RenderOutput
from sym3d.resize import resize
from sym3d.terms.losses import Losses
from sym3d.warp import source_mask

__all__ = ["MirrorRelighter", "probe_latent", "render_asymmetry", "render_shading_ratio"]

_LOG = logging.getLogger("sym3d.terms")


def render_asymmetry(
    generator: Generator3D,
    ws: torch.Tensor,
    camera: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> float:
    """How far the generator's render departs from its own mirror image, over the mirrored face.

    Renders ``camera`` and ``mirror_camera(camera)`` in one call (no gradient) and returns the
    mean ``|R_m / flip(R) - 1|`` of the grey images inside ``flip(mask)``: 0 for a mirror-symmetric
    head under a symmetric light (the render at the mirrored camera is then the flipped render),
    about the relighting's ``|ratio - 1|`` when the latent carries a side light.

    Args:
        generator: renders ``[1, 2, 25]`` cameras for ``ws``.
        ws: ``[1, num_ws, w_dim]`` latent (detached here).
        camera: ``[1, 25]`` the photo's camera.
        mask: ``[1, 1, H, W]`` in ``[0, 1]``: the face in the photo's view (flipped here);
            ``None``: the render's own opacity at the photo's camera.

    Returns:
        the mean absolute ratio deviation (``>= 0``; 0 when the mask is empty).
    """
    return _asymmetry(_mirror_pair(generator, ws, camera), mask)


def _mirror_pair(generator: Generator3D, ws: torch.Tensor, camera: torch.Tensor) -> RenderOutput:
    """``ws`` rendered at ``camera`` and at its mirror, in one call, without gradient."""
    with torch.no_grad():
        return generator.render(ws.detach(), torch.cat([camera, mirror_camera(camera)])[None])


def _asymmetry(pair: RenderOutput, mask: torch.Tensor | None) -> float:
    """:func:`render_asymmetry` of a :func:`_mirror_pair` render."""
    grey = from_model_range(pair.image[0]).clamp(0.0, 1.0).mean(1, keepdim=True)
    grey = grey.clamp_min(0.02)  # dark pixels hold no ratio
    ratio = grey[1:] / mirror_image(grey[:1])
    face = pair.opacity[0, :1] if mask is None else mask
    m = resize(mirror_image(face), tuple(grey.shape[-2:])).clamp(0.0, 1.0)
    return float(((ratio - 1.0).abs() * m).sum() / m.sum().clamp_min(1e-6))


def render_shading_ratio(pair: RenderOutput) -> torch.Tensor:
    """The light's ratio between a latent's two sides, as its own render shows it.

    ``R_m / flip(R)`` per colour channel: the render at the mirrored camera over the flipped
    render at the photo's camera (:func:`_mirror_pair`), clamped to ``[0.5, 2]`` (dark pixels,
    below 0.02, hold no ratio). For a symmetric head it is the shading of the latent's light on
    the unseen side over that on the seen side, so ``flip(x) * ratio`` shows the mirrored photo
    under the photo's light (the generator's estimate of it).

    Returns:
        ``[1, 3, H, W]`` in the mirrored view's orientation, at the render's resolution.
    """
    rgb = from_model_range(pair.image[0]).clamp(0.02, 1.0)
    return (rgb[1:] / mirror_image(rgb[:1])).clamp(0.5, 2.0)


def probe_latent(
    generator: Generator3D,
    camera: torch.Tensor,
    target: torch.Tensor,
    losses: Losses,
    *,
    steps: int,
    lr: float,
) -> torch.Tensor:
    """The generator's mean latent fitted to the photo alone: ``steps`` Adam steps, input view.

    Starts at the mean latent conditioned on ``camera`` (where stage 1 starts); the loss is the
    perceptual distance plus the ``[0, 1]`` MSE of the render at ``camera`` against ``target``, no
    prior and no mirror. Gradients reach only the probe's latent (never the generator's
    parameters, even where they are being tuned).

    Args:
        generator: the generator to probe.
        camera: ``[1, 25]`` the photo's camera.
        target: ``[1, 3, H, W]`` the photo in ``[0, 1]``.
        losses: the run's image losses.
        steps: Adam steps.
        lr: Adam learning rate.

    Returns:
        ``[1, num_ws, w_dim]`` the fitted latent (detached).
    """
    with torch.no_grad():
        start = latent_stats(generator, camera)[0]
    w = start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    cameras = camera[:, None]
    for _ in range(steps):
        pred = from_model_range(generator.render(w, cameras).image[:, 0])
        loss = (losses.perceptual(pred, target) + losses.mse(pred, target)).sum()
        (w.grad,) = torch.autograd.grad(loss, [w])
        opt.step()
    return w.detach()


class MirrorRelighter:
    """Caches one relit photo per step (same inputs) and records why it fell back, once per reason.

    Attributes:
        name: the owning term's name (for the log line).
        reasons: the distinct fallback reasons met so far, in order (also logged once each).
    """

    def __init__(
        self, name: str, max_correction: float = 0.0, max_render_asymmetry: float = 0.0
    ) -> None:
        self.name = name
        self.max_correction = max_correction
        """The gate's threshold (0: no gate, and fits are snapped to a symmetric light)."""
        self.max_render_asymmetry = max_render_asymmetry
        """The render gate's threshold (0: not measured, never leaves the mirror out)."""
        self.render_asymmetry: float | None = None
        """:func:`render_asymmetry` of the probe, from :meth:`probe_render` (``None`` before)."""
        self.probe_ratio: torch.Tensor | None = None
        """:func:`render_shading_ratio` of the probe ``[1, 3, H, W]`` (``None`` before)."""
        self.reasons: list[str] = []
        self.corrections: dict[int, float] = {}
        """Step -> ``_correction`` of the accepted fits of this stage (refused fits are absent),
        recorded by :meth:`gate`."""
        self._key: tuple[object, ...] | None = None
        self._value: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None

    @property
    def mean_correction(self) -> float:
        """Mean ``_correction`` of the stage's accepted fits so far (0 before any)."""
        return sum(self.corrections.values()) / max(len(self.corrections), 1)

    @property
    def left_out(self) -> bool:
        """The mirror is left out for now.

        Either the stage's mean correction exceeds ``max_correction`` (never before a fit) or
        the measured render asymmetry exceeds ``max_render_asymmetry``. The owning term renders
        no mirror view until the mean falls below it (the render asymmetry is measured once, so
        its decision holds for the stage).
        """
        by_fit = bool(self.corrections) and self.mean_correction > self.max_correction
        return self.probed_out or by_fit

    @property
    def probed_out(self) -> bool:
        """The probe left the mirror out for the whole stage (render asymmetry over threshold).

        Unlike the fit's gate this never changes within the stage.
        """
        return (
            self.render_asymmetry is not None and self.render_asymmetry > self.max_render_asymmetry
        )

    def probe_render(
        self, ctx: PriorContext, generator: Generator3D, losses: Losses, *, steps: int, lr: float
    ) -> None:
        """Judge the photo's light once: :func:`render_asymmetry` of :func:`probe_latent`.

        Does nothing without ``max_render_asymmetry`` or when already measured. The owning term
        calls it before it asks for views, so a mirror left out here is never rendered. Both
        stages probe the same way from the same start, so they decide alike.
        """
        if self.max_render_asymmetry <= 0 or self.render_asymmetry is not None:
            return
        probe = probe_latent(generator, ctx.camera, ctx.target, losses, steps=steps, lr=lr)
        obs = ctx.observation
        mask = obs.face_mask if obs is not None else None
        pair = _mirror_pair(generator, probe, ctx.camera)
        self.render_asymmetry = _asymmetry(pair, mask)
        self.probe_ratio = render_shading_ratio(pair)
        if self.render_asymmetry > self.max_render_asymmetry:
            _LOG.info(
                "%s: the render is asymmetric (%.3f > %.3f): the mirror is left out",
                self.name,
                self.render_asymmetry,
                self.max_render_asymmetry,
            )

    def render_info(self) -> dict[str, torch.Tensor]:
        """``_render_asymmetry`` once measured (else nothing), to log with the term."""
        if self.render_asymmetry is None:
            return {}
        return {"_render_asymmetry": torch.tensor(self.render_asymmetry)}

    def photo(self, ctx: PriorContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The photo relit so that its flip shows the mirrored side under the photo's light.

        Returns:
            ``[1, 3, H, W]`` in ``[0, 1]`` in the photo's orientation (flip it for the mirror
            view; ``ctx.target`` itself when the estimate is refused), and diagnostics to log:
            ``_relit`` (1 when the relit photo is used, else 0), ``_asymmetry`` of the fit, and
            ``_correction``: the mean ``|ratio - 1|`` of the relighting over the mirrored face (0
            for a plain mirror), how much the relit label departs from the flipped photo.
        """
        assert ctx.render is not None, "relighting needs the input-view render (its depth)"
        # the step, and the inputs themselves (held, compared by identity): one fit per render
        key = (ctx.stage, ctx.step, ctx.target, ctx.render.depth_z, ctx.observation)
        if self._key is not None and self._value is not None and self._key[:2] == key[:2]:
            if all(a is b for a, b in zip(self._key[2:], key[2:], strict=True)):
                return self._value
        # gated: the gate judges the face-wide correction, which a snap to symmetric would hide
        fit_options = {"min_asymmetry": 0.0} if self.max_correction > 0 else {}
        with torch.no_grad():
            relit = relight_mirror(
                ctx.target,
                ctx.render.depth_z[:, 0].detach(),
                ctx.camera,
                source_mask(ctx, use_face_mask=True),
                depth_kind="z",
                **fit_options,
            )
        est = relit.estimate
        ok = bool(est.ok[0])
        if not ok:
            reason = est.reason[0]
            if reason not in self.reasons:
                self.reasons.append(reason)
                _LOG.info("%s: relighting refused, the plain mirror is used: %s", self.name, reason)
        photo = mirror_image(relit.image) if ok else ctx.target
        mask = mirror_image(source_mask(ctx, use_face_mask=True))
        mask = resize(mask, tuple(relit.ratio.shape[-2:])).clamp(0.0, 1.0)
        change = ((relit.ratio - 1.0).abs() * mask).sum((1, 2, 3)) / (
            mask.sum((1, 2, 3)) * relit.ratio.shape[1]
        ).clamp_min(1e-6)
        info = {
            "_relit": torch.tensor(float(ok)),
            "_asymmetry": est.asymmetry[0].detach().float().cpu(),
            "_correction": change[0].detach().float().cpu() if ok else torch.tensor(0.0),
        }
        self._key, self._value = key, (photo, info)
        return photo, info

    def gate(self, ctx: PriorContext) -> dict[str, torch.Tensor]:
        """Fit (cached per step), record the correction and decide whether the mirror is left out.

        The mirror is left out while the mean ``_correction`` of this stage's accepted fits so
        far (this step's included) exceeds ``max_correction``; refused fits are not counted, and
        until a fit is accepted SPI's plain mirror is kept (:attr:`left_out`).

        Returns:
            the fit's diagnostics (:meth:`photo`), ``_left_out`` (1 or 0) and ``_mean_correction``.
        """
        _, info = self.photo(ctx)
        if bool(info["_relit"]):
            self.corrections[ctx.step] = float(info["_correction"])
        return {
            **info,
            "_left_out": torch.tensor(float(self.left_out)),
            "_mean_correction": torch.tensor(self.mean_correction),
        }

    def label(
        self, ctx: PriorContext, views: PriorViews | None, *, relight: bool
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor], bool]:
        """What a mirror term needs this step: the relit photo, the diagnostics, whether to run.

        With ``max_correction > 0`` the light is fitted on every step the term is active, also
        while the mirror is left out (then no mirror view is rendered: ``views`` is ``None``).

        Returns:
            ``(photo, info, run)``: the relit photo (:meth:`photo`; ``None`` without ``relight``),
            the diagnostics to log, and ``False`` when the term computes no loss this step (no
            views, or the mirror left out by :meth:`gate`).
        """
        gated = relight and self.max_correction > 0 and ctx.render is not None
        rendered = self.render_info()
        if views is None and not (gated and self.left_out):
            return None, rendered, False
        info = {**(self.gate(ctx) if gated else {}), **rendered}
        if views is None or self.left_out:
            return None, info, False
        if not relight:
            return None, info, True
        photo, fit = self.photo(ctx)
        return photo, {**fit, **info}, True
