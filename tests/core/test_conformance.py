import pytest
import torch

from sym3d.protocols import Generator3D, RenderOutput
from sym3d.testing import CHECKS, ConformanceError, TinyGenerator3D, check_generator, run_check


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
        return RenderOutput(image=out.image + bias, image_raw=out.image_raw + bias, depth=out.depth, depth_z=out.depth_z, opacity=out.opacity)


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
    with pytest.raises(ConformanceError, match="does not satisfy Generator3D"):
        check_generator(torch.nn.Linear(2, 2))


def test_tiny_render_is_fast_enough_to_drive_engine_tests(tiny):
    # Not a timing test: a sanity check of size (rays x samples) that keeps renders in milliseconds.
    assert tiny.neural_resolution ** 2 * tiny.num_samples <= 64 * 64 * 32


def test_info_is_checked():
    from sym3d.protocols import GeneratorInfo
    from sym3d.testing.conformance import check_info

    gen = TinyGenerator3D()
    check_info(gen, None)  # no info: nothing to check
    gen.info = GeneratorInfo(recommended_overrides=("tune.steps=10", "tune.terms.depth_reg.weight=3"), ray_range=(2.2, 3.3))
    check_info(gen, None)
    gen.info = GeneratorInfo(recommended_overrides=("tune.stepz=10",))
    with pytest.raises(ConformanceError, match="recommended_overrides are not valid settings.*tune.stepz"):
        check_info(gen, None)
    gen.info = GeneratorInfo(image_range=(0.0, 1.0))
    with pytest.raises(ConformanceError, match="image_range"):
        check_info(gen, None)
