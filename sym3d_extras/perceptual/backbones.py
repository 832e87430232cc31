"""Plain-torch VGG16 and AlexNet feature stacks (no torchvision), tapping intermediate activations.

Layer indices follow torchvision's ``features`` sequentials, so state dicts from
:func:`sym3d_extras.perceptual.weights.load_backbone_state` (keys ``features.<i>.weight``) load
directly, and LPIPS taps are named by index:

* VGG16: conv1_1=0, relu1_2=3, relu2_2=8, relu3_3=15, relu4_3=22, relu5_3=29 (the final max-pool
  at 30 is never built); ``conv2_1`` (pre-ReLU) is index 5.
* AlexNet: relu1=1, relu2=4, relu3=7, relu4=9, relu5=11.

The layers are created without touching the global random generator: either the given weights
are loaded, or a seeded random initialisation is applied (used only by explicit request).
Convolutions run in the dtype of the input (weights are cast on the fly), so float64 inputs work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sym3d.checks import check_shape
from sym3d.errors import ConfigError

__all__ = ["FeatureStack", "vgg16_features", "alexnet_features", "VGG16_LPIPS_TAPS", "ALEXNET_LPIPS_TAPS"]

VGG16_LPIPS_TAPS: tuple[int, ...] = (3, 8, 15, 22, 29)
"""relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""
ALEXNET_LPIPS_TAPS: tuple[int, ...] = (1, 4, 7, 9, 11)
"""relu1 ... relu5."""

_VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# (out_channels, kernel, stride, padding) per conv, "M" = 3x3/2 max-pool
_ALEX_CFG: tuple[tuple[int, int, int, int] | str, ...] = (
    (64, 11, 4, 2), "M", (192, 5, 1, 2), "M", (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1),
)


def _vgg16_layers() -> list[nn.Module]:
    layers: list[nn.Module] = []
    cin = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1, device="meta"), nn.ReLU()]
            cin = int(v)
    return layers


def _alexnet_layers() -> list[nn.Module]:
    layers: list[nn.Module] = []
    cin = 3
    for v in _ALEX_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
        else:
            cout, k, s, p = v
            layers += [nn.Conv2d(cin, cout, k, stride=s, padding=p, device="meta"), nn.ReLU()]
            cin = cout
    return layers


class FeatureStack(nn.Module):
    """A sequential conv/ReLU/max-pool stack that returns activations at chosen layer indices.

    Args:
        layers: the full layer list (torchvision ``features`` order); only layers up to
            ``max(taps)`` are kept.
        taps: indices whose outputs are returned, ascending.
        name: e.g. ``"vgg16"``.
        state_dict: weights keyed ``features.<i>.weight`` / ``.bias`` for the kept convs, or
            ``None`` for a random initialisation seeded by ``seed`` (never the global RNG).
        seed: seed of the random initialisation.

    Shape:
        - input: ``(B, 3, H, W)``, already normalised for the network.
        - output: a list with one ``(B, C_k, H_k, W_k)`` tensor per tap.
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        taps: Sequence[int],
        *,
        name: str,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        taps = tuple(int(t) for t in taps)
        if not taps or list(taps) != sorted(set(taps)) or taps[0] < 0 or taps[-1] >= len(layers):
            raise ConfigError(f"taps: expected ascending indices in [0, {len(layers) - 1}], got {taps!r}.")
        self.name = name
        self.taps = taps
        self.features = nn.Sequential(*layers[: taps[-1] + 1])
        self.features.to_empty(device="cpu")
        if state_dict is None:
            self.reset_parameters(seed)
        else:
            wanted = {k: v for k, v in state_dict.items() if k.split(".")[1].isdigit() and int(k.split(".")[1]) <= taps[-1]}
            self.load_state_dict(wanted, strict=True)
        self.requires_grad_(False)

    def reset_parameters(self, seed: int = 0) -> None:
        """Kaiming-normal weights and zero biases from a private generator seeded with ``seed``."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.features:
                if isinstance(m, nn.Conv2d):
                    fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                    m.bias.zero_()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run the stack on ``x [B, 3, H, W]``; returns the activations at :attr:`taps`."""
        check_shape(x, ["B", 3, "H", "W"], "x")
        out = []
        tap_set = set(self.taps)
        for i, layer in enumerate(self.features):
            if isinstance(layer, nn.Conv2d):
                w = layer.weight.to(dtype=x.dtype)
                b = layer.bias.to(dtype=x.dtype) if layer.bias is not None else None
                x = F.conv2d(x, w, b, layer.stride, layer.padding)
            else:
                x = layer(x)
            if i in tap_set:
                out.append(x)
        return out


def vgg16_features(
    taps: Sequence[int] = VGG16_LPIPS_TAPS,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    *,
    seed: int = 0,
) -> FeatureStack:
    """VGG16 ``features`` up to ``max(taps)`` (at most relu5_3, index 29)."""
    return FeatureStack(_vgg16_layers(), taps, name="vgg16", state_dict=state_dict, seed=seed)


def alexnet_features(
    taps: Sequence[int] = ALEXNET_LPIPS_TAPS,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    *,
    seed: int = 0,
) -> FeatureStack:
    """AlexNet ``features`` up to ``max(taps)`` (at most relu5, index 11)."""
    return FeatureStack(_alexnet_layers(), taps, name="alexnet", state_dict=state_dict, seed=seed)
