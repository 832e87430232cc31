"""Build-or-load of the EG3D kernels in ``sym3d_eg3d/ops/csrc`` with a content-keyed cache.

The kernels are compiled on first CUDA use with :func:`torch.utils.cpp_extension.load` (the
sources ship as package data) and cached on disk, so later processes only import the library.

Cache layout (root: ``$SYM3D_CACHE_DIR/kernels``, else ``$XDG_CACHE_HOME/sym3d/kernels``, else
``~/.cache/sym3d/kernels``)::

    <root>/<op>-<variant>-<digest16>/   a finished build; appears in one atomic rename
        meta.json                         the key in readable form, timing, library path
        build.log                         what was run and what the toolchain said
        src/                              the exact sources that were compiled
        build/                            ninja files, objects, the importable library
    <root>/failed/<op>-<variant>-<...>/  the last failed attempt for a key (build.log inside)
    <root>/.tmp-<...>-<pid>-<rand>/      a build in progress

The digest is the sha256 of a :class:`BuildKey`: the sha256 of the source and header bytes, the
torch version, the CUDA version torch was built with, the GPU architecture list, the Python
extension suffix (interpreter, ABI, platform), the build variant and the compiler flags. Any
change gives a new directory; stale ones are never reused and can be deleted at any time.

Concurrent builds of the same key (two processes starting together) each build in their own
``.tmp-*`` directory; the first to finish renames its directory into place, the other notices
the finished entry, keeps using the library it has loaded, and deletes its copy.

Environment: nothing here writes to ``os.environ``. The GPU architectures are passed to nvcc as
explicit ``-gencode`` flags (which :mod:`torch.utils.cpp_extension` then uses instead of reading
``TORCH_CUDA_ARCH_LIST``), so a build on a machine without a GPU needs no environment change. The
architecture list is, in order: the ``arch_list`` given to :class:`KernelRegistry`, the user's
``TORCH_CUDA_ARCH_LIST`` (read only), the compute capabilities of the visible devices.

Variants: ``"cuda"`` is what the ops use. ``"host"`` compiles only the ``.cpp`` files with
``-DSYM3D_HOST_ONLY``; its functions run the kernels' per-element code in plain loops on CPU
tensors, so the math can be tested against the reference without a GPU.

The process-level state is one object, :data:`KERNELS` (a :class:`KernelRegistry`): loaded
modules, remembered failures and which fallback warnings were already shown.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Literal, TextIO

import torch

from sym3d.errors import KernelBuildError, KernelFallbackWarning

if TYPE_CHECKING:  # pragma: no cover
    from sym3d.cli.doctor import DoctorCheck

__all__ = [
    "CSRC_DIR",
    "EXTENSIONS",
    "ExtensionSpec",
    "BuildKey",
    "BuildSettings",
    "KernelRegistry",
    "KERNELS",
    "build_or_load",
    "default_cache_dir",
    "parse_arch_list",
    "resolve_arch_list",
    "gencode_flags",
    "make_key",
    "kernel_doctor_checks",
]

logger = logging.getLogger("sym3d_eg3d.ops")

CSRC_DIR = Path(__file__).resolve().with_name("csrc")
CACHE_ENV = "SYM3D_CACHE_DIR"
ARCH_ENV = "TORCH_CUDA_ARCH_LIST"  # read, never written
Variant = Literal["cuda", "host"]
VARIANTS: tuple[str, ...] = ("cuda", "host")

# What a failed toolchain run can raise through torch.utils.cpp_extension.load: ninja/compiler
# failures and CUDA version mismatches (RuntimeError), a missing CUDA_HOME or compiler
# (OSError), a library that does not import (ImportError), a bad arch string (ValueError),
# a failing subprocess (SubprocessError). Anything else is a bug and propagates unchanged.
_BUILD_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError,
    OSError,
    ImportError,
    ValueError,
    subprocess.SubprocessError,
)


@dataclass(frozen=True)
class ExtensionSpec:
    """One extension module: its sources (compiled), headers (hashed) and exported function."""

    name: str
    sources: tuple[str, ...]
    headers: tuple[str, ...]
    entry: str

    def files(self) -> tuple[str, ...]:
        """Every file that goes into the hash and the build directory."""
        return self.sources + self.headers

    def compiled(self, variant: str) -> tuple[str, ...]:
        """The sources compiled for ``variant`` (the host variant skips the ``.cu`` files)."""
        if variant == "host":
            return tuple(s for s in self.sources if not s.endswith(".cu"))
        return self.sources


EXTENSIONS: Mapping[str, ExtensionSpec] = MappingProxyType(
    {
        "bias_act": ExtensionSpec(
            "bias_act", ("bias_act.cpp", "bias_act.cu"), ("bias_act.h", "common.h"), "bias_act"
        ),
        "upfirdn2d": ExtensionSpec(
            "upfirdn2d", ("upfirdn2d.cpp", "upfirdn2d.cu"), ("upfirdn2d.h", "common.h"), "upfirdn2d"
        ),
    }
)
"""The kernels, by op name."""


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildKey:
    """Everything a compiled library depends on; its digest names the cache directory."""

    extension: str
    variant: str
    source_sha256: str
    torch_version: str
    cuda_version: str
    arch_list: tuple[str, ...]
    python_ext_suffix: str
    cflags: tuple[str, ...]
    cuda_cflags: tuple[str, ...]

    @property
    def digest(self) -> str:
        """sha256 of all fields."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def dirname(self) -> str:
        """Cache directory name."""
        return f"{self.extension}-{self.variant}-{self.digest[:16]}"

    @property
    def module_name(self) -> str:
        """Python module name of the library (unique per key)."""
        return f"sym3d_{self.extension}_{self.variant}_{self.digest[:12]}"


