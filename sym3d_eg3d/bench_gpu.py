"""``sym3d bench gpu``: the GPU path measured in one run, written as one JSON and a markdown table.

Parts, each with its own time cap (a part that would start past its cap is skipped, with the
reason, and the JSON is rewritten after every part so a killed run keeps what it measured):

* ``kernels``: the ``gpu``-marked pytest tests (CUDA ``bias_act``/``upfirdn2d`` built from our
  sources, values and gradients against the reference ops), run in a subprocess; pass/fail counts.
* ``synthesis``: :meth:`EG3DGenerator.render` forward and forward + backward (w.r.t. every
  parameter) for 1, 2 and 6 views, with the custom kernels (``impl="cuda"``) and without
  (``impl="ref"``); peak memory.
* ``engine``: ms per step of stage 1 (``pti``: one view; ``spi``: original + mirror) and of stage
  2 plain and auxiliary steps, with the stage-1 mirror ratio and the 6-view synthesis ratio.
* ``inversion``: one whole ``spi`` inversion (official step counts 500 + 1000), measured when it
  fits the cap, else extrapolated from the timed steps (and marked ``extrapolated``).
* ``options``: TF32, bf16 autocast, channels-last, ``torch.compile`` of the backbone and
  super-resolution, each timed against the baseline with the max abs image difference, and
  the host-device synchronisations of one forward + backward
  (``torch.cuda.set_sync_debug_mode("warn")``).

On a CUDA device the config is the released FFHQ512 architecture (random weights) at neural
resolution 128 with the 512 px super-resolution. ``smoke=True`` runs the same code on a tiny
config (``small`` at neural resolution 8, few steps) so every part is exercised on the CPU; the
CUDA-only parts and rows are then ``skipped`` with the reason in the JSON.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from sym3d.camera import look_at

__all__ = ["SCHEMA", "PARTS", "GpuBenchSettings", "run_gpu_bench", "markdown_report"]

SCHEMA = "sym3d.bench.gpu/1"
PARTS = ("kernels", "synthesis", "engine", "inversion", "options")
"""Part names, in run order (keys of ``report["parts"]``)."""

OFFICIAL_STEPS = (500, 1000)
"""SPI's step counts: stage 1 (latent), stage 2 (generator fine-tuning)."""


class GpuBenchSettings:
    """What one run measures; :meth:`for_device` picks the full or the smoke settings.

    Attributes:
        config: EG3D config name (:data:`sym3d_eg3d.bench.CONFIGS`).
        neural_resolution: neural rendering resolution (rays per side).
        views: view counts for the synthesis part.
        repeats: timed rounds (median) after one warm-up.
        latent_steps, tune_steps: steps per preset in the engine part (first one is warm-up).
        overrides: engine config overrides (``--set``).
        caps_s: time cap per part, seconds.
    """

    def __init__(self, *, smoke: bool, device: torch.device) -> None:
        self.smoke = smoke
        self.device = device
        if smoke:
            self.config, self.neural_resolution, self.views, self.repeats = "small", 8, (1, 2), 1
            self.latent_steps, self.tune_steps = 2, 5
            self.overrides = ["perceptual=mse", "latent.mean_samples=16"]
            self.caps_s = {
                "kernels": 60.0,
                "synthesis": 60.0,
                "engine": 120.0,
                "inversion": 60.0,
                "options": 60.0,
            }
        else:
            self.config, self.neural_resolution, self.views, self.repeats = (
                "ffhq512",
                128,
                (1, 2, 6),
                5,
            )
            self.latent_steps, self.tune_steps = 9, 13
            self.overrides = []
            self.caps_s = {
                "kernels": 150.0,
                "synthesis": 75.0,
                "engine": 75.0,
                "inversion": 60.0,
                "options": 75.0,
            }

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-able values (the report's ``settings``)."""
        return {
            "config": self.config,
            "neural_resolution": self.neural_resolution,
            "views": list(self.views),
            "repeats": self.repeats,
            "latent_steps": self.latent_steps,
            "tune_steps": self.tune_steps,
            "overrides": list(self.overrides),
            "caps_s": dict(self.caps_s),
            "smoke": self.smoke,
            "device": str(self.device),
        }


def _skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason}


