import pytest
import torch

from sym3d.camera import ray_distance_to_z
from sym3d.protocols import Generator3D, RenderOutput
from sym3d.testing import CHECKS, ConformanceError, TinyGenerator3D, check_generator, run_check
from sym3d.testing.conformance import (
    ConformanceOptions,
    check_density,
    check_unknown_scope,
    conformance_report,
)


@pytest.fixture(scope="module")
def tiny():
    return TinyGenerator3D()


def test_tiny_satisfies_protocol(tiny):
    assert isinstance(tiny, Generator3D)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_tiny_passes(tiny, check):
    run_check(check, tiny)


class ViewDependentNoise(TinyGenerator3D):
    """Deliberately wrong: a V-view call renders differently from single-view calls."""

    def render(self, ws, cameras, **kw):
        out = super().render(ws, cameras, **kw)
        v = cameras.shape[1]
        bias = 0.01 * v
        return RenderOutput(
            image=out.image + bias,
            image_raw=out.image_raw + bias,
            depth=out.depth,
            depth_z=out.depth_z,
            opacity=out.opacity,
        )


class Stateful(TinyGenerator3D):
    """Deliberately wrong: rendering mutates a buffer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def render(self, ws, cameras, **kw):
        self.calls += 1
        return super().render(ws, cameras, **kw)


def test_wrong_multiview_fails_with_clear_message():
    with pytest.raises(ConformanceError) as info:
        check_generator(ViewDependentNoise())
    msg = str(info.value)
    assert "check_multiview_equals_single" in msg and "must equal V calls with one view each" in msg


def test_stateful_render_fails():
    with pytest.raises(ConformanceError, match="rendering must be pure"):
        check_generator(Stateful())


def test_non_generator_is_refused():
    with pytest.raises(
        ConformanceError, match="check_protocol: FAILED: Linear does not satisfy Generator3D"
    ):
        check_generator(torch.nn.Linear(2, 2))


def test_tiny_render_is_fast_enough_to_drive_engine_tests(tiny):
    # Not a timing test: a sanity check of size (rays x samples) that keeps renders in milliseconds.
    assert tiny.neural_resolution**2 * tiny.num_samples <= 64 * 64 * 32


def test_info_is_checked():
    from sym3d.protocols import GeneratorInfo
    from sym3d.testing.conformance import check_info

    gen = TinyGenerator3D()
    check_info(gen, None)  # no info: nothing to check
    gen.info = GeneratorInfo(
        recommended_overrides=("tune.steps=10", "tune.terms.depth_reg.weight=3"),
        ray_range=(2.2, 3.3),
    )
    check_info(gen, None)
    gen.info = GeneratorInfo(recommended_overrides=("tune.stepz=10",))
    with pytest.raises(
        ConformanceError, match="recommended_overrides are not valid settings.*tune.stepz"
    ):
        check_info(gen, None)
    gen.info = GeneratorInfo(image_range=(0.0, 1.0))
    with pytest.raises(ConformanceError, match="image_range"):
        check_info(gen, None)


class FlippedBothWays(TinyGenerator3D):
    """Deliberately wrong: the image is rotated by 180 degrees (OpenGL-style camera axes)."""

    def render(self, ws, cameras, **kw):
        out = super().render(ws, cameras, **kw)
        f = {k: getattr(out, k).flip(-1, -2) for k in ("image", "image_raw", "depth", "opacity")}
        return RenderOutput(**f, depth_z=ray_distance_to_z(f["depth"], cameras))


class ZeroDensity(TinyGenerator3D):
    """Deliberately wrong: sample_density is not the density the renderer integrates."""

    def sample_density(self, ws, points):
        return torch.zeros(points.shape[:2])


class KeyErrorScope(TinyGenerator3D):
    """Deliberately wrong: an unknown scope raises KeyError instead of ConfigError."""

    def tunable_parameters(self, scope="all"):
        return {"all": {"planes": self.planes}, "residual": {"planes": self.planes}}[scope]


class NoSampleDensity(TinyGenerator3D):
    """Deliberately wrong: sample_density is not implemented."""

    def __getattribute__(self, name):
        if name == "sample_density":
            raise AttributeError("'NoSampleDensity' object has no attribute 'sample_density'")
        return super().__getattribute__(name)


class UnitRange(TinyGenerator3D):
    """Deliberately wrong: images in [0, 1] instead of [-1, 1]."""

    def render(self, ws, cameras, **kw):
        out = super().render(ws, cameras, **kw)
        return RenderOutput(
            image=(out.image + 1) / 2,
            image_raw=(out.image_raw + 1) / 2,
            depth=out.depth,
            depth_z=out.depth_z,
            opacity=out.opacity,
        )


SMALL = ConformanceOptions(batch=1, views=2)


@pytest.mark.parametrize(
    ("gen_cls", "failed", "phrase"),
    [
        (FlippedBothWays, {"check_camera_convention"}, "flipped both ways (OpenGL-style axes)"),
        (ZeroDensity, {"check_camera_convention"}, "accumulates no opacity along any ray"),
        (KeyErrorScope, {"check_unknown_scope"}, "raised KeyError"),
        (
            NoSampleDensity,
            {"check_protocol", "check_density", "check_camera_convention"},
            "missing: sample_density",
        ),
        (UnitRange, {"check_image_range"}, "it looks like [0, 1]"),
    ],
    ids=lambda x: x.__name__ if isinstance(x, type) else None,
)
def test_convention_bugs_fail_the_named_check(gen_cls, failed, phrase):
    with pytest.raises(ConformanceError) as info:
        check_generator(gen_cls(), SMALL)
    msg = str(info.value)
    assert phrase in msg
    # every check ran and is listed (none aborted the suite); exactly the expected ones failed
    assert msg.count(": passed") + msg.count(": FAILED: ") == len(CHECKS), msg
    assert {c.__name__ for c in CHECKS if f"{c.__name__}: FAILED: " in msg} == failed, msg


def test_report_lists_each_check():
    report = conformance_report(KeyErrorScope(), SMALL, checks=CHECKS[:3] + (check_unknown_scope,))
    names = [c.__name__ for c in CHECKS[:3]] + ["check_unknown_scope"]
    assert [r.name for r in report.results] == names
    assert [r.passed for r in report.results] == [True, True, True, False]
    assert "KeyError" in report.failures[0].reason and not report.passed


def test_unexpected_exception_in_run_check_is_named():
    with pytest.raises(ConformanceError, match=r"raised KeyError"):
        run_check(check_unknown_scope, KeyErrorScope())
    with pytest.raises(ConformanceError, match=r"^check_density: unexpected AttributeError"):
        run_check(check_density, NoSampleDensity())
