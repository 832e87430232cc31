"""Named presets: every method is the same engine with a different config, so comparisons are fair.

========================  =================================================================
preset                    what it is
========================  =================================================================
``w``                     stage 1 in W (one vector), no mirror; no fine-tuning
``w+``                    stage 1 in W+, no mirror; no fine-tuning
``pti``                   W+ pivot (no mirror) + generator fine-tuning on the input view only
``pti-depth-reg``         ``pti`` + the depth regulariser alone (the control for SPI's depth term)
``spi``                   SPI: mirror view in stage 1; pseudo views, mirror regions with the
                          authentic mask and the depth regulariser in stage 2
``spi-no-mirror``         ``spi`` without the mirror (stage 1 view and stage 2 regions)
``spi-no-warp``           ``spi`` without the warped pseudo views of the input
``spi-no-authentic-mask`` ``spi`` with the mirror pseudo label unfiltered
``spi-no-depth-reg``      ``spi`` without the depth regulariser
========================  =================================================================

PTI originally pivots in W; ours pivots in W+ so that ``pti`` and ``spi`` differ only by the
priors (``--set latent.space=w`` restores the original).
"""

from __future__ import annotations


import attrs

from sym3d.config import InversionConfig, apply_overrides
from sym3d.errors import PluginNotFoundError

__all__ = ["PRESETS", "preset_names", "get_preset"]

_NO_TUNE_PRIORS = {"tune.warp.enabled": False, "tune.mirror.enabled": False, "tune.depth_reg.enabled": False}

PRESETS: dict[str, dict[str, object]] = {
    "w": {"latent.space": "w", "latent.mirror.enabled": False, "tune.steps": 0, **_NO_TUNE_PRIORS},
    "w+": {"latent.space": "w+", "latent.mirror.enabled": False, "tune.steps": 0, **_NO_TUNE_PRIORS},
    "pti": {"latent.mirror.enabled": False, **_NO_TUNE_PRIORS},
    "pti-depth-reg": {"latent.mirror.enabled": False, **_NO_TUNE_PRIORS, "tune.depth_reg.enabled": True},
    "spi": {},
    "spi-no-mirror": {"latent.mirror.enabled": False, "tune.mirror.enabled": False},
    "spi-no-warp": {"tune.warp.enabled": False},
    "spi-no-authentic-mask": {"tune.mirror.authentic_mask": False},
    "spi-no-depth-reg": {"tune.depth_reg.enabled": False},
}


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

        raise PluginNotFoundError("preset", name, preset_names(), difflib.get_close_matches(name, preset_names(), n=2))
    cfg = apply_overrides(base or InversionConfig(), PRESETS[name])
    return attrs.evolve(cfg, preset=name)