def read_sources(spec: ExtensionSpec, source_dir: Path = CSRC_DIR) -> dict[str, bytes]:
    """The bytes of every file of ``spec``; raises ``OSError`` for a missing file."""
    return {name: (Path(source_dir) / name).read_bytes() for name in spec.files()}


def source_digest(files: Mapping[str, bytes]) -> str:
    """sha256 over file names and contents (order-independent)."""
    h = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


_ARCH_RE = re.compile(r"^(\d+)\.(\d+)([a-z]?)(\+ptx)?$", re.IGNORECASE)


def parse_arch_list(text: str) -> tuple[str, ...]:
    """Parse ``"8.0;8.6+PTX"`` (``;``, ``,`` or spaces between) into sorted unique entries.

    Raises:
        ValueError: an entry is not ``<major>.<minor>[a|f][+PTX]``.

    """
    items = [t for t in re.split(r"[;,\s]+", text.strip()) if t]
    out: set[str] = set()
    for item in items:
        m = _ARCH_RE.match(item)
        if not m:
            raise ValueError(f"{item!r} is not a CUDA architecture like '8.6' or '9.0+PTX'")
        out.add(f"{m.group(1)}.{m.group(2)}{m.group(3).lower()}{'+PTX' if m.group(4) else ''}")
    if not out:
        raise ValueError("the list is empty")
    return tuple(sorted(out, key=lambda a: (int(a.split(".")[0]), a)))


def gencode_flags(arch_list: tuple[str, ...]) -> list[str]:
    """The nvcc flags for ``arch_list``: SASS for each entry, plus PTX for ``+PTX`` entries."""
    flags: list[str] = []
    for arch in arch_list:
        base, ptx = (arch[:-4], True) if arch.endswith("+PTX") else (arch, False)
        num = base.replace(".", "")
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        if ptx:
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
    return flags


