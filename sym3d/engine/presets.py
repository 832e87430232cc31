"""Named presets: every method is the same engine with a different config, so comparisons are fair.

========================  =================================================================
preset                    what it is
========================  =================================================================
``w``                     stage 1 in W (one vector), no mirror; no fine-tuning
``w+``                    stage 1 in W+, no mirror; no fine-tuning
``pti``                   W+ pivot (no mirror) + generator fine-tuning on the input view only
``pti-depth-reg``         ``pti`` + the depth regulariser alone (the control for SPI's depth term)
``spi``                   SPI, illumination-aware: the mirror view in stage 1 and the mirror
                          regions in stage 2 relit to the photo's light and left out under a
                          strong side light (``max_correction``, and ``max_render_asymmetry``:
                          the latent fitted to the photo alone renders that light), the
                          authentic mask in both stages, pseudo views, the depth regulariser,
                          and ``unseen_anchor`` (weight 30; its occlusion test reaching 0.06 of
                          the image around each projection) holding what neither the photo nor
                          the mirror regions supply to the pivot's render; where the probe leaves
                          the mirror out, stage 1 ends on the latent that renders the mirrored
                          view closest to the flipped photo relit by the probe
                          (``latent.select_by``)
``spi-paper``             SPI as the paper and the official code run it (the config defaults):
                          plain mirror, authentic mask in stage 2 only, no ``unseen_anchor``
``spi-no-relight``        ``spi`` with the plain flipped photo as the mirror label (no gates)
``spi-no-probe``          ``spi`` without ``max_render_asymmetry`` (the ``spi`` of the second
                          pre-registered test of issue 14: without the probe nothing validates,
                          so ``latent.select_by`` keeps the last latent)
``spi-no-select``         ``spi`` ending stage 1 on its last latent even when the probe leaves
                          the mirror out (the ``spi`` of the third pre-registered test)
``spi-no-anchor``         ``spi`` without ``unseen_anchor`` (nothing holds the unseen side)
``spi-no-mirror``         ``spi`` without the mirror (stage 1 view and stage 2 regions)
``spi-no-warp``           ``spi`` without the warped pseudo views of the input
``spi-no-authentic-mask`` ``spi`` with the mirror pseudo labels unfiltered (both stages)
``spi-no-depth-reg``      ``spi`` without the depth regulariser
========================  =================================================================

The ``spi`` additions were chosen on SymHeads development heads 100-103 (``docs/benchmarks.md``,
"Relit mirror: where the side-light loss comes from").

PTI originally pivots in W; ours pivots in W+ so that ``pti`` and ``spi`` differ only by the
priors (``--set latent.space=w`` restores the original).
"""

from __future__ import annotations

import attrs

from sym3d.config import InversionConfig, apply_overrides
from sym3d.errors import PluginNotFoundError

__all__ = ["PRESETS", "preset_names", "get_preset"]

_OFF = False
_NO_TUNE_TERMS = {
    "tune.terms.warp_views.enabled": _OFF,
    "tune.terms.mirror_regions.enabled": _OFF,
    "tune.terms.depth_reg.enabled": _OFF,
}
_NO_MIRROR_VIEW = {"latent.terms.mirror_view.enabled": _OFF}

_PROBE = {
    "latent.terms.mirror_view.max_render_asymmetry": 0.2,
    "tune.terms.mirror_regions.max_render_asymmetry": 0.2,
}
_NO_PROBE = {
    "latent.terms.mirror_view.max_render_asymmetry": 0.0,
    "tune.terms.mirror_regions.max_render_asymmetry": 0.0,
}
_RELIGHT = {
    "latent.terms.mirror_view.relight": True,
    "latent.terms.mirror_view.max_correction": 0.05,
    "tune.terms.mirror_regions.relight": True,
    "tune.terms.mirror_regions.max_correction": 0.05,
    **_PROBE,
}
_NO_RELIGHT = {
    "latent.terms.mirror_view.relight": _OFF,
    "latent.terms.mirror_view.max_correction": 0.0,
    "tune.terms.mirror_regions.relight": _OFF,
    "tune.terms.mirror_regions.max_correction": 0.0,
    **_NO_PROBE,
}
_ANCHOR = {
    "tune.terms.unseen_anchor.weight": 30.0,
    "tune.terms.unseen_anchor.occluder_window": 0.06,
}
_SELECT = {
    "latent.terms.mirror_view.validate_every": 5,
    "latent.select_by": "mirror_view/_validation",
}
_NO_SELECT = {"latent.terms.mirror_view.validate_every": 0, "latent.select_by": ""}
_SPI = {**_RELIGHT, "latent.terms.mirror_view.authentic_mask": True, **_ANCHOR, **_SELECT}

PRESETS: dict[str, dict[str, object]] = {
    "w": {"latent.space": "w", **_NO_MIRROR_VIEW, "tune.steps": 0, **_NO_TUNE_TERMS},
    "w+": {"latent.space": "w+", **_NO_MIRROR_VIEW, "tune.steps": 0, **_NO_TUNE_TERMS},
    "pti": {**_NO_MIRROR_VIEW, **_NO_TUNE_TERMS},
    "pti-depth-reg": {**_NO_MIRROR_VIEW, **_NO_TUNE_TERMS, "tune.terms.depth_reg.enabled": True},
    "spi": _SPI,
    "spi-paper": {},
    "spi-no-relight": {**_SPI, **_NO_RELIGHT},
    "spi-no-probe": {**_SPI, **_NO_PROBE},
    "spi-no-select": {**_SPI, **_NO_SELECT},
    "spi-no-anchor": {**_SPI, "tune.terms.unseen_anchor.enabled": _OFF},
    "spi-no-mirror": {**_SPI, **_NO_MIRROR_VIEW, "tune.terms.mirror_regions.enabled": _OFF},
    "spi-no-warp": {**_SPI, "tune.terms.warp_views.enabled": _OFF},
    "spi-no-authentic-mask": {
        **_SPI,
        "latent.terms.mirror_view.authentic_mask": _OFF,
        "tune.terms.mirror_regions.authentic_mask": _OFF,
    },
    "spi-no-depth-reg": {**_SPI, "tune.terms.depth_reg.enabled": _OFF},
}
"""Preset name -> dotted settings applied on the defaults. A new term is one line here, e.g.
``"spi-center": {"tune.terms.center_depth.weight": 0.1}`` (the term's table is created)."""


def preset_names() -> list[str]:
    """All preset names."""
    return list(PRESETS)


def get_preset(name: str, base: InversionConfig | None = None) -> InversionConfig:
    """The config of preset ``name`` applied on ``base`` (default: SPI's hyperparameters).

    Raises:
        PluginNotFoundError: unknown preset (lists the presets and the closest match).
    """
    if name not in PRESETS:
        import difflib

        raise PluginNotFoundError(
            "preset", name, preset_names(), difflib.get_close_matches(name, preset_names(), n=2)
        )
    cfg = apply_overrides(base or InversionConfig(), PRESETS[name])
    return attrs.evolve(cfg, preset=name)
