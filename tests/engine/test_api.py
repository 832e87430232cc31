"""The Python API around the engine: cameras, run state, rebuilding generators, photos, progress."""

import pytest
import torch

import sym3d
from sym3d.camera import look_at
from sym3d.engine import InversionResult, Resumed, StepFinished
from sym3d.errors import CheckpointError, UserInputError
from sym3d.plugins import build_registry, default_plugin_manager
from sym3d.protocols import FaceObservation
from sym3d.registry import ComponentSpec
from sym3d.testing import TinyGenerator3D

from .conftest import FAST


def test_refined_camera_is_returned_and_the_input_camera_is_never_modified(side_view):
    img, cam = side_view
    before = cam.clone()
    r = sym3d.invert(
        img,
        cam,
        generator=TinyGenerator3D(),
        overrides=[
            *FAST,
            "latent.steps=4",
            "tune.steps=2",
            "latent.refine_camera=true",
            "latent.camera_lr=0.05",
        ],
    )
    assert torch.equal(cam, before) and torch.equal(r.input_camera, before)
    assert (
        float((r.camera - before).abs().max()) > 1e-4
    )  # the refined camera is the result's camera
    assert abs(r.summary["camera_refined_dyaw"]) > 0
    plain = sym3d.invert(
        img, cam, generator=TinyGenerator3D(), overrides=[*FAST, "latent.steps=2", "tune.steps=0"]
    )
    assert torch.equal(plain.camera, before)


class Interrupt(Exception):
    pass


def test_stage_one_is_checkpointed_and_resumes_where_it_stopped(side_view, tmp_path, capsys):
    img, cam = side_view
    over = [*FAST, "latent.steps=5", "tune.steps=0", "checkpoint_every=2"]

    def stop_at_3(event):
        if isinstance(event, StepFinished) and event.step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        sym3d.invert(
            img,
            cam,
            generator=TinyGenerator3D(),
            overrides=over,
            checkpoint_dir=tmp_path,
            callbacks=[stop_at_3],
        )
    state = torch.load(tmp_path / "run_state.pt", weights_only=True)
    assert (
        state["stage"] == "latent"
        and state["step"] == 2
        and set(state["stage_state"]) == {"params", "optimizer", "keep"}
    )
    # spi validates only where the probe leaves the mirror out: nothing kept here
    assert state["stage_state"]["keep"] == {}
    events = []
    r = sym3d.invert(
        img,
        cam,
        generator=TinyGenerator3D(),
        overrides=over,
        checkpoint_dir=tmp_path,
        callbacks=[events.append],
        progress="plain",
    )
    assert events[0] == Resumed(path=str(tmp_path), stage="latent", step=2)
    assert [e.step for e in events if isinstance(e, StepFinished)] == [2, 3, 4]
    assert [h["step"] for h in r.history] == [0, 1, 2, 3, 4]
    assert "resumed stage 1 latent at step 2" in capsys.readouterr().err


def _registry_with_plain_generator():
    reg = build_registry(default_plugin_manager())
    reg.add(
        ComponentSpec(
            kind="generator",
            name="plain",
            factory=lambda **o: TinyGenerator3D(**o),
            plugin="thirdparty",
        )
    )
    return reg


def test_a_third_party_generator_without_optional_members_rebuilds_exactly_in_render(
    side_view, tmp_path, monkeypatch
):
    from sym3d.app.commands import _load_result
    from sym3d.cli import main

    reg = _registry_with_plain_generator()
    monkeypatch.setattr("sym3d.plugins.default_registry", lambda: reg)
    img, cam = side_view
    gen = sym3d.load_generator("plain", registry=reg, resolution=24, near=2.3, far=3.2)
    assert not hasattr(gen, "info")  # nothing optional declared
    r = sym3d.invert(img, cam, generator=gen, overrides=[*FAST, "latent.steps=2", "tune.steps=2"])
    assert r.generator_name == "plain" and r.generator_options == {
        "resolution": 24,
        "near": 2.3,
        "far": 3.2,
    }
    r.save(tmp_path / "res")
    cams = look_at(torch.tensor([-0.5, 0.4]), 0.0)
    expected = r.render(r.apply(gen), cams).image
    loaded, tuned = _load_result(tmp_path / "res", None, "cpu")
    assert torch.equal(loaded.render(tuned, cams).image, expected)
    assert torch.equal(
        InversionResult.load(tmp_path / "res")
        .generator(registry=reg)
        .render(r.ws, cams[None])
        .image,
        expected,
    )
    wrong = r.render(
        r.apply(TinyGenerator3D()), cams
    ).image  # what an unrecorded rebuild would give
    assert wrong.shape != expected.shape
    assert (
        main(
            [
                "render",
                str(tmp_path / "res"),
                "--views",
                "3",
                "--video-frames",
                "0",
                "--mesh-resolution",
                "0",
            ]
        )
        == 0
    )
    assert any((tmp_path / "res" / "render").iterdir())