class _PreflightError(Exception):
    """A build cannot start (no toolkit, no arch, ...); carries a hint. Internal."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason, self.hint = reason, hint


def resolve_arch_list(explicit: tuple[str, ...] | str | None = None) -> tuple[tuple[str, ...], str]:
    """The GPU architectures to compile for and where they came from.

    Order: ``explicit``, the ``TORCH_CUDA_ARCH_LIST`` environment variable (read only; ``native``
    means the visible devices), the compute capabilities of the visible devices.

    Raises:
        _PreflightError: an entry is malformed, or nothing tells the architecture.

    """
    if explicit is not None:
        text = explicit if isinstance(explicit, str) else ";".join(explicit)
        try:
            return parse_arch_list(text), "given explicitly"
        except ValueError as exc:
            raise _PreflightError(
                f"bad GPU architecture list: {exc}", "use e.g. '8.6' or '8.0;8.6+PTX'."
            ) from None
    env = os.environ.get(ARCH_ENV, "").strip()
    if env and env.lower() != "native":
        try:
            return parse_arch_list(env), f"{ARCH_ENV}={env}"
        except ValueError as exc:
            raise _PreflightError(
                f"{ARCH_ENV}={env!r} is not understood: {exc}",
                f"set {ARCH_ENV} to numeric architectures such as '8.6' or '8.0;8.6+PTX'.",
            ) from None
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
        return tuple(sorted(f"{a}.{b}" for a, b in caps)), "visible CUDA devices"
    raise _PreflightError(
        f"cannot tell which GPU architecture to compile for: no CUDA device is visible and {ARCH_ENV} is not set",
        f"run on a machine with a GPU, or set {ARCH_ENV} (e.g. '8.6') to build for another machine.",
    )


def compile_flags(
    variant: str, arch_list: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(extra_cflags, extra_cuda_cflags)`` for a variant."""
    windows = sys.platform == "win32"
    opt = "/O2" if windows else "-O3"
    if variant == "host":
        return (opt, "/DSYM3D_HOST_ONLY" if windows else "-DSYM3D_HOST_ONLY"), ()
    return (opt,), ("-O3", *gencode_flags(arch_list))


def make_key(
    spec: ExtensionSpec,
    variant: str,
    arch_list: tuple[str, ...],
    files: Mapping[str, bytes],
) -> BuildKey:
    """The :class:`BuildKey` of ``spec`` built from ``files`` for ``variant`` and ``arch_list``."""
    cflags, cuda_cflags = compile_flags(variant, arch_list)
    return BuildKey(
        extension=spec.name,
        variant=variant,
        source_sha256=source_digest(files),
        torch_version=torch.__version__,
        cuda_version=(torch.version.cuda or "") if variant == "cuda" else "",
        arch_list=arch_list if variant == "cuda" else (),
        python_ext_suffix=str(
            sysconfig.get_config_var("EXT_SUFFIX") or sys.implementation.cache_tag
        ),
        cflags=cflags,
        cuda_cflags=cuda_cflags,
    )


