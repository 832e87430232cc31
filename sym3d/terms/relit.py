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
"""

from __future__ import annotations

import logging

import torch

from sym3d.image import mirror_image
from sym3d.lighting import relight_mirror
from sym3d.protocols import PriorContext, PriorViews
from sym3d.resize import resize
from sym3d.warp import source_mask

__all__ = ["MirrorRelighter"]

_LOG = logging.getLogger("sym3d.terms")


class MirrorRelighter:
    """Caches one relit photo per step (same inputs) and records why it fell back, once per reason.

    Attributes:
        name: the owning term's name (for the log line).
        reasons: the distinct fallback reasons met so far, in order (also logged once each).
    """

    def __init__(self, name: str, max_correction: float = 0.0) -> None:
        self.name = name
        self.max_correction = max_correction
        """The gate's threshold (0: no gate, and fits are snapped to a symmetric light)."""
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
        """The stage's mean correction exceeds ``max_correction`` (never before a fit).

        The owning term renders no mirror view until the mean falls below it.
        """
        return bool(self.corrections) and self.mean_correction > self.max_correction

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
        if views is None and not (gated and self.left_out):
            return None, {}, False
        info = self.gate(ctx) if gated else {}
        if views is None or self.left_out:
            return None, info, False
        if not relight:
            return None, info, True
        photo, fit = self.photo(ctx)
        return photo, {**fit, **info}, True
