"""A restricted unpickler for official EG3D snapshots that never runs code from the file.

Official EG3D ``.pkl`` files are ordinary pickles in which every network class carries the *source
text* of its Python module, and the official loader ``exec``s that text. This module reads the same
stream without importing or executing anything from it:

* Every global the stream names is looked up in a fixed allow-list (:data:`ALLOWED_GLOBALS`) and
  replaced by an inert stand-in. Anything else raises :class:`~sym3d.errors.UnsafeCheckpointError`
  *before* it can be called.
* Persistent objects (``torch_utils.persistence._reconstruct_persistent_obj``) become
  :class:`PersistentRecord` values. The embedded ``module_src`` is only hashed, never executed.
* Plain (non-persistent) modules become :class:`PlainObjectRecord` values holding their ``__dict__``.
* Tensor storages are decoded by :func:`decode_storage_blob`, a parser of the fixed legacy
  ``torch.save`` layout that itself uses a restricted unpickler.

The layout is documented in ``fixtures/eg3d/PKL_FORMAT.md``; :mod:`sym3d_eg3d.checkpoints`
turns the records into a state dict and constructor kwargs.
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import pickletools
import types
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import numpy as np
import torch

from sym3d.errors import CheckpointError, UnsafeCheckpointError

__all__ = [
    "ALLOWED_GLOBALS",
    "PERSISTENCE_VERSION",
    "DtypeRecord",
    "PersistentRecord",
    "PlainObjectRecord",
    "RecordDict",
    "RestrictedUnpickler",
    "TensorRecord",
    "decode_storage_blob",
    "unpickle_official",
]

PERSISTENCE_VERSION = 6
"""The only ``meta['version']`` written by EG3D / StyleGAN3's persistence module."""

_NOTHING_EXECUTED = "Nothing from the file was imported or executed."

# Plain torch.nn.Module subclasses that EG3D pickles by import path (NEWOBJ + BUILD).
_PLAIN_OBJECT_CLASSES: tuple[str, ...] = (
    "training.volumetric_rendering.renderer.ImportanceRenderer",
    "training.volumetric_rendering.ray_marcher.MipRayMarcher2",
    "training.volumetric_rendering.ray_sampler.RaySampler",
    "training.triplane.OSGDecoder",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.activation.Softplus",
)

ALLOWED_GLOBALS: Mapping[tuple[str, str], str] = types.MappingProxyType(
    {
        (
            "torch_utils.persistence",
            "_reconstruct_persistent_obj",
        ): "persistent object -> PersistentRecord (module_src hashed, never executed)",
        (
            "torch._utils",
            "_rebuild_tensor_v2",
        ): "TensorRecord: a bounds-checked view of a decoded storage",
        (
            "torch._utils",
            "_rebuild_parameter",
        ): "parameter -> its TensorRecord (requires_grad and hooks dropped)",
        ("torch.storage", "_load_from_bytes"): "storage blob -> parsed by decode_storage_blob",
        ("collections", "OrderedDict"): "an empty collections.OrderedDict (filled item by item)",
        ("dnnlib.util", "EasyDict"): "RecordDict (a dict, created empty)",
        ("numpy", "dtype"): "DtypeRecord (numeric dtypes only)",
        ("numpy.core.multiarray", "scalar"): "numeric numpy scalar -> Python number",
        ("numpy._core.multiarray", "scalar"): "numeric numpy scalar -> Python number",
        **{
            tuple(qualified.rsplit(".", 1)): "PlainObjectRecord (state stored, nothing run)"  # type: ignore[misc]
            for qualified in _PLAIN_OBJECT_CLASSES
        },
    }
)
"""Every global an official EG3D pickle may name, with what the safe reader substitutes for it.

``training.augment.AugmentPipe`` is deliberately absent: it only ever appears as a persistent
object (a ``class_name`` inside the persistence meta dict), never as an importable global.
"""


# --------------------------------------------------------------------------------------------
# Inert stand-ins
# --------------------------------------------------------------------------------------------


class RecordDict(dict):  # type: ignore[type-arg]
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict subclass with no attribute magic.

    It is a subclass (not ``dict`` itself) only so that a ``BUILD`` opcode with an empty state,
    which older Pythons emit for dict subclasses, is accepted.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse_constructor_args("dnnlib.util.EasyDict", args, kwargs)
        super().__init__()

    def __setstate__(self, state: Any) -> None:
        if state:
            raise CheckpointError(
                f"an EasyDict in the pickle carries unexpected attribute state {type(state).__name__}."
            )