def default_cache_dir() -> Path:
    """``$SYM3D_CACHE_DIR/kernels``, else ``$XDG_CACHE_HOME/sym3d/kernels``, else ``~/.cache/...``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser() / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sym3d" / "kernels"


# ---------------------------------------------------------------------------------------------
# Toolchain inspection (shared by the build log, the build and `sym3d doctor`)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Toolchain:
    """What :mod:`torch.utils.cpp_extension` will use. ``problems`` block a CUDA build."""

    cuda_home: str | None
    nvcc: str | None
    nvcc_version: str | None
    has_cuda_headers: bool
    ninja: bool
    problems: tuple[tuple[str, str], ...] = ()  # (reason, hint)
    notes: tuple[str, ...] = ()


def _find_cuda_header(home: Path) -> bool:
    if (home / "include" / "cuda_runtime.h").is_file():
        return True
    return any(home.glob("targets/*/include/cuda_runtime.h"))


def _nvcc_version(nvcc: str) -> str | None:
    try:
        out = subprocess.run(
            [nvcc, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+\.\d+)", out.stdout)
    return m.group(1) if m else None


def inspect_toolchain(variant: str = "cuda") -> Toolchain:
    """Inspect ninja and, for the CUDA variant, torch's CUDA build and CUDA_HOME.

    Imports :mod:`torch.utils.cpp_extension` (which decides CUDA_HOME when imported).
    """
    from torch.utils import cpp_extension

    problems: list[tuple[str, str]] = []
    notes: list[str] = []
    ninja = bool(cpp_extension.is_ninja_available())
    if not ninja:
        problems.append(
            (
                "the ninja build tool is not installed",
                "pip install ninja (it is part of sym3d[eg3d]).",
            )
        )
    if variant == "host":
        return Toolchain(None, None, None, False, ninja, tuple(problems), tuple(notes))

    cuda_home = cpp_extension.CUDA_HOME
    nvcc = nvcc_version = None
    headers = False
    if torch.version.cuda is None:
        problems.append(
            (
                f"torch {torch.__version__} is a CPU-only build",
                "install a CUDA build of torch (see pytorch.org).",
            )
        )
    if not cuda_home:
        problems.append(
            (
                "no CUDA toolkit (nvcc) was found",
                f"install the CUDA toolkit {torch.version.cuda or ''} and set CUDA_HOME to its root before starting Python.",
            )
        )
    else:
        home = Path(cuda_home)
        candidate = home / "bin" / ("nvcc.exe" if sys.platform == "win32" else "nvcc")
        if candidate.exists():
            nvcc = str(candidate)
            nvcc_version = _nvcc_version(nvcc)
        else:
            problems.append(
                (
                    f"CUDA_HOME={cuda_home} has no bin/nvcc",
                    "set CUDA_HOME to the CUDA toolkit root before starting Python.",
                )
            )
        headers = _find_cuda_header(home)
        if not headers:
            better = next(
                (
                    p
                    for p in (Path("/usr/local/cuda"), home / "cuda")
                    if p.is_dir() and _find_cuda_header(p)
                ),
                None,
            )
            fix = f" (for example CUDA_HOME={better})" if better else ""
            notes.append(
                f"CUDA_HOME={cuda_home} (as torch found it) has no include/cuda_runtime.h; "
                f"it is probably not the toolkit root. Set CUDA_HOME to the root{fix} before starting Python."
            )
        if nvcc_version and torch.version.cuda:
            if nvcc_version.split(".")[0] != torch.version.cuda.split(".")[0]:
                notes.append(
                    f"nvcc {nvcc_version} and torch's CUDA {torch.version.cuda} differ in the major version; "
                    "torch refuses such builds. Install the matching toolkit or torch."
                )
    return Toolchain(cuda_home, nvcc, nvcc_version, headers, ninja, tuple(problems), tuple(notes))


# ---------------------------------------------------------------------------------------------
# Build or load
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildSettings:
    """Where and how a :class:`KernelRegistry` builds: ``None`` fields mean "the default"."""

    cache_dir: Path | None = None
    variant: str = "cuda"
    arch_list: tuple[str, ...] | str | None = None
    source_dir: Path = CSRC_DIR

    def root(self) -> Path:
        """The cache root (resolved now, so ``SYM3D_CACHE_DIR`` is read at build time)."""
        return Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()


def _summary(text: str, limit: int = 240) -> str:
    """The most telling line of a toolchain error: a compiler diagnostic if there is one."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    generic = ("Error building extension", "collect2: error: ld returned", "ninja: build stopped")
    lines = [ln for ln in lines if not ln.startswith(generic)] or lines
    for pattern in (
        r"\berror\b\s*:|fatal error",
        r"cannot find|not found|No such file",
        r"FAILED|\berror\b",
    ):
        for ln in lines:
            if re.search(pattern, ln, re.IGNORECASE):
                return ln[:limit]
    return (lines[0] if lines else "unknown error")[:limit]


def _compile_and_import(
    module_name: str,
    sources: list[str],
    include_dir: str,
    build_dir: str,
    cflags: list[str],
    cuda_cflags: list[str],
    with_cuda: bool,
) -> ModuleType:
    """Run :func:`torch.utils.cpp_extension.load` (the only call into the toolchain)."""
    from torch.utils import cpp_extension

    return cpp_extension.load(
        name=module_name,
        sources=sources,
        extra_cflags=cflags,
        extra_cuda_cflags=cuda_cflags or None,
        extra_include_paths=[include_dir],
        build_directory=build_dir,
        verbose=False,  # the toolchain output then comes back inside the exception on failure
        with_cuda=with_cuda,
        is_python_module=True,
    )


