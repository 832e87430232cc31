"""Objective terms: one module per term, each holding its config class and its provider.

========================  ==========  ==========================================================
term (module, config key)  stages      what it compares
========================  ==========  ==========================================================
``reconstruction``        both        the input view with the photo (perceptual + MSE)
``mirror_view``           latent      the mirrored camera's view with the flipped photo (SPI)
``warp_views``            generator   nearby views with the photo warped by depth
``mirror_regions``        generator   views around the mirrored camera with the warped mirror, in
                                      facial regions, with the authentic mask
``depth_reg``             generator   depth at random views with the frozen generator's depth
``unseen_anchor``         generator   random views with the frozen generator's, where the photo
                                      does not see the surface (off by default)
========================  ==========  ==========================================================

A term's config builds its provider: ``config.setup(env) -> Prior`` (a
:class:`~sym3d.protocols.Prior`). See :mod:`sym3d.terms.base` to add one.
"""

from typing import Any

from sym3d.lazy import lazy_getattr
from sym3d.terms.base import BasePrior, TermConfig, TermEnv, term_config_class, term_names

__all__ = [
    "BasePrior",
    "TermConfig",
    "TermEnv",
    "term_config_class",
    "term_names",
    "ReconstructionConfig",
    "MirrorViewConfig",
    "WarpViewsConfig",
    "MirrorRegionsConfig",
    "DepthRegConfig",
    "UnseenAnchorConfig",
    "region_boxes",
]

BUILTIN = (
    "reconstruction",
    "mirror_view",
    "warp_views",
    "mirror_regions",
    "depth_reg",
    "unseen_anchor",
)
"""The built-in terms (each is the module ``sym3d.terms.<name>``)."""

_LAZY = {
    "ReconstructionConfig": ".reconstruction",
    "MirrorViewConfig": ".mirror_view",
    "WarpViewsConfig": ".warp_views",
    "MirrorRegionsConfig": ".mirror_regions",
    "DepthRegConfig": ".depth_reg",
    "UnseenAnchorConfig": ".unseen_anchor",
    "region_boxes": ".mirror_regions",
}

# Term modules import torch; config loading imports this package, so they load lazily.
_load = lazy_getattr(__name__, _LAZY)


def __getattr__(name: str) -> Any:
    return _load(name)