class _EmptyOrderedDict(collections.OrderedDict):  # type: ignore[type-arg]
    """Stand-in for ``collections.OrderedDict``: created empty by ``REDUCE``, then filled.

    Copying an iterable argument would let a small file multiply a shared container many times.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse_constructor_args("collections.OrderedDict", args, kwargs)
        super().__init__()

    def __setstate__(self, state: Any) -> None:
        raise _refused_build("an OrderedDict")


def _refuse_constructor_args(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if args or kwargs:
        raise CheckpointError(
            f"the pickle calls {name} with arguments; official snapshots create it empty and "
            "then fill it."
        )


def _refused_build(what: str) -> CheckpointError:
    return CheckpointError(
        f"the pickle sets the internal state of {what} (a BUILD opcode); official EG3D "
        "snapshots never do, and it could make the reader use memory the file does not "
        f"describe. {_NOTHING_EXECUTED}"
    )


class PersistentRecord:
    """What a persistent EG3D object becomes: its class name and ``__dict__``, nothing callable.

    Attributes:
        class_name: the class name recorded in the meta dict, e.g. ``'TriPlaneGenerator'``.
        version: the persistence format version (always 6 in known files).
        state: the object's ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ...).
        module_src_sha256: sha256 of the embedded module source text (kept for provenance only).

    """

    __slots__ = ("class_name", "version", "state", "module_src_sha256")

    def __init__(
        self, class_name: str, version: int, state: dict[str, Any], module_src_sha256: str
    ) -> None:
        self.class_name = class_name
        self.version = version
        self.state = state
        self.module_src_sha256 = module_src_sha256

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError(
            f"unexpected BUILD on persistent object {self.class_name!r}; official files never do this."
        )

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name!r}, src_sha256={self.module_src_sha256[:12]})"


class PlainObjectRecord:
    """Base of the stand-ins for plain modules pickled by import path.

    ``NEWOBJ`` creates an instance without arguments and ``BUILD`` hands it the original
    ``__dict__``, which is stored in :attr:`state` and nothing else.
    """

    qualified_name: str = ""
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(
                f"state of {self.qualified_name} is a {type(state).__name__}; expected the module's __dict__ (a dict)."
            )
        self.state = state

    @property
    def class_name(self) -> str:
        """The bare class name, e.g. ``'ImportanceRenderer'``."""
        return self.qualified_name.rsplit(".", 1)[-1]

    def __repr__(self) -> str:
        return f"PlainObjectRecord({self.qualified_name})"


def _plain_record_class(qualified_name: str) -> type[PlainObjectRecord]:
    short = qualified_name.rsplit(".", 1)[-1]
    return type(
        f"{short}Record", (PlainObjectRecord,), {"qualified_name": qualified_name, "__slots__": ()}
    )


_PLAIN_RECORD_CLASSES: Mapping[str, type[PlainObjectRecord]] = types.MappingProxyType(
    {name: _plain_record_class(name) for name in _PLAIN_OBJECT_CLASSES}
)

_NUMERIC_KINDS = frozenset("biufc")


class DtypeRecord:
    """Stand-in for ``numpy.dtype(spec, align, copy)`` plus its ``BUILD`` state; numeric only."""

    __slots__ = ("spec", "byteorder")

    def __init__(self, spec: Any, align: Any = False, copy: Any = False) -> None:
        if not isinstance(spec, str) or len(spec) > 8:
            raise CheckpointError(
                f"numpy dtype spec {spec!r} is not a short type string such as 'f8'."
            )
        self.spec = spec
        self.byteorder = "="

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "=", "|"):
            raise CheckpointError(
                f"numpy dtype state {state!r} is not a simple numeric dtype state."
            )
        self.byteorder = state[1]

    def to_numpy(self) -> np.dtype[Any]:
        """The equivalent numeric ``numpy.dtype``; anything structured or object-like is refused."""
        try:
            dtype = np.dtype(self.spec)
        except TypeError as exc:
            raise CheckpointError(
                f"numpy dtype spec {self.spec!r} is not understood: {exc}."
            ) from None
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.shape != ():
            raise CheckpointError(
                f"numpy dtype {self.spec!r} is not a plain numeric type; only numbers are accepted."
            )
        return dtype.newbyteorder(self.byteorder) if self.byteorder in "<>" else dtype


def _numpy_scalar(dtype: Any, data: Any) -> int | float | complex | bool:
    """Replacement for ``numpy.core.multiarray.scalar``: decode one numeric scalar to a Python number."""
    if not isinstance(dtype, DtypeRecord):
        raise CheckpointError(
            f"numpy scalar with dtype {type(dtype).__name__}; expected a numpy.dtype."
        )
    np_dtype = dtype.to_numpy()
    if not isinstance(data, bytes) or len(data) != np_dtype.itemsize:
        raise CheckpointError(
            f"numpy scalar of dtype {np_dtype} needs {np_dtype.itemsize} raw bytes."
        )
    return np.frombuffer(data, dtype=np_dtype)[0].item()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# Tensors and storages
# --------------------------------------------------------------------------------------------

_MAX_TENSOR_DIMS = 8  # EG3D tensors have at most 4 dimensions
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES: Mapping[str, torch.dtype] = types.MappingProxyType(
    {
        "FloatStorage": torch.float32,
        "DoubleStorage": torch.float64,
        "HalfStorage": torch.float16,
        "BFloat16Storage": torch.bfloat16,
        "LongStorage": torch.int64,
        "IntStorage": torch.int32,
        "ShortStorage": torch.int16,
        "CharStorage": torch.int8,
        "ByteStorage": torch.uint8,
        "BoolStorage": torch.bool,
    }
)


class _DecodedStorage:
    """A storage decoded from a blob: raw bytes as an ``UntypedStorage`` plus the element dtype.

    Inert towards the pickle stream: a ``BUILD`` on it is refused (with ``__slots__`` and no
    ``__setstate__``, the unpickler would overwrite ``numel`` and defeat the bounds check).
    """

    __slots__ = ("storage", "dtype", "numel")

    def __init__(self, storage: torch.UntypedStorage, dtype: torch.dtype, numel: int) -> None:
        self.storage, self.dtype, self.numel = storage, dtype, numel

    def __setstate__(self, state: Any) -> None:
        raise _refused_build("a tensor storage")


class _StorageTypeToken:
    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        raise _refused_build("a storage type")


class TensorRecord:
    """What a tensor in the pickle becomes: an inert holder of a bounds-checked tensor view.

    The real tensor is never handed to the pickle stream, so no opcode can reach
    ``Tensor.__setstate__`` (whose ``set_`` would grow an empty storage into uninitialised
    memory). :meth:`tensor` re-checks that the storage still covers the view.

    """

    __slots__ = ("_tensor", "_storage_nbytes")

    def __init__(self, tensor: torch.Tensor, storage_nbytes: int) -> None:
        self._tensor, self._storage_nbytes = tensor, storage_nbytes

    def __setstate__(self, state: Any) -> None:
        raise _refused_build("a tensor")

    @property
    def shape(self) -> torch.Size:
        """The tensor's shape."""
        return self._tensor.shape

    @property
    def dtype(self) -> torch.dtype:
        """The tensor's element type."""
        return self._tensor.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of the view (``numel * element_size``), not of the shared storage."""
        return self._tensor.numel() * self._tensor.element_size()

    def tensor(self) -> torch.Tensor:
        """A fresh tensor object (no grad flag, no hooks) viewing the decoded storage.

        Raises:
            CheckpointError: the storage no longer has the size it was decoded with.
        """
        t = self._tensor
        if t.untyped_storage().nbytes() != self._storage_nbytes:
            raise CheckpointError(
                "a tensor's storage changed size after it was decoded; refusing to use it."
            )
        return t.detach()

    def __repr__(self) -> str:
        return f"TensorRecord({list(self.shape)}, {self.dtype})"


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickler for the small header pickles inside a storage blob: no globals except storage types."""

    def __init__(self, file: BinaryIO, *, allow_storage_types: bool = False) -> None:
        super().__init__(file, fix_imports=False)
        self._allow_storage_types = allow_storage_types
        self.persistent_ids: list[Any] = []

    def find_class(self, module: str, name: str) -> Any:
        if self._allow_storage_types and module == "torch" and name in _STORAGE_DTYPES:
            return _StorageTypeToken(_STORAGE_DTYPES[name])
        err = UnsafeCheckpointError(
            f"refused to load: a tensor storage blob references the global '{module}.{name}', which is not a "
            f"torch storage type. {_NOTHING_EXECUTED}"
        )
        err.module, err.name = module, name  # type: ignore[attr-defined]
        raise err

    def persistent_load(self, pid: Any) -> Any:
        self.persistent_ids.append(pid)
        return pid