def _import_library(module_name: str, path: Path) -> ModuleType:
    """Import a compiled extension from ``path`` (the cache hit path; no toolchain needed)."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not an importable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[module_name] = module
    return module


def _rmtree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except OSError as exc:
        logger.debug("could not remove %s: %s", path, exc)


def _log_header(
    log: TextIO,
    spec: ExtensionSpec,
    key: BuildKey | None,
    settings: BuildSettings,
    extra: Mapping[str, str],
) -> None:
    log.write(f"sym3d kernel build: {spec.name} (variant {settings.variant})\n")
    log.write(f"started: {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n")
    log.write(f"python: {sys.version.split()[0]} ({sys.executable})\n")
    log.write(f"torch: {torch.__version__} (CUDA {torch.version.cuda})\n")
    log.write(f"cache root: {settings.root()}\n")
    for k, v in extra.items():
        log.write(f"{k}: {v}\n")
    if key is not None:
        log.write("key:\n" + json.dumps(asdict(key), indent=1) + f"\ndigest: {key.digest}\n")
    log.write("\n")
    log.flush()


def _fail(
    spec: ExtensionSpec, tmp: Path, failed_dir: Path, reason: str, hint: str
) -> KernelBuildError:
    """Move the attempt to ``failed/`` (replacing an older one) and make the error to raise."""
    target = failed_dir
    try:
        failed_dir.parent.mkdir(parents=True, exist_ok=True)
        if failed_dir.exists():
            _rmtree(failed_dir)
        os.replace(tmp, failed_dir)
    except OSError as exc:  # another process is doing the same; keep ours where it is
        logger.debug("could not move %s to %s: %s", tmp, failed_dir, exc)
        target = tmp
    return KernelBuildError(
        f"building the CUDA kernel {spec.name!r} failed: {reason}.",
        log_path=str(target / "build.log"),
        hint=hint,
    )


_DEFAULT_HINT = (
    "Read the build log; `sym3d doctor` checks the toolchain. impl='ref' (or SYM3D_EG3D_IMPL=ref) "
    "uses the pure-PyTorch reference instead."
)


def build_or_load(spec: ExtensionSpec, settings: BuildSettings) -> ModuleType:
    """Load ``spec`` from the cache, building it first when the cache has no entry for its key.

    Raises:
        KernelBuildError: the build could not start or failed; ``log_path`` has the details.

    """
    root = settings.root()
    if settings.variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {settings.variant!r}")

    # The key needs the sources and the architectures; failing to get them is a failed build too.
    try:
        files = read_sources(spec, settings.source_dir)
        if settings.variant == "cuda":
            arch_list, arch_origin = resolve_arch_list(settings.arch_list)
        else:
            arch_list, arch_origin = (), "not used (host variant)"
    except (_PreflightError, OSError) as exc:
        reason = (
            exc.reason
            if isinstance(exc, _PreflightError)
            else f"cannot read the kernel sources: {exc}"
        )
        hint = (
            exc.hint
            if isinstance(exc, _PreflightError)
            else "reinstall sym3d; the .cpp/.cu/.h files ship with it."
        )
        tmp = root / f".tmp-{spec.name}-{settings.variant}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True, exist_ok=True)
        with open(tmp / "build.log", "w", encoding="utf-8") as log:
            _log_header(log, spec, None, settings, {"source dir": str(settings.source_dir)})
            log.write(f"FAILED before compiling: {reason}\nhint: {hint}\n")
        raise _fail(
            spec, tmp, root / "failed" / f"{spec.name}-{settings.variant}-preflight", reason, hint
        ) from None

    key = make_key(spec, settings.variant, arch_list, files)
    final = root / key.dirname
    if (final / "meta.json").is_file():
        return _load_cached(spec, key, final)
    return _build(spec, key, files, settings, arch_origin)


def _load_cached(spec: ExtensionSpec, key: BuildKey, final: Path) -> ModuleType:
    try:
        meta = json.loads((final / "meta.json").read_text(encoding="utf-8"))
        module = _import_library(meta["module_name"], final / meta["library"])
    except (OSError, ImportError, KeyError, ValueError) as exc:
        raise KernelBuildError(
            f"the cached CUDA kernel {spec.name!r} in {final} cannot be loaded: {exc}.",
            log_path=str(final / "build.log"),
            hint=f"delete {final} and it will be rebuilt on next use.",
        ) from exc
    if not hasattr(module, spec.entry):
        raise KernelBuildError(
            f"the cached CUDA kernel {spec.name!r} in {final} does not export {spec.entry!r}.",
            log_path=str(final / "build.log"),
            hint=f"delete {final} and it will be rebuilt on next use.",
        )
    logger.debug("loaded %s from %s", spec.name, final)
    return module


def _build(
    spec: ExtensionSpec,
    key: BuildKey,
    files: Mapping[str, bytes],
    settings: BuildSettings,
    arch_origin: str,
) -> ModuleType:
    root = settings.root()
    final = root / key.dirname
    tmp = root / f".tmp-{key.dirname}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    src, build_dir = tmp / "src", tmp / "build"
    src.mkdir(parents=True)
    build_dir.mkdir()
    for name, data in files.items():  # compile exactly the bytes that were hashed
        (src / name).write_bytes(data)
    log_path = tmp / "build.log"
    failed_dir = root / "failed" / key.dirname

    toolchain = inspect_toolchain(settings.variant)
    with open(log_path, "w", encoding="utf-8") as log:
        _log_header(
            log,
            spec,
            key,
            settings,
            {
                "arch list": f"{';'.join(key.arch_list) or '-'} ({arch_origin})",
                "CUDA_HOME (as torch found it)": str(toolchain.cuda_home),
                "nvcc": f"{toolchain.nvcc} (release {toolchain.nvcc_version})",
                "ninja": str(toolchain.ninja),
                "MAX_JOBS": os.environ.get("MAX_JOBS", "(unset)"),
            },
        )
        for note in toolchain.notes:
            log.write(f"note: {note}\n")
        if toolchain.problems:
            reason, hint = toolchain.problems[0]
            for r, h in toolchain.problems:
                log.write(f"FAILED before compiling: {r}\nhint: {h}\n")
            log.close()
            raise _fail(spec, tmp, failed_dir, reason, hint)

        logger.info(
            "building the %s kernel (%s) on first use; this takes a few minutes. Log: %s",
            spec.name,
            settings.variant,
            final / "build.log",
        )
        handler = logging.StreamHandler(log)
        torch_logger = logging.getLogger("torch.utils.cpp_extension")
        torch_logger.addHandler(handler)
        t0 = time.monotonic()
        try:
            module = _compile_and_import(
                key.module_name,
                [str(src / s) for s in spec.compiled(settings.variant)],
                str(src),
                str(build_dir),
                list(key.cflags),
                list(key.cuda_cflags),
                settings.variant == "cuda",
            )
        except _BUILD_ERRORS as exc:
            log.write(f"\nFAILED after {time.monotonic() - t0:.1f} s:\n{exc}\n\n")
            log.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            log.close()
            hint = _DEFAULT_HINT
            if toolchain.notes:
                hint = toolchain.notes[0] + " " + hint
            raise _fail(spec, tmp, failed_dir, _summary(str(exc)), hint) from exc
        finally:
            torch_logger.removeHandler(handler)
        seconds = time.monotonic() - t0
        if not hasattr(module, spec.entry):
            log.write(f"\nFAILED: the library does not export {spec.entry!r}\n")
            log.close()
            raise _fail(
                spec,
                tmp,
                failed_dir,
                f"the built library does not export {spec.entry!r}",
                _DEFAULT_HINT,
            )
        library = Path(module.__file__).resolve().relative_to(tmp.resolve())
        log.write(f"OK: built in {seconds:.1f} s: {library}\n")

    meta = {
        "status": "ok",
        "key": asdict(key),
        "digest": key.digest,
        "module_name": module.__name__,  # torch renames it (name_v1) when asked to build twice in a process
        "library": library.as_posix(),
        "build_seconds": round(seconds, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    try:
        os.rename(tmp, final)  # atomic: the entry appears complete or not at all
    except OSError as exc:
        if (final / "meta.json").is_file():
            logger.debug("another process finished %s first; using ours and dropping it", final)
            _rmtree(tmp)  # the library stays mapped in this process
        else:
            logger.warning(
                "could not move the kernel build %s into the cache at %s: %s", tmp, final, exc
            )
    return module


# ---------------------------------------------------------------------------------------------
# Process-level registry
# ---------------------------------------------------------------------------------------------


Builder = Callable[[ExtensionSpec, BuildSettings], ModuleType]


@dataclass
class KernelRegistry:
    """Loaded kernel modules of this process, remembered build failures, warnings shown.

    A failed build is not retried in the same process (it takes minutes); :meth:`reset`
    forgets failures and modules so the next use tries again.

    Args:
        cache_dir: cache root; ``None``: :func:`default_cache_dir` at build time.
        variant: ``"cuda"`` (the ops) or ``"host"`` (CPU test build).
        arch_list: GPU architectures; ``None``: ``TORCH_CUDA_ARCH_LIST`` or the visible devices.
        source_dir: where the sources are (tests point it elsewhere).
        builder: the build-or-load function (tests replace it).

    """

    cache_dir: Path | None = None
    variant: str = "cuda"
    arch_list: tuple[str, ...] | str | None = None
    source_dir: Path = CSRC_DIR
    builder: Builder = build_or_load
    _modules: dict[str, ModuleType] = field(default_factory=dict, init=False, repr=False)
    _failures: dict[str, KernelBuildError] = field(default_factory=dict, init=False, repr=False)
    _warned: set[str] = field(default_factory=set, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def settings(self) -> BuildSettings:
        """The :class:`BuildSettings` this registry builds with."""
        return BuildSettings(self.cache_dir, self.variant, self.arch_list, Path(self.source_dir))

    def get(self, name: str) -> ModuleType:
        """The kernel module for op ``name``, building it on first use.

        Raises:
            KeyError: ``name`` is not in :data:`EXTENSIONS`.
            KernelBuildError: the build failed now or earlier in this process.

        """
        module = self._modules.get(name)
        if module is not None:
            return module
        spec = EXTENSIONS[name]
        with self._lock:
            if name in self._modules:
                return self._modules[name]
            if name in self._failures:
                raise self._failures[name]
            try:
                module = self.builder(spec, self.settings())
            except KernelBuildError as exc:
                self._failures[name] = exc
                raise
            self._modules[name] = module
            return module

    def get_or_warn(self, name: str) -> ModuleType | None:
        """:meth:`get`, but a build failure returns ``None`` after one warning per op and process."""
        try:
            return self.get(name)
        except KernelBuildError as exc:
            with self._lock:
                first = name not in self._warned
                self._warned.add(name)
            if first:
                warnings.warn(
                    f"{exc.message} Using the slower pure-PyTorch reference for {name} on CUDA tensors "
                    "in this process. Pass impl='ref' (or set SYM3D_EG3D_IMPL=ref) to choose it "
                    "explicitly, or impl='cuda' to make this an error.",
                    KernelFallbackWarning,
                    stacklevel=4,
                )
            return None

    def failure(self, name: str) -> KernelBuildError | None:
        """The remembered build failure of ``name``, if any."""
        return self._failures.get(name)

    def loaded(self) -> dict[str, ModuleType]:
        """The modules loaded so far, by op name."""
        return dict(self._modules)

    def cached_dir(self, name: str) -> Path | None:
        """The finished cache directory for ``name`` under the current settings, or ``None``.

        Raises:
            KernelBuildError: never; an unresolvable key just gives ``None``.

        """
        s = self.settings()
        try:
            files = read_sources(EXTENSIONS[name], s.source_dir)
            arch = resolve_arch_list(s.arch_list)[0] if s.variant == "cuda" else ()
        except (_PreflightError, OSError):
            return None
        final = s.root() / make_key(EXTENSIONS[name], s.variant, arch, files).dirname
        return final if (final / "meta.json").is_file() else None

    def build_all(self) -> dict[str, ModuleType]:
        """Build (or load) every kernel now; raises the first :class:`KernelBuildError`."""
        return {name: self.get(name) for name in EXTENSIONS}

    def reset(self) -> None:
        """Forget loaded modules, failures and shown warnings (the next use builds or loads again)."""
        with self._lock:
            self._modules.clear()
            self._failures.clear()
            self._warned.clear()


KERNELS = KernelRegistry()
"""The registry the public ops use."""


# ---------------------------------------------------------------------------------------------
# sym3d doctor
# ---------------------------------------------------------------------------------------------


def kernel_doctor_checks() -> list[DoctorCheck]:
    """``sym3d doctor`` lines for the EG3D kernels. All optional: the reference always works."""
    from sym3d.cli.doctor import DoctorCheck

    checks: list[DoctorCheck] = []
    cuda_torch = torch.version.cuda is not None
    checks.append(
        DoctorCheck(
            "EG3D kernels: CUDA build of torch",
            cuda_torch,
            f"torch {torch.__version__}, CUDA {torch.version.cuda}"
            if cuda_torch
            else f"torch {torch.__version__} is CPU-only",
            ""
            if cuda_torch
            else "optional: install a CUDA build of torch to use the EG3D CUDA kernels.",
        )
    )
    tc = inspect_toolchain("cuda")
    found = f"nvcc {tc.nvcc} (release {tc.nvcc_version})" if tc.nvcc else "no nvcc"
    detail = "; ".join(
        [f"{found}, CUDA_HOME={tc.cuda_home} (as torch found it)"] + [r for r, _ in tc.problems]
    )
    fix = tc.problems[0][1] if tc.problems else (tc.notes[0] if tc.notes else "")
    ok = tc.nvcc is not None and not tc.problems and not tc.notes
    checks.append(DoctorCheck("EG3D kernels: nvcc and CUDA_HOME", ok, detail, fix))

    try:
        arch, origin = resolve_arch_list(KERNELS.arch_list)
        names = ""
        if torch.cuda.is_available():
            names = ", ".join(
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            )
        checks.append(
            DoctorCheck(
                "EG3D kernels: GPU architecture",
                True,
                f"{';'.join(arch)} ({origin}){': ' + names if names else ''}",
            )
        )
    except _PreflightError as exc:
        checks.append(DoctorCheck("EG3D kernels: GPU architecture", False, exc.reason, exc.hint))
        arch = None

    root = KERNELS.settings().root()
    for name in EXTENSIONS:
        label = f"EG3D kernels: {name} build"
        if arch is None:
            checks.append(
                DoctorCheck(
                    label,
                    False,
                    "no GPU architecture to key the cache by",
                    "see the GPU architecture line.",
                )
            )
            continue
        cached = KERNELS.cached_dir(name)
        if cached is not None:
            checks.append(DoctorCheck(label, True, f"cached in {cached}"))
            continue
        files = read_sources(EXTENSIONS[name])
        key = make_key(EXTENSIONS[name], "cuda", arch, files)
        failed_log = root / "failed" / key.dirname / "build.log"
        detail = (
            f"last build failed; log: {failed_log}"
            if failed_log.is_file()
            else f"not built yet (cache: {root})"
        )
        checks.append(
            DoctorCheck(
                label,
                False,
                detail,
                "built automatically on first CUDA use (a few minutes); to build now: "
                "python -m sym3d_eg3d.ops",
            )
        )
    return checks


def main(argv: list[str] | None = None) -> int:
    """``python -m sym3d_eg3d.ops [--arch 8.6] [--variant cuda|host] [--cache-dir D] [op ...]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sym3d_eg3d.ops", description="Build the EG3D kernels now."
    )
    parser.add_argument(
        "ops", nargs="*", help=f"ops to build: {', '.join(EXTENSIONS)} (default: all)"
    )
    parser.add_argument(
        "--arch", default=None, help="GPU architectures, e.g. '8.6' or '8.0;8.6+PTX'"
    )
    parser.add_argument("--variant", default="cuda", choices=VARIANTS)
    parser.add_argument("--cache-dir", default=None, type=Path)
    args = parser.parse_args(argv)
    unknown = [op for op in args.ops if op not in EXTENSIONS]
    if unknown:
        parser.error(f"unknown op(s) {', '.join(unknown)}; choose from {', '.join(EXTENSIONS)}")
    registry = KernelRegistry(cache_dir=args.cache_dir, variant=args.variant, arch_list=args.arch)
    status = 0
    for name in args.ops or list(EXTENSIONS):
        t0 = time.monotonic()
        try:
            module = registry.get(name)
        except KernelBuildError as exc:
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            status = 1
            continue
        where = registry.cached_dir(name) or module.__file__
        print(f"{name}: ok in {time.monotonic() - t0:.1f} s: {where}")
    return status
