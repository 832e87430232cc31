from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from sym3d.app import metrics as M
from sym3d.app.export import folder as folder_mod
from sym3d.app.export import video
from sym3d.app.export._common import ExportWarning
from sym3d.app.export.folder import (
    ALL_OUTPUTS,
    export_result,
    novel_view_cameras,
    tuned_generator,
)
from sym3d.camera import mirror_camera
from sym3d.errors import UserInputError
from sym3d.image import from_model_range, mirror_image

from ._html import parse, references

pytest.importorskip("trimesh")
pytest.importorskip("skimage")

SMALL = dict(num_views=3, video_frames=6, mesh_resolution=24, lpips=False)


@pytest.fixture(scope="module")
def exported(tiny, tiny_result, tmp_path_factory):
    out = tmp_path_factory.mktemp("result")
    tiny_result.save(out)
    calls = []
    files = export_result(
        tiny_result, tiny, out, progress=lambda s, d, t: calls.append((s, d, t)), **SMALL
    )
    return out, files, calls


def test_full_folder(exported):
    out, files, _ = exported
    expected = {
        "input": "views/input.png",
        "reconstruction": "views/reconstruction.png",
        "mirror": "views/mirror.png",
        "novel_grid": "views/novel_grid.png",
        "depth": "depth.png",
        "depth_npy": "depth.npy",
        "mesh": "mesh.ply",
        "loss": "loss.png",
        "metrics": "metrics.json",
        "report": "report.html",
    }
    for key, rel in expected.items():
        assert files[key] == out / rel and (out / rel).stat().st_size > 0, key
    assert files["video"].name in ("orbit.mp4", "orbit.gif")
    for name in ("latent.pt", "tuned.safetensors", "config.resolved.toml", "input.png"):
        assert (out / name).exists()  # result.save()'s files are untouched
    assert not [p for p in out.rglob(".tmp-*")]


def test_images_decode(exported, tiny):
    import imageio.v3 as iio

    out, files, _ = exported
    res = tiny.img_resolution
    assert iio.imread(files["input"]).shape == (res, res, 3)
    assert iio.imread(files["reconstruction"]).shape == (res, res, 3)
    grid = iio.imread(files["novel_grid"])
    assert grid.shape[1] > 3 * res and grid.shape[0] > res
    depth = np.load(files["depth_npy"])
    assert depth.shape == (tiny.neural_resolution,) * 2
    fg = depth[np.isfinite(depth)]
    assert fg.size > 0 and (fg > 2.0).all() and (fg < 3.3).all()  # camera z in world units


def test_video_and_mesh(exported):
    import imageio.v3 as iio
    import trimesh

    out, files, _ = exported
    if files["video"].suffix == ".gif":
        assert iio.imread(files["video"], index=None).shape[0] == 6
    else:
        import imageio.v2

        reader = imageio.v2.get_reader(files["video"], format="FFMPEG")
        assert reader.count_frames() == 6
        reader.close()
    mesh = trimesh.load(files["mesh"], process=False)
    assert len(mesh.faces) > 100 and mesh.is_watertight
    assert (np.abs(mesh.vertices) < 0.5).all()
    assert mesh.visual.kind == "vertex"


def test_metrics(exported, tiny, tiny_result):
    out, files, _ = exported
    m = json.loads(files["metrics"].read_text())
    gen = tiny_result.apply(tiny)
    with torch.no_grad():
        cams = torch.cat([tiny_result.camera, mirror_camera(tiny_result.camera)])[None]
        rgb = from_model_range(gen.render(tiny_result.ws, cams).image[0], clamp=True)
    target = tiny_result.target
    assert m["reconstruction"]["psnr"] == pytest.approx(
        float(M.psnr(rgb[0:1], target)[0]), rel=1e-5
    )
    assert m["mirror"]["psnr"] == pytest.approx(
        float(M.psnr(rgb[1:2], mirror_image(target))[0]), rel=1e-5
    )
    assert 0 < m["reconstruction"]["ssim"] <= 1
    assert "lpips" not in m["reconstruction"]  # lpips=False
    assert m["timings"]["latent_seconds"] == 1.5 and "mesh" in m["timings"]["export_seconds"]
    assert m["mesh"]["faces"] > 0 and m["video"]["frames"] == 6
    assert m["depth"]["kind"] == "camera-space z"


