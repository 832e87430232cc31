"""Build the ``lpips`` package's network and torchvision's VGG16 offline, with sym3d's weights.

Both libraries would otherwise download ImageNet weights (``torchvision``) or ``torch.load`` the
package's bundled heads without ``weights_only``. Here the modules are created on the ``meta``
device (no memory, no random initialisation of VGG16's 120 M classifier parameters, no network)
and their tensors are then *assigned* from the sha256-checked offline weights of
:mod:`sym3d_extras.perceptual.weights`. Tensor layouts are the libraries' own: torchvision's
``features.<i>`` indices (VGG16: convs 0, 2, 5, ..., 28; AlexNet: 0, 3, 6, 8, 10).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["build_lpips_model", "build_vgg16_prefix", "random_conv_state", "run_in_dtype"]


def _trunk_keys(trunk: nn.Module) -> dict[str, str]:
    """``features.<i>.<param>`` (torchvision) -> ``<slice>.<i>.<param>`` in an lpips trunk."""
    out = {}
    for name, _ in trunk.named_parameters():
        slice_name, idx, param = name.split(".")
        out[f"features.{idx}.{param}"] = f"{slice_name}.{idx}.{param}"
    return out


def random_conv_state(shapes: Mapping[str, torch.Size], seed: int = 0) -> dict[str, torch.Tensor]:
    """Kaiming-normal conv weights and zero biases for ``shapes``, from a private generator.

    Args:
        shapes: ``{"features.<i>.weight" | "features.<i>.bias": shape}``.
        seed: seed of the generator (the global random state is never touched).
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes, key=lambda k: (int(k.split(".")[1]), k)):
        shape = shapes[key]
        if key.endswith(".bias"):
            out[key] = torch.zeros(shape)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            out[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
    return out


def build_lpips_model(
    net: str, trunk_state: Mapping[str, torch.Tensor] | None, heads: Sequence[torch.Tensor]
) -> nn.Module:
    """``lpips.LPIPS(net=net)`` (v0.1, linear heads, no dropout) holding the given weights.

    Args:
        net: ``"vgg"`` or ``"alex"``.
        trunk_state: torchvision-layout conv weights (``features.<i>.weight`` / ``.bias``), or
            ``None`` for a seeded random trunk (:func:`random_conv_state`).
        heads: the five ``[1, C_k, 1, 1]`` linear-head weights.

    Returns:
        The package's module in eval mode, without gradients, on the CPU, float32.
    """
    import lpips

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # torchvision's deprecation of `pretrained=`
        model = lpips.LPIPS(
            net=net, pretrained=False, pnet_rand=True, use_dropout=False, verbose=False
        )
    keys = _trunk_keys(model.net)
    if trunk_state is None:
        trunk_state = random_conv_state(
            {k: model.net.get_parameter(v).shape for k, v in keys.items()}
        )
    state: dict[str, torch.Tensor] = {
        f"net.{ours}": trunk_state[theirs].float() for theirs, ours in keys.items()
    }
    for k, head in enumerate(heads):
        state[f"lin{k}.model.0.weight"] = head.float()
        state[f"lins.{k}.model.0.weight"] = head.float()  # the same modules, listed twice
    # the scaling layer's buffers are built on the CPU (legacy constructor): keep the package's
    state.update({f"scaling_layer.{n}": b for n, b in model.scaling_layer.named_buffers()})
    model.load_state_dict(state, strict=True, assign=True)
    model.requires_grad_(False)
    return model.eval()


def build_vgg16_prefix(last: int, state: Mapping[str, torch.Tensor] | None) -> nn.Sequential:
    """The layers ``0..last`` of torchvision's ``vgg16().features`` holding ``state``.

    Args:
        last: index of the last layer kept (e.g. 5 for conv2_1).
        state: ``features.<i>.weight`` / ``.bias`` for the kept convs (extra keys are ignored,
            so a VGG19 state dict works for prefixes up to index 17), or ``None`` for a seeded
            random initialisation (:func:`random_conv_state`).
    """
    from torchvision.models import vgg16

    with torch.device("meta"):
        features = vgg16(weights=None).features[: last + 1]
    wanted = {f"features.{k}": p.shape for k, p in features.named_parameters()}
    if state is None:
        state = random_conv_state(wanted)
    features.load_state_dict(
        {k.removeprefix("features."): state[k].float() for k in wanted}, strict=True, assign=True
    )
    features.requires_grad_(False)
    return features.eval()


def run_in_dtype(module: nn.Module, x: torch.Tensor) -> torch.Tensor | tuple:
    """``module(x)`` with the module's parameters cast to ``x``'s dtype for this call only.

    Lets float32 modules serve float64 inputs (gradient checks) without a second copy.
    """
    params = dict(module.named_parameters())
    if all(p.dtype == x.dtype for p in params.values()):
        return module(x)
    cast = {k: p.to(x.dtype) for k, p in params.items()}
    return torch.func.functional_call(module, cast, (x,))