def decode_storage_blob(blob: bytes) -> _DecodedStorage:
    """Parse one ``torch.storage._load_from_bytes`` blob (a legacy, non-zip ``torch.save`` of one storage).

    The blob holds: the legacy magic number, protocol 1001, a system-info dict, a pickle whose
    single persistent id describes the storage, the list of storage keys, and per key an int64
    element count followed by the raw little-endian bytes.

    Args:
        blob: the bytes argument of ``_load_from_bytes``.

    Returns:
        The decoded storage (CPU) and its element dtype.

    Raises:
        CheckpointError: if the blob does not have exactly that layout.
        UnsafeCheckpointError: if a header pickle names any global other than a storage type.

    """
    if not isinstance(blob, (bytes, bytearray)):
        raise CheckpointError(f"a tensor storage is a {type(blob).__name__}; expected bytes.")
    stream = io.BytesIO(blob)
    magic = _NoGlobalsUnpickler(stream).load()
    protocol = _NoGlobalsUnpickler(stream).load()
    sys_info = _NoGlobalsUnpickler(stream).load()
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL or not isinstance(sys_info, dict):
        raise CheckpointError(
            "a tensor storage blob is not in the legacy torch.save layout (wrong magic or protocol)."
        )
    if sys_info.get("little_endian") is not True:
        raise CheckpointError(
            "a tensor storage blob was written on a big-endian machine; this is not supported."
        )
    header = _NoGlobalsUnpickler(stream, allow_storage_types=True)
    header.load()
    if len(header.persistent_ids) != 1:
        raise CheckpointError(
            f"a tensor storage blob describes {len(header.persistent_ids)} storages; expected exactly one."
        )
    pid = header.persistent_ids[0]
    if (
        not isinstance(pid, tuple)
        or len(pid) < 5
        or pid[0] != "storage"
        or not isinstance(pid[1], _StorageTypeToken)
        or not isinstance(pid[2], str)
        or not isinstance(pid[4], int)
        or pid[4] < 0
    ):
        raise CheckpointError(
            f"a tensor storage blob has an unexpected storage descriptor {pid!r}."
        )
    dtype, key, numel = pid[1].dtype, pid[2], pid[4]
    keys = _NoGlobalsUnpickler(stream).load()
    if keys != [key]:
        raise CheckpointError(f"a tensor storage blob lists keys {keys!r}; expected [{key!r}].")
    count_bytes = stream.read(8)
    if len(count_bytes) != 8 or int.from_bytes(count_bytes, "little", signed=True) != numel:
        raise CheckpointError(
            f"a tensor storage blob has a wrong element count (expected {numel})."
        )
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if nbytes > len(blob) - stream.tell():  # check before allocating: the count comes from the file
        raise CheckpointError(
            f"a tensor storage blob is truncated: it declares {nbytes} data bytes but holds {len(blob) - stream.tell()}."
        )
    raw = bytearray(nbytes)
    got = stream.readinto(raw)
    if got != nbytes:
        raise CheckpointError(
            f"a tensor storage blob is truncated: expected {nbytes} data bytes, got {got}."
        )
    storage = (
        torch.frombuffer(raw, dtype=torch.uint8).untyped_storage()
        if nbytes
        else torch.UntypedStorage(0)
    )
    return _DecodedStorage(storage, dtype, numel)