def _device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "type": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gb=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
        )
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


# ---------------------------------------------------------------------------------------------
# kernels


def _kernels_part(
    settings: GpuBenchSettings, tests_dir: Path | None, cap_s: float
) -> dict[str, Any]:
    """Run the ``gpu``-marked tests in a subprocess and count outcomes from its JUnit XML."""
    if settings.device.type != "cuda":
        return _skipped("needs a CUDA device: the CUDA kernels are only built and run there")
    if tests_dir is None or not (tests_dir / "eg3d" / "test_ops_cuda.py").is_file():
        return _skipped(
            f"the test folder was not found ({tests_dir}); pass --tests PATH of a checkout"
        )
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "gpu",
            f"--junitxml={junit}",
            str(tests_dir / "eg3d"),
        ]
        try:
            proc = subprocess.run(
                cmd,
                cwd=tests_dir.parent,
                capture_output=True,
                text=True,
                timeout=cap_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {
                "status": "failed",
                "reason": f"the gpu tests ran past their cap of {cap_s:.0f} s",
            }
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        failures: list[str] = []
        if junit.is_file():
            for case in ET.parse(junit).getroot().iter("testcase"):
                name = f"{case.get('classname')}::{case.get('name')}"
                if case.find("failure") is not None or case.find("error") is not None:
                    counts["failed"] += 1
                    failures.append(name)
                elif case.find("skipped") is not None:
                    counts["skipped"] += 1
                else:
                    counts["passed"] += 1
    ok = proc.returncode == 0 and counts["failed"] == 0 and counts["passed"] > 0
    return {
        "status": "ok" if ok else "failed",
        "reason": "" if ok else f"pytest exit code {proc.returncode}",
        "command": " ".join(cmd[1:]),
        **counts,
        "failures": failures[:20],
        "output_tail": proc.stdout[-2000:] + proc.stderr[-1000:],
    }


# ---------------------------------------------------------------------------------------------
# synthesis


def _build(settings: GpuBenchSettings, impl: str) -> Any:
    from sym3d_eg3d.adapter import build_eg3d
    from sym3d_eg3d.bench import load_config_kwargs

    return build_eg3d(
        init_kwargs=load_config_kwargs(settings.config),
        neural_resolution=settings.neural_resolution,
        impl=impl,
        device=settings.device,
    )


def _inputs(gen: Any, views: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
    ws = gen.mapping(z, look_at(0.0, 0.0, device=device)[None]).detach()
    cams = look_at(torch.linspace(-0.5, 0.5, views), 0.0, device=device)[None]
    return ws, cams


def _synthesis_part(settings: GpuBenchSettings, deadline: float) -> dict[str, Any]:
    from sym3d_eg3d.bench import _forward, _forward_backward, _peak_mb, _time_interleaved

    dev = settings.device
    rows: list[dict[str, Any]] = []
    skipped_rows: list[dict[str, Any]] = []
    impls = ("cuda", "ref")
    for impl in impls:
        if impl == "cuda" and dev.type != "cuda":
            skipped_rows.append({"impl": impl, "reason": "custom CUDA kernels need a CUDA device"})
            continue
        if time.monotonic() > deadline:
            skipped_rows.append({"impl": impl, "reason": "time cap reached before this row"})
            continue
        gen = _build(settings, impl)
        params = list(gen.tunable_parameters("all").values())
        fwd, fb = [], []
        for v in settings.views:
            ws, cams = _inputs(gen, v, dev)
            fwd.append(_forward(gen, ws, cams, settings.neural_resolution))
            fb.append(_forward_backward(gen, ws, cams, settings.neural_resolution, params))
        f_ms = _time_interleaved(fwd, dev, settings.repeats)
        fb_ms = _time_interleaved(fb, dev, settings.repeats)
        for k, v in enumerate(settings.views):
            rows.append(
                {
                    "impl": impl,
                    "views": v,
                    "forward_ms": f_ms[k],
                    "forward_backward_ms": fb_ms[k],
                    "peak_forward_mb": _peak_mb(fwd[k], dev),
                    "peak_backward_mb": _peak_mb(fb[k], dev),
                }
            )
        del gen, params, fwd, fb
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    ratios = {}
    for impl in impls:
        by_views = {r["views"]: r for r in rows if r["impl"] == impl}
        if 1 in by_views:
            for v, r in by_views.items():
                if v != 1:
                    ratios[f"{impl}: {v} views / 1 view (fwd+bwd)"] = (
                        r["forward_backward_ms"] / by_views[1]["forward_backward_ms"]
                    )
    status = "ok" if rows else "skipped"
    return {
        "status": status,
        "reason": "" if rows else "no row ran",
        "config": settings.config,
        "neural_resolution": settings.neural_resolution,
        "rows": rows,
        "skipped_rows": skipped_rows,
        "ratios": ratios,
        "peak_memory": "torch.cuda.max_memory_allocated above the level before the call"
        if dev.type == "cuda"
        else "resident set size above the level before the call",
    }


# ---------------------------------------------------------------------------------------------
# engine + inversion


def _engine_rows(settings: GpuBenchSettings, gen: Any, overrides: list[str]) -> list[Any]:
    from sym3d.engine.bench import bench_engine

    return bench_engine(
        gen,
        presets=("pti", "spi"),
        latent_steps=settings.latent_steps,
        tune_steps=settings.tune_steps,
        overrides=overrides,
        device=settings.device,
    )


def _engine_part(settings: GpuBenchSettings, gen: Any) -> dict[str, Any]:
    from sym3d.errors import MissingDependencyError

    overrides = list(settings.overrides)
    note = ""
    try:
        timings = _engine_rows(settings, gen, overrides)
    except MissingDependencyError as exc:
        # The default perceptual loss needs the offline LPIPS weights: measure without, and say so.
        overrides.append("perceptual=mse")
        note = f"perceptual=mse because the default LPIPS is unavailable: {exc}"
        timings = _engine_rows(settings, gen, overrides)
    rows = [
        {
            "preset": t.preset,
            "stage1_views": t.views_latent,
            "stage1_ms": t.latent_ms,
            "stage2_plain_ms": t.tune_plain_ms,
            "stage2_aux_ms": t.tune_aux_ms,
            "stage2_mean_ms": t.tune_mean_ms,
        }
        for t in timings
    ]
    by = {r["preset"]: r for r in rows}
    ratios = {}
    if "pti" in by and "spi" in by:
        ratios["stage 1 with mirror / one view (spi / pti)"] = (
            by["spi"]["stage1_ms"] / by["pti"]["stage1_ms"]
        )
        ratios["stage 2 mean step spi / pti"] = (
            by["spi"]["stage2_mean_ms"] / by["pti"]["stage2_mean_ms"]
        )
    return {
        "status": "ok",
        "reason": note,
        "overrides": overrides,
        "rows": rows,
        "ratios": ratios,
        "steps": {
            "latent": settings.latent_steps,
            "tune": settings.tune_steps,
            "excluded_warmup": 1,
        },
    }


def _extrapolate_spi(engine: dict[str, Any], aux_every: int) -> float | None:
    spi = next((r for r in engine.get("rows", []) if r["preset"] == "spi"), None)
    if spi is None or any(
        math.isnan(spi[k]) for k in ("stage1_ms", "stage2_plain_ms", "stage2_aux_ms")
    ):
        return None
    latent, tune = OFFICIAL_STEPS
    aux = tune // aux_every
    return (
        latent * spi["stage1_ms"]
        + aux * spi["stage2_aux_ms"]
        + (tune - aux) * spi["stage2_plain_ms"]
    ) / 1000.0


def _inversion_part(
    settings: GpuBenchSettings, gen: Any, engine: dict[str, Any], cap_s: float
) -> dict[str, Any]:
    """A whole ``spi`` inversion (500 + 1000 steps) if its extrapolation fits the cap, else that."""
    import sym3d
    from sym3d.config import TuneStageConfig
    from sym3d.image import from_model_range

    aux_every = TuneStageConfig().aux_every
    estimate = _extrapolate_spi(engine, aux_every)
    base = {
        "latent_steps": OFFICIAL_STEPS[0],
        "tune_steps": OFFICIAL_STEPS[1],
        "aux_every": aux_every,
        "extrapolation_s": estimate,
        "extrapolation": "500 x stage-1 ms + 250 x stage-2 auxiliary ms + 750 x stage-2 plain ms "
        "(medians of the engine part; setup such as the mean latent not included)",
    }
    if estimate is None:
        return {
            **base,
            "status": "skipped",
            "reason": "the engine part has no spi timings to extrapolate from",
        }
    if settings.smoke or estimate > 0.8 * cap_s:
        why = (
            "smoke run"
            if settings.smoke
            else f"the estimate exceeds 80% of the part's cap ({cap_s:.0f} s)"
        )
        return {**base, "status": "extrapolated", "reason": f"not run: {why}", "seconds": estimate}
    dev = settings.device
    cam = look_at(0.5, 0.0, device=dev)[None]
    with torch.no_grad():
        ws, _ = _inputs(gen, 1, dev)
        target = from_model_range(gen.render(ws, cam[:, None]).image[:, 0]).clamp(0, 1)
    over = [
        f"latent.steps={OFFICIAL_STEPS[0]}",
        f"tune.steps={OFFICIAL_STEPS[1]}",
        "tune.early_stop=0",
    ]
    over += list(engine.get("overrides", []))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    sym3d.invert(
        target, cam, generator=gen, preset="spi", overrides=over, device=dev, progress="off"
    )
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    return {**base, "status": "measured", "reason": "", "seconds": seconds}


# ---------------------------------------------------------------------------------------------
# options


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _channels_last(gen: Any) -> Any:
    """A copy whose synthesis blocks run channels-last (on CUDA; the CPU forces fp32 contiguous)."""
    clone = copy.deepcopy(gen)
    for module in clone.modules():
        if hasattr(module, "channels_last") and isinstance(module.channels_last, bool):
            module.channels_last = True
    return clone


def _compiled(gen: Any) -> Any:
    """A copy with the backbone's synthesis network and the super-resolution compiled."""
    clone = copy.deepcopy(gen)
    clone.G.backbone.synthesis = torch.compile(clone.G.backbone.synthesis)
    clone.G.superresolution = torch.compile(clone.G.superresolution)
    return clone


def _sync_check(gen: Any, settings: GpuBenchSettings) -> dict[str, Any]:
    """Host-device synchronisations in one render forward + backward (sync debug mode warn)."""
    dev = settings.device
    ws, cams = _inputs(gen, 1, dev)
    params = list(gen.tunable_parameters("all").values())
    for p in params:
        p.requires_grad_(True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = gen.render(ws, cams, neural_resolution=settings.neural_resolution)
            (out.image.square().mean() + out.depth.mean()).backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
            for p in params:
                p.requires_grad_(False)
                p.grad = None
    syncs = [
        str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()
    ]
    where = [
        f"{Path(w.filename).name}:{w.lineno}"
        for w in caught
        if "synchroniz" in str(w.message).lower()
    ]
    return {"status": "ok", "syncs": len(syncs), "where": where[:10], "first": syncs[:3]}


def _options_part(
    settings: GpuBenchSettings,
    gen: Any,
    deadline: float,
    partial: Callable[[dict[str, Any]], None] = lambda _part: None,
) -> dict[str, Any]:
    from sym3d_eg3d.bench import _forward, _forward_backward, _time_interleaved

    dev = settings.device
    cuda = dev.type == "cuda"
    ws, cams = _inputs(gen, 1, dev)
    res = settings.neural_resolution

    def image(g: Any, ctx: Callable[[], Any]) -> torch.Tensor:
        with torch.no_grad(), ctx():
            return g.render(ws, cams, neural_resolution=res).image.float()

    def timed(g: Any, ctx: Callable[[], Any]) -> tuple[float, float]:
        params = list(g.tunable_parameters("all").values())
        f, fb = _forward(g, ws, cams, res), _forward_backward(g, ws, cams, res, params)

        def under(fn: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                with ctx():
                    fn()

            return run

        f_ms, fb_ms = _time_interleaved([under(f), under(fb)], dev, settings.repeats)
        return f_ms, fb_ms

    none = contextlib.nullcontext
    options: list[tuple[str, Callable[[], Any], Callable[[], Any], str]] = [
        # name, generator factory, context factory, why it is skipped (empty: runs)
        # The model's own precision: fp32, except the FFHQ512 super-resolution's top 4
        # resolutions, which run fp16 on CUDA as released (sr_num_fp16_res=4).
        (
            "baseline (model precision, TF32 off)",
            lambda: gen,
            lambda: _tf32(False) if cuda else none(),
            "",
        ),
        (
            "TF32 matmul + cuDNN",
            lambda: gen,
            lambda: _tf32(True),
            "" if cuda else "TF32 is a CUDA setting",
        ),
        (
            "bf16 autocast (whole render: backbone, renderer, super-resolution)",
            lambda: gen,
            lambda: torch.autocast(dev.type, dtype=torch.bfloat16),
            "",
        ),
        (
            "channels-last synthesis blocks",
            lambda: _channels_last(gen),
            lambda: _tf32(False) if cuda else none(),
            "" if cuda else "on the CPU the blocks force fp32 contiguous tensors (no effect)",
        ),
        (
            "torch.compile (backbone synthesis + super-resolution)",
            lambda: _compiled(gen),
            lambda: _tf32(False) if cuda else none(),
            "" if cuda and not settings.smoke else "compiling takes minutes; measured on CUDA only",
        ),
    ]
    # Before the options: torch.compile may run past the cap and the whole run be stopped.
    sync = _sync_check(gen, settings) if cuda else _skipped("set_sync_debug_mode needs CUDA")
    rows: list[dict[str, Any]] = []
    baseline: torch.Tensor | None = None
    for name, make, ctx, skip in options:
        partial({"status": "running", "reason": "", "rows": rows, "sync": sync})
        if skip:
            rows.append({"option": name, "status": "skipped", "reason": skip})
            continue
        if time.monotonic() > deadline:
            rows.append(
                {"option": name, "status": "skipped", "reason": "time cap reached before this row"}
            )
            continue
        try:
            g = make()
            img = image(g, ctx)
            f_ms, fb_ms = timed(g, ctx)
        except Exception as exc:  # noqa: BLE001 - an option that fails here is a measured outcome
            rows.append({"option": name, "status": "failed", "reason": _describe(exc)})
            continue
        if baseline is None:
            baseline = img
        diff = (img - baseline).abs().max().item()
        rows.append(
            {
                "option": name,
                "status": "ok",
                "reason": "",
                "forward_ms": f_ms,
                "forward_backward_ms": fb_ms,
                "max_abs_image_diff": diff,
                "image_range": [-1.0, 1.0],
            }
        )
    base = rows[0] if rows and rows[0]["status"] == "ok" else None
    for r in rows:
        if base is not None and r["status"] == "ok":
            r["speedup_forward"] = base["forward_ms"] / r["forward_ms"]
            r["speedup_forward_backward"] = base["forward_backward_ms"] / r["forward_backward_ms"]
    return {"status": "ok", "reason": "", "rows": rows, "sync": sync}


# ---------------------------------------------------------------------------------------------
# driver


def run_gpu_bench(
    out_dir: str | os.PathLike,
    *,
    device: str | torch.device = "cuda",
    smoke: bool = False,
    tests_dir: str | os.PathLike | None = "tests",
    command: str = "sym3d bench gpu",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every part and write ``out_dir/bench_gpu.json`` and ``out_dir/bench_gpu.md``.

    The JSON is rewritten after each part. A part that raises is recorded as ``failed`` with the
    error and the run goes on. Returns the report (the JSON's content).
    """
    dev = torch.device(device)
    settings = GpuBenchSettings(smoke=smoke, device=dev)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tests = Path(tests_dir).resolve() if tests_dir is not None else None
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "command": command,
        "device": _device_info(dev),
        "settings": settings.as_dict(),
        "parts": {name: {"status": "pending", "reason": ""} for name in PARTS},
        "targets": {},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    say = log or (lambda _msg: None)
    state: dict[str, Any] = {}

    def write() -> None:
        _targets(report)
        (out / "bench_gpu.json").write_text(
            json.dumps(report, indent=1, default=float) + "\n", encoding="utf-8"
        )
        (out / "bench_gpu.md").write_text(markdown_report(report), encoding="utf-8")

    def engine_gen() -> Any:
        if "gen" not in state:
            state["gen"] = _build(settings, "auto")
        return state["gen"]

    def options_partial(part: dict[str, Any]) -> None:
        report["parts"]["options"] = part
        write()

    steps: dict[str, Callable[[float], dict[str, Any]]] = {
        "kernels": lambda cap: _kernels_part(settings, tests, cap),
        "synthesis": lambda cap: _synthesis_part(settings, time.monotonic() + cap),
        "engine": lambda cap: _engine_part(settings, engine_gen()),
        "inversion": lambda cap: _inversion_part(
            settings, engine_gen(), report["parts"]["engine"], cap
        ),
        "options": lambda cap: _options_part(
            settings, engine_gen(), time.monotonic() + cap, partial=options_partial
        ),
    }
    for name in PARTS:
        cap = settings.caps_s[name]
        say(f"{name}: running (cap {cap:.0f} s)")
        t0 = time.monotonic()
        try:
            part = steps[name](cap)
        except Exception as exc:  # noqa: BLE001 - one failing part must not lose the others
            part = {"status": "failed", "reason": _describe(exc)}
        part["elapsed_s"] = round(time.monotonic() - t0, 2)
        report["parts"][name] = part
        say(
            f"{name}: {part['status']} in {part['elapsed_s']:.1f} s "
            f"{part.get('reason', '')}".rstrip()
        )
        write()
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write()
    return report


def _describe(exc: BaseException) -> str:
    """``Type: message (at file:line)`` of the innermost frame, for a failed part or row."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}"[:800] + where


def _targets(report: dict[str, Any]) -> None:
    """The issue's acceptance numbers, where measured: ``{"value", "limit", "met"}`` or absent."""
    parts = report["parts"]
    targets: dict[str, Any] = {}
    mirror = (
        parts.get("engine", {}).get("ratios", {}).get("stage 1 with mirror / one view (spi / pti)")
    )
    if mirror is not None:
        targets["stage-1 mirror cost / one view"] = {
            "value": mirror,
            "limit": 1.6,
            "met": mirror < 1.6,
        }
    ratios = parts.get("synthesis", {}).get("ratios", {})
    six = next((v for k, v in ratios.items() if "6 views" in k and k.startswith("cuda")), None)
    six = six if six is not None else next((v for k, v in ratios.items() if "6 views" in k), None)
    if six is not None:
        targets["6 views / one view (synthesis fwd+bwd)"] = {
            "value": six,
            "limit": 3.0,
            "met": six < 3.0,
        }
    inv = parts.get("inversion", {})
    if inv.get("status") in ("measured", "extrapolated") and not report["settings"]["smoke"]:
        sec = inv["seconds"]
        targets[f"spi inversion at 512 ({inv['status']}), s"] = {
            "value": sec,
            "limit": 60.0,
            "met": sec < 60.0,
        }
    report["targets"] = targets


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}"
    return "-" if value is None else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def markdown_report(report: dict[str, Any]) -> str:
    """The report as markdown: one table per part, skipped parts and rows with their reasons."""
    dev, st, parts = report["device"], report["settings"], report["parts"]
    lines = [
        f"# sym3d bench gpu ({'smoke, ' if st['smoke'] else ''}{dev.get('name', dev['type'])})",
        "",
        f"Command: `{report['command']}`; torch {dev['torch']}"
        + (f", CUDA {dev.get('cuda')}" if dev.get("cuda") else "")
        + f"; config {st['config']} (random weights), neural resolution {st['neural_resolution']}; "
        f"times are medians of {st['repeats']} rounds after a warm-up.",
        "",
        "## Parts",
        "",
    ]
    lines += _table(
        ["part", "status", "elapsed s", "note"],
        [
            [n, parts[n]["status"], parts[n].get("elapsed_s"), parts[n].get("reason", "")]
            for n in PARTS
        ],
    )
    k = parts["kernels"]
    if "passed" in k:
        lines += ["", "## Kernels (gpu-marked tests)", ""]
        lines += _table(
            ["passed", "failed", "skipped", "command"],
            [[k["passed"], k["failed"], k["skipped"], f"`{k['command']}`"]],
        )
    s = parts["synthesis"]
    if s.get("rows") or s.get("skipped_rows"):
        lines += ["", "## Synthesis (render forward; forward + backward w.r.t. all parameters)", ""]
        body = [
            [
                r["impl"],
                r["views"],
                r["forward_ms"],
                r["forward_backward_ms"],
                r["peak_forward_mb"],
                r["peak_backward_mb"],
            ]
            for r in s["rows"]
        ]
        body += [[r["impl"], "-", "skipped", r["reason"], "-", "-"] for r in s["skipped_rows"]]
        lines += _table(
            ["kernels", "views", "fwd ms", "fwd+bwd ms", "fwd peak MB", "fwd+bwd peak MB"], body
        )
    e = parts["engine"]
    if e.get("rows"):
        lines += ["", "## Engine steps (ms per step, medians)", ""]
        lines += _table(
            ["preset", "stage-1 views", "stage 1", "stage 2 plain", "stage 2 aux", "stage 2 mean"],
            [
                [
                    r["preset"],
                    r["stage1_views"],
                    r["stage1_ms"],
                    r["stage2_plain_ms"],
                    r["stage2_aux_ms"],
                    r["stage2_mean_ms"],
                ]
                for r in e["rows"]
            ],
        )
    ratios = {**s.get("ratios", {}), **e.get("ratios", {})}
    if ratios:
        lines += ["", "## Ratios", ""]
        lines += _table(["ratio", "value"], [[name, value] for name, value in ratios.items()])
    inv = parts["inversion"]
    if "latent_steps" in inv:
        lines += ["", "## Whole spi inversion (500 + 1000 steps)", ""]
        lines += _table(
            ["status", "seconds", "how"],
            [
                [
                    inv["status"],
                    inv.get("seconds"),
                    inv["extrapolation"] if inv["status"] != "measured" else "timed run",
                ]
            ],
        )
    o = parts["options"]
    if o.get("rows"):
        lines += ["", "## Options against the baseline (1 view; model precision, TF32 off)", ""]
        lines += _table(
            [
                "option",
                "status",
                "fwd ms",
                "fwd+bwd ms",
                "speed-up fwd",
                "speed-up fwd+bwd",
                "max abs image diff",
                "note",
            ],
            [
                [
                    r["option"],
                    r["status"],
                    r.get("forward_ms"),
                    r.get("forward_backward_ms"),
                    r.get("speedup_forward"),
                    r.get("speedup_forward_backward"),
                    r.get("max_abs_image_diff"),
                    r.get("reason", ""),
                ]
                for r in o["rows"]
            ],
        )
        sync = o.get("sync", {})
        count = sync.get("syncs", sync.get("status"))
        detail = sync.get("reason", "") or ", ".join(sync.get("where", []))
        text = f"Host-device synchronisations in one forward + backward: {count} {detail}"
        lines += ["", text.rstrip()]
    if report.get("targets"):
        lines += ["", "## Targets", ""]
        lines += _table(
            ["target", "value", "limit", "met"],
            [
                [n, t["value"], t["limit"], "yes" if t["met"] else "no"]
                for n, t in report["targets"].items()
            ],
        )
    return "\n".join(lines) + "\n"