def test_report_of_the_folder(exported):
    out, files, _ = exported
    page = parse(files["report"])
    for ref in references(page):
        assert (out / ref).is_file(), ref
    refs = set(references(page))
    assert {"views/novel_grid.png", "depth.png", "loss.png", "mesh.ply", "latent.pt"} <= refs
    assert files["video"].name in refs


def test_progress_callback(exported):
    _, _, calls = exported
    stages = [s for s, _, _ in calls]
    for stage in ("render", "views", "depth", "video", "mesh", "plots", "metrics", "report"):
        assert stage in stages, stage
    for _stage, done, total in calls:
        assert 0 <= done <= total
    last = {}
    for s, d, t in calls:
        last[s] = (d, t)
    assert all(d == t for d, t in last.values())
    assert ("video", 6, 6) in calls


def test_what_subset_and_unknown(tiny, tiny_result, tmp_path):
    files = export_result(tiny_result, tiny, tmp_path, what=("views",), **SMALL)
    assert set(files) == {"input", "reconstruction", "mirror", "mirror_prior", "novel_grid"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["views"]
    files = export_result(tiny_result, tiny, tmp_path, what=("depth", "report"), **SMALL)
    assert set(files) == {"depth", "depth_npy", "metrics", "report"}  # the report implies metrics
    with pytest.raises(UserInputError, match="unknown output"):
        export_result(tiny_result, tiny, tmp_path, what=("views", "hologram"))
    with pytest.raises(UserInputError, match="video_frames"):
        export_result(tiny_result, tiny, tmp_path, video_frames=0)
    with pytest.raises(UserInputError, match="video_format"):
        export_result(tiny_result, tiny, tmp_path, video_format="avi")


def test_gif_fallback_replaces_stale_mp4(tiny, tiny_result, tmp_path, monkeypatch):
    (tmp_path / "orbit.mp4").write_bytes(b"old")
    monkeypatch.setattr(video, "_find_ffmpeg", lambda: (None, "ffmpeg disabled by the test"))
    with pytest.warns(ExportWarning, match="GIF"):
        files = export_result(
            tiny_result, tiny, tmp_path, what=("video", "metrics", "report"), **SMALL
        )
    assert files["video"] == tmp_path / "orbit.gif" and not (tmp_path / "orbit.mp4").exists()
    m = json.loads(files["metrics"].read_text())
    assert m["video"]["format"] == "gif"
    assert any("GIF" in n for n in m["notes"])
    page = parse(files["report"])
    assert not [a for t, a in page.tags if t == "video"]
    assert any(t == "img" and a.get("data-file") == "orbit.gif" for t, a in page.tags)
    assert "disabled by the test" in "".join(page.text)


def test_base_or_tuned_generator(tiny, tiny_result):
    tuned = tuned_generator(tiny_result, tiny)
    assert tuned is not tiny  # the base generator gets the tuned residual on a copy
    assert torch.equal(tuned.planes, tiny_result.tuned["planes"])
    assert float(tiny.planes.detach().abs().max()) == 0.0  # the caller's generator is not modified
    assert tuned_generator(tiny_result, tuned) is tuned  # already tuned: used as is


def test_result_without_target_or_history(tiny, tiny_result, tmp_path):
    import attrs

    bare = attrs.evolve(tiny_result, target=None, history=())
    files = export_result(
        bare, tiny, tmp_path, what=("views", "plots", "metrics", "report"), **SMALL
    )
    assert "input" not in files and "loss" not in files
    m = json.loads(files["metrics"].read_text())
    assert "reconstruction" not in m and any("no input image" in n for n in m["notes"])
    parse(files["report"])


def test_novel_view_cameras_keep_the_framing(tiny_result):
    from sym3d.camera import CameraLabels, yaw_pitch_roll

    cams = novel_view_cameras(tiny_result.camera, 5, 0.6)
    yaw, pitch, _ = yaw_pitch_roll(cams)
    torch.testing.assert_close(yaw, torch.linspace(-0.6, 0.6, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(pitch, torch.zeros(5), atol=1e-5, rtol=0)
    pivot = torch.tensor([0.0, 0.0, 0.2])
    d_in = (CameraLabels(tiny_result.camera).position - pivot).norm()
    torch.testing.assert_close((CameraLabels(cams).position - pivot).norm(dim=-1), d_in.expand(5))
    assert ALL_OUTPUTS[-1] == "report"


def test_import_is_light():
    code = (
        "import sys, sym3d.app.export as e; e.__all__; "
        "heavy = [m for m in ('matplotlib', 'trimesh', 'skimage', 'imageio', 'imageio_ffmpeg') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert folder_mod.__name__.endswith("folder")


def test_mesh_failure_is_skipped_unless_strict(tiny, tiny_result, tmp_path):
    import copy

    from sym3d.app.export._common import ExportError

    flat = copy.deepcopy(tiny)
    from sym3d.protocols import GeneratorInfo

    flat.info = GeneratorInfo(mesh_level=1e9)  # no surface at this level
    (tmp_path / "mesh.ply").write_bytes(b"ply from an older run")
    with pytest.warns(ExportWarning, match="mesh.ply not written"):
        files = export_result(tiny_result, flat, tmp_path, what=("mesh", "report"), **SMALL)
    assert "mesh" not in files and not (tmp_path / "mesh.ply").exists()
    assert any("never crosses" in n for n in json.loads(files["metrics"].read_text())["notes"])
    with pytest.raises(ExportError, match="never crosses"):
        export_result(tiny_result, flat, tmp_path, what=("mesh",), strict=True, **SMALL)


def test_without_matplotlib_the_colour_map_and_plots_are_skipped(
    tiny, tiny_result, tmp_path, monkeypatch
):
    """Matplotlib is in the ``export`` extra: a core-only install still gets the other parts."""
    from sym3d.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises
    (tmp_path / "loss.png").write_bytes(b"png from an older run")
    parts = ("depth", "plots", "views", "report")
    with pytest.warns(ExportWarning, match="not written"):
        files = export_result(tiny_result, tiny, tmp_path, what=parts, **SMALL)
    assert "depth" not in files and "loss" not in files
    assert not (tmp_path / "depth.png").exists() and not (tmp_path / "loss.png").exists()
    assert (
        files["depth_npy"].is_file() and files["novel_grid"].is_file() and files["report"].is_file()
    )
    notes = json.loads(files["metrics"].read_text())["notes"]
    assert not (tmp_path / "views" / "mirror_prior.png").exists()
    for name in ("depth.png", "loss.png", "mirror_prior.png"):
        assert any(n.startswith(f"{name} not written") and "sym3d[export]" in n for n in notes), (
            notes
        )
    with pytest.raises(MissingDependencyError) as info:
        export_result(tiny_result, tiny, tmp_path, what=("plots",), strict=True, **SMALL)
    assert info.value.extra == "export"


@pytest.mark.parametrize("linked", ["folder", "views"])
def test_symlinked_destination_is_refused_and_its_target_untouched(
    tiny, tiny_result, tmp_path, linked
):
    from sym3d.errors import OutputWriteError

    target = tmp_path / "elsewhere"
    target.mkdir()
    out = tmp_path / "result"
    if linked == "folder":
        out.symlink_to(target, target_is_directory=True)
    else:
        out.mkdir()
        (out / "views").symlink_to(target, target_is_directory=True)
    with pytest.raises(OutputWriteError, match="symbolic link"):
        export_result(tiny_result, tiny, out, what=("views",), **SMALL)
    assert list(target.iterdir()) == []


def test_render_refuses_a_symlinked_render_folder(tiny_result, tmp_path, capsys):
    """`sym3d render RESULT` once wrote through a symlinked RESULT/render into its target."""
    from sym3d.cli import main

    result = tmp_path / "result"
    tiny_result.save(result)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (result / "render").symlink_to(target, target_is_directory=True)
    code = main(
        ["render", str(result), "--views", "2", "--video-frames", "0", "--mesh-resolution", "0"]
    )
    err = capsys.readouterr().err
    assert code == 1, err
    assert (
        "render: is a symbolic link; sym3d never writes through links" in err
        and "Hint: remove the link" in err
    )
    assert list(target.iterdir()) == []
    code = main(
        [
            "render",
            str(result),
            "--views",
            "2",
            "--video-frames",
            "0",
            "--mesh-resolution",
            "0",
            "-o",
            str(tmp_path / "r2"),
        ]
    )
    assert code == 0 and (tmp_path / "r2" / "views" / "novel_grid.png").is_file()