def test_a_result_whose_generator_cannot_be_rebuilt_says_so(side_view, tmp_path, capsys):
    from sym3d.cli import main

    img, cam = side_view
    r = sym3d.invert(
        img,
        cam,
        generator=TinyGenerator3D(resolution=24),
        overrides=[*FAST, "latent.steps=1", "tune.steps=0"],
    )
    assert r.generator_options is None and "built outside the registry" in r.generator_note
    r.save(tmp_path / "res")
    with pytest.raises(CheckpointError, match="cannot be rebuilt"):
        InversionResult.load(tmp_path / "res").generator()
    assert (
        main(["render", str(tmp_path / "res"), "--video-frames", "0", "--mesh-resolution", "0"])
        == 2
    )
    assert "cannot be rebuilt" in capsys.readouterr().err
    assert not (tmp_path / "res" / "render").exists()


class FakePose:
    """A pose estimator that crops the centre and reports a fixed camera."""

    name = "fake"

    def __init__(self, camera):
        self.camera = camera
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        return FaceObservation(image=image[..., 4:-4, 4:-4], camera=self.camera)


def test_a_photo_without_a_camera_is_posed_by_the_pose_estimator(side_view, tmp_path):
    from sym3d.image import save_image

    img, cam = side_view
    big = torch.nn.functional.interpolate(img, size=(40, 40), mode="bilinear", align_corners=False)
    save_image(big, tmp_path / "photo.png")
    reg = build_registry(default_plugin_manager())
    pose = FakePose(cam)
    reg.add(ComponentSpec(kind="pose", name="fake", factory=lambda: pose, plugin="test"))
    assert sym3d.load_pose_estimator("fake", registry=reg) is pose
    r = sym3d.invert(
        tmp_path / "photo.png",
        generator=TinyGenerator3D(),
        pose_estimator="fake",
        registry=reg,
        overrides=[*FAST, "latent.steps=1", "tune.steps=0"],
    )
    assert pose.calls == 1 and torch.equal(r.input_camera, cam)
    assert r.target.shape == (1, 3, 32, 32)


def test_progress_is_shown_when_asked_and_off_by_default_when_not_interactive(side_view, capsys):
    img, cam = side_view
    over = [*FAST, "latent.steps=1", "tune.steps=0"]
    sym3d.invert(img, cam, generator=TinyGenerator3D(), overrides=over)
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal: "auto" is off
    sym3d.invert(img, cam, generator=TinyGenerator3D(), overrides=over, progress="plain")
    assert "stage 1 latent: 1 steps" in capsys.readouterr().err
    with pytest.raises(UserInputError, match="progress"):
        sym3d.invert(img, cam, generator=TinyGenerator3D(), overrides=over, progress="loud")


def test_run_state_round_trips_and_refuses_foreign_or_broken_files(tmp_path):
    from sym3d.engine.checkpoint import RunState, load_run_state, save_run_state

    rng = torch.Generator().manual_seed(3)
    state = RunState(
        fingerprint="abc",
        stage="generator",
        step=4,
        latent=torch.randn(1, 2, 3),
        camera=torch.randn(1, 25),
        stage_state={
            "params": {"planes": torch.ones(2)},
            "optimizer": {"state": {}, "param_groups": []},
        },
        rng=rng.get_state(),
        history=({"stage": "latent", "step": 0, "total": 1.5},),
    )
    save_run_state(tmp_path, state)
    back = load_run_state(tmp_path, "abc")
    assert isinstance(back, RunState) and back.stage == "generator" and back.step == 4
    assert torch.equal(back.latent, state.latent) and torch.equal(back.rng, state.rng)
    assert (
        torch.equal(back.stage_state["params"]["planes"], torch.ones(2))
        and back.history == state.history
    )
    assert [p.name for p in tmp_path.iterdir()] == ["run_state.pt"]  # atomic: no temporary left
    with pytest.raises(UserInputError, match="belongs to a different run"):
        load_run_state(tmp_path, "other")
    (tmp_path / "run_state.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="checkpoint of this run cannot be read.*--no-resume"):
        load_run_state(tmp_path, "abc")
    assert load_run_state(tmp_path / "empty", "abc") is None


def test_zero_latent_steps_keep_the_camera_conditioned_mean_latent(side_view):
    img, cam = side_view
    gen = TinyGenerator3D()
    r = sym3d.invert(img, cam, generator=gen, preset="w+", overrides=[*FAST, "latent.steps=0"])
    assert torch.equal(r.ws, gen.mean_latent(cam, num_samples=600, seed=123)) and r.history == ()