def _rebuild_tensor(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    hooks: Any = None,
    metadata: Any = None,
) -> TensorRecord:
    """Replacement for ``torch._utils._rebuild_tensor_v2``: a view of a decoded storage, bounds-checked."""
    if not isinstance(storage, _DecodedStorage):
        raise CheckpointError(
            f"a tensor is built from a {type(storage).__name__}; expected a decoded storage."
        )
    dims_ok = (
        isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride) <= _MAX_TENSOR_DIMS
        and all(type(v) is int and v >= 0 for v in (*size, *stride))
    )
    if type(offset) is not int or offset < 0 or not dims_ok:
        raise CheckpointError(
            f"a tensor has an invalid layout: offset={offset!r}, size={size!r}, stride={stride!r}."
        )
    if all(size):
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.numel:
            raise CheckpointError(
                f"a tensor of size {list(size)} reaches element {last} of a storage holding {storage.numel}."
            )
        numel = 1
        for n in size:
            numel *= n
        if numel > storage.numel:  # an expanded (stride-0) view; official tensors never are
            raise CheckpointError(
                f"a tensor of size {list(size)} has more elements than its storage ({storage.numel})."
            )
    tensor = torch.empty(0, dtype=storage.dtype).set_(storage.storage, offset, size, stride)
    return TensorRecord(tensor, storage.storage.nbytes())


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None) -> TensorRecord:
    """Replacement for ``torch._utils._rebuild_parameter``: the tensor's record (no grad, no hooks)."""
    if not isinstance(data, TensorRecord):
        raise CheckpointError(f"a parameter wraps a {type(data).__name__}; expected a tensor.")
    return data


