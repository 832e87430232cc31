"""sym3d: single-photo 3D face reconstruction by 3D GAN inversion with a facial symmetry prior."""

from sym3d._version import __version__

__all__ = ["__version__"]
