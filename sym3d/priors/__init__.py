"""Priors: extra objective terms of the inversion (SPI's symmetry prior and friends).

A prior is any object satisfying :class:`sym3d.protocols.Prior`; :class:`BasePrior` gives the
defaults. The SPI priors are built by the engine from the config; pass your own with
``sym3d.invert(..., priors=[...])``.
"""

from sym3d.priors.base import BasePrior
from sym3d.priors.depth_reg import DepthRegPrior
from sym3d.priors.mirror_regions import MirrorRegionsPrior, region_boxes
from sym3d.priors.mirror_view import MirrorViewPrior
from sym3d.priors.pseudo_views import WarpViewsPrior

__all__ = ["BasePrior", "DepthRegPrior", "MirrorRegionsPrior", "MirrorViewPrior", "WarpViewsPrior", "region_boxes"]
