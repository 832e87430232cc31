"""Hand-assembled hostile EG3D pickles (opcode by opcode, so nothing hostile exists as an object).

Each builder returns the bytes of a whole snapshot ``{'G_ema': <TriPlaneGenerator record>}`` that
names only allowed globals; what makes it hostile is sharing through the pickle memo, a ``BUILD``
on a tensor, or an absurd size field in the constructor kwargs.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct

import torch

from sym3d_eg3d.configs import SMALL

_SEQUENTIAL = ("torch.nn.modules.container", "Sequential")


def _str(s: str) -> bytes:
    raw = s.encode()
    return (
        b"\x8c" + bytes([len(raw)]) + raw
        if len(raw) < 256
        else b"X" + struct.pack("<I", len(raw)) + raw
    )


def _global(module: str, name: str) -> bytes:
    return _str(module) + _str(name) + b"\x93"  # STACK_GLOBAL


def _body(obj: object) -> bytes:
    """Opcodes that push ``obj`` (plain data only), without PROTO, FRAME, STOP or any memo use.

    The pickler's fast mode writes no MEMOIZE/GET, so the bodies can be spliced anywhere.
    """
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=4)
    pickler.fast = True
    pickler.dump(obj)
    data = buf.getvalue()
    return data[11:-1] if data[2:3] == b"\x95" else data[2:-1]


def put(i: int) -> bytes:
    """LONG_BINPUT into memo slot ``i`` (the object stays on the stack).

    Builders number their slots 0, 1, 2, ... as a pickler does (the bodies use no memo).
    """
    return b"r" + struct.pack("<I", i)


def get(i: int) -> bytes:
    """LONG_BINGET of memo slot ``i``."""
    return b"j" + struct.pack("<I", i)


def dict_ops(items: list[tuple[str, bytes]]) -> bytes:
    """A dict from (key, value opcodes) pairs: EMPTY_DICT MARK k v ... SETITEMS."""
    return b"}(" + b"".join(_str(k) + v for k, v in items) + b"u"


def storage_blob(tensor: torch.Tensor) -> bytes:
    """The ``torch.storage._load_from_bytes`` argument torch writes for ``tensor``'s storage."""
    ops = pickletools.genops(pickle.dumps(tensor, protocol=4))
    return next(arg for op, arg, _ in ops if op.name.endswith("BINBYTES"))


def tensor_ops(blob_ops: bytes, size: tuple[int, ...]) -> bytes:
    """``_rebuild_tensor_v2(_load_from_bytes(blob), 0, size, contiguous stride, False, {})``."""
    stride = tuple(int(torch.empty(size).stride()[i]) for i in range(len(size)))
    load = _global("torch.storage", "_load_from_bytes") + b"(" + blob_ops + b"tR"
    args = load + b"".join(_body(v) for v in (0, size, stride, False, {}))
    return _global("torch._utils", "_rebuild_tensor_v2") + b"(" + args + b"tR"


def snapshot(
    *, modules: bytes = b"}", buffers: bytes = b"}", init_kwargs: bytes | None = None
) -> bytes:
    """``{'G_ema': TriPlaneGenerator record}`` with the given state parts as raw opcodes."""
    state = dict_ops(
        [
            ("training", _body(False)),
            ("_parameters", b"}"),
            ("_buffers", buffers),
            ("_non_persistent_buffers_set", _body(set())),
            ("_modules", modules),
            ("rendering_kwargs", _body(SMALL["rendering_kwargs"])),
            ("neural_rendering_resolution", _body(32)),
            ("_init_args", _body(())),
            ("_init_kwargs", init_kwargs if init_kwargs is not None else _body(SMALL)),
        ]
    )
    meta = dict_ops(
        [
            ("type", _body("class")),
            ("version", _body(6)),
            ("module_src", _body("# module source (never executed)")),
            ("class_name", _body("TriPlaneGenerator")),
            ("state", state),
        ]
    )
    g_ema = _global("torch_utils.persistence", "_reconstruct_persistent_obj") + b"(" + meta + b"tR"
    return b"\x80\x04}" + _str("G_ema") + g_ema + b"s."


def diamond_modules(depth: int) -> bytes:
    """A ``_modules`` dict whose children form a diamond chain: 2**(depth + 1) paths.

    Level ``k`` is a ``Sequential`` whose ``_modules`` are ``{'a': level k+1, 'b': level k+1}``.
    """
    ops = b""
    for slot, level in enumerate(range(depth, -1, -1)):  # deepest first, in memo slot ``slot``
        children = (
            b"}" if level == depth else dict_ops([("a", get(slot - 1)), ("b", get(slot - 1))])
        )
        module = (
            _global(*_SEQUENTIAL) + b")R" + dict_ops([("_modules", children)]) + b"b"
        )  # REDUCE, BUILD
        ops += module + put(slot) + b"0"  # memoise, POP
    return ops + dict_ops([("a", get(depth)), ("b", get(depth))])


def doubling_list(depth: int) -> bytes:
    """A list ``L[depth]``, ``L[0] = [0]``, ``L[k] = [L[k-1], L[k-1]]``: 2**depth leaves as data."""
    ops = b"](K\x00e" + put(0) + b"0"
    for level in range(1, depth + 1):
        ops += b"](" + get(level - 1) + get(level - 1) + b"e" + put(level) + b"0"
    return ops + get(depth)


def shared_blob_buffers(count: int, numel: int) -> bytes:
    """``count`` buffers that each decode the *same* storage blob (one copy in the file)."""
    blob = storage_blob(torch.arange(numel, dtype=torch.float32))
    first = b"B" + struct.pack("<I", len(blob)) + blob + put(0)  # BINBYTES, memoised
    items = [(f"t{i}", tensor_ops(first if i == 0 else get(0), (numel,))) for i in range(count)]
    return dict_ops(items)


def build_on_empty_tensor(numel: int) -> bytes:
    """A buffer made from an empty storage, then ``BUILD`` with ``(itself, 0, (numel,), (1,))``.

    ``Tensor.__setstate__`` would call ``set_``, which grows the empty storage to ``numel``
    elements of uninitialised memory after the unpickler's bounds check.
    """
    blob = b"B" + struct.pack("<I", len(storage_blob(torch.ones(0)))) + storage_blob(torch.ones(0))
    tensor = tensor_ops(blob, (0,)) + put(0)
    state = b"(" + get(0) + _body(0) + _body((numel,)) + _body((1,)) + b"t"
    return dict_ops([("leak", tensor + state + b"b")])


def init_kwargs_with(**changes: object) -> bytes:
    """The SMALL constructor kwargs with nested ``changes`` (``mapping_kwargs={...}``)."""
    kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SMALL.items()}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(kwargs.get(key), dict):
            kwargs[key] = {**kwargs[key], **value}
        else:
            kwargs[key] = value
    return _body(kwargs)