# --------------------------------------------------------------------------------------------
# The unpickler
# --------------------------------------------------------------------------------------------


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves globals only through :data:`ALLOWED_GLOBALS`.

    Args:
        file: a binary stream positioned at the start of the pickle.
        source: a name for the stream (the file path), used in error messages.

    Raises (from :meth:`load`):
        UnsafeCheckpointError: at the first global outside the allow-list, before it is called.
        CheckpointError: when an allowed global receives malformed arguments, or the opcode
            scan finds memo indices out of sequence or too many opcodes.

    """

    def __init__(self, file: BinaryIO, *, source: str) -> None:
        super().__init__(file, fix_imports=False)
        self._file = file
        self.source = source
        self._src_hashes: dict[int, tuple[str, str]] = {}
        self._storages: dict[int, tuple[Any, _DecodedStorage]] = {}
        self._handlers: dict[tuple[str, str], Callable[..., Any] | type] = {
            (
                "torch_utils.persistence",
                "_reconstruct_persistent_obj",
            ): self._reconstruct_persistent_obj,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch.storage", "_load_from_bytes"): self._load_storage,
            ("collections", "OrderedDict"): _EmptyOrderedDict,
            ("dnnlib.util", "EasyDict"): RecordDict,
            ("numpy", "dtype"): DtypeRecord,
            ("numpy.core.multiarray", "scalar"): _numpy_scalar,
            ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        }
        for qualified, record_cls in _PLAIN_RECORD_CLASSES.items():
            module, name = qualified.rsplit(".", 1)
            self._handlers[(module, name)] = record_cls

    def load(self) -> Any:
        """Scan the opcodes with :func:`check_opcodes` (seekable streams), then unpickle."""
        if self._file.seekable():
            start = self._file.tell()
            check_opcodes(self._file, source=self.source)
            self._file.seek(start)
        return super().load()

    def find_class(self, module: str, name: str) -> Any:
        """Return the inert stand-in for an allowed global, or refuse."""
        handler = self._handlers.get((module, name))
        if handler is None:
            err = UnsafeCheckpointError(
                f"{self.source}: refused to load: the pickle references the global '{module}.{name}', "
                f"which is not on the allow-list of things an EG3D checkpoint may contain. {_NOTHING_EXECUTED}",
                hint="only official EG3D snapshots (.pkl) and folders written by `sym3d eg3d convert` are "
                "accepted. Do not open this file with plain pickle/torch.load unless you trust its author.",
            )
            err.module, err.name = module, name  # type: ignore[attr-defined]
            raise err
        return handler

    def persistent_load(self, pid: Any) -> Any:
        """Official snapshots use no persistent ids at the top level; refuse them."""
        raise CheckpointError(
            f"{self.source}: the pickle uses a persistent id ({type(pid).__name__}); official EG3D snapshots do not."
        )

    def _load_storage(self, blob: Any) -> _DecodedStorage:
        # Decode each blob object once: the memo can hand the same blob to many calls, and a copy
        # per call would let a small file claim any amount of memory. The cache keeps the blob
        # alive, so its id cannot be reused meanwhile.
        cached = self._storages.get(id(blob))
        if cached is not None and cached[0] is blob:
            return cached[1]
        decoded = decode_storage_blob(blob)
        self._storages[id(blob)] = (blob, decoded)
        return decoded

    def _module_src_sha256(self, module_src: str) -> str:
        # All classes of one module share one str object; hash each distinct object once.
        # The cache holds the str itself, so its id cannot be reused while the cache lives.
        cached = self._src_hashes.get(id(module_src))
        if cached is not None and cached[0] is module_src:
            return cached[1]
        digest = hashlib.sha256(module_src.encode("utf-8", "surrogatepass")).hexdigest()
        self._src_hashes[id(module_src)] = (module_src, digest)
        return digest

    def _reconstruct_persistent_obj(self, meta: Any) -> PersistentRecord:
        """Replacement for ``torch_utils.persistence._reconstruct_persistent_obj``: record, never exec."""
        if not isinstance(meta, dict):
            raise CheckpointError(
                f"{self.source}: a persistent object has meta of type {type(meta).__name__}; expected a dict."
            )
        class_name, version, state, module_src = (
            meta.get(k) for k in ("class_name", "version", "state", "module_src")
        )
        if meta.get("type") != "class":
            raise CheckpointError(
                f"{self.source}: a persistent object has type {meta.get('type')!r}; expected 'class'."
            )
        if version != PERSISTENCE_VERSION:
            raise CheckpointError(
                f"{self.source}: persistent object {class_name!r} uses persistence version {version!r}; "
                f"expected {PERSISTENCE_VERSION}."
            )
        if not isinstance(class_name, str) or not class_name.isidentifier():
            raise CheckpointError(
                f"{self.source}: a persistent object has class name {class_name!r}; expected an identifier."
            )
        if not isinstance(state, dict):
            raise CheckpointError(
                f"{self.source}: persistent object {class_name!r} has no state dict."
            )
        if not isinstance(module_src, str):
            raise CheckpointError(
                f"{self.source}: persistent object {class_name!r} has no module source string."
            )
        return PersistentRecord(class_name, version, state, self._module_src_sha256(module_src))


MAX_OPCODES = 2_000_000
"""Most pickle opcodes a checkpoint may hold. The opcode count follows the number of modules, not
their width: the small fixture snapshot (G, D and G_ema, from the official code) has about 40,000.
"""

_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def check_opcodes(file: BinaryIO, *, source: str) -> int:
    """Scan the opcode stream (without building anything) for memo and size abuse.

    CPython's unpickler sizes its memo table by the largest index a ``PUT`` names, so a 12-byte
    pickle with ``LONG_BINPUT 0x7fffffff`` makes it allocate 32 GB. A pickler numbers its memo
    entries 0, 1, 2, ...; an index beyond the number of entries stored so far is refused here.

    Returns:
        The number of opcodes read.

    A stream that turns unreadable stops the scan there; the unpickler then fails at that point.

    Raises:
        CheckpointError: a memo index out of sequence, or more than :data:`MAX_OPCODES` opcodes.
    """
    stored = 0
    count = 0
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(file), start=1):
            if op.name == "MEMOIZE":
                stored += 1
            elif op.name in _MEMO_PUTS:
                if type(arg) is not int or not 0 <= arg <= stored:
                    raise CheckpointError(
                        f"{source}: the pickle stores memo entry {arg} after only {stored} "
                        "entries; picklers number them in sequence, so this file was crafted. "
                        f"{_NOTHING_EXECUTED}"
                    )
                stored = max(stored, arg + 1)
            if count > MAX_OPCODES:
                raise CheckpointError(
                    f"{source}: the pickle holds more than {MAX_OPCODES:,} opcodes; "
                    "an EG3D snapshot holds far fewer."
                )
    except (ValueError, EOFError):
        # Unreadable from here on: the unpickler stops at the same opcode (after refusing any
        # unsafe global before it), and everything up to it has been checked.
        pass
    return count


def unpickle_official(file: BinaryIO, *, source: str) -> Any:
    """Unpickle an EG3D snapshot stream into inert records (see the module docstring).

    Args:
        file: a binary stream at the start of the pickle.
        source: the file name, used in error messages.

    Returns:
        The top-level object (for official files, a dict with ``'G_ema'`` and friends).

    Raises:
        UnsafeCheckpointError: the stream names a global outside :data:`ALLOWED_GLOBALS`.
        CheckpointError: the stream is truncated, malformed, or not a pickle.

    """
    try:
        return RestrictedUnpickler(file, source=source).load()
    except CheckpointError as exc:
        if exc.message.startswith(source):
            raise
        named = type(exc)(f"{source}: {exc.message}", hint=exc.hint)
        named.__dict__.update({k: v for k, v in vars(exc).items() if k not in ("message", "hint")})
        raise named from None
    except (EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(
            f"{source}: the pickle stream is truncated or corrupt ({type(exc).__name__}: {exc}).",
            hint="download or copy the checkpoint again and compare its size/sha256 with the source.",
        ) from None
    except (
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        RuntimeError,
        MemoryError,
    ) as exc:
        raise CheckpointError(
            f"{source}: the pickle could not be decoded safely ({type(exc).__name__}: {exc}). {_NOTHING_EXECUTED}",
        ) from None
