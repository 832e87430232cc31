"""The export table: settings as one validated value, exporters over one context, names once."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from sym3d.app.export._common import ExportError
from sym3d.app.export.folder import (
    ALL_OUTPUTS,
    EXPORTERS,
    ExportContext,
    ExportOptions,
    export_result,
)
from sym3d.engine.result import ResultFiles
from sym3d.errors import UserInputError

pytest.importorskip("trimesh")
pytest.importorskip("skimage")

SMALL = dict(num_views=3, video_frames=6, mesh_resolution=24, lpips=False)


def _names() -> set[str]:
    """Every file name ResultFiles spells (the folder ``views`` is not a file)."""
    values = {v for k, v in vars(ResultFiles).items() if k.isupper() and isinstance(v, str)}
    return values - {ResultFiles.VIEWS}


def test_save_writes_exactly_the_saved_names(tiny_result, tmp_path):
    tiny_result.save(tmp_path)
    written = {p.name for p in tmp_path.iterdir()}
    assert written == set(ResultFiles.SAVED)  # tuned and target are set: every file is there


def test_every_exported_file_is_named_in_result_files(tiny, tiny_result, tmp_path):
    tiny_result.save(tmp_path)
    files = export_result(tiny_result, tiny, tmp_path, **SMALL)
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert on_disk <= _names(), on_disk - _names()
    assert {p.relative_to(tmp_path).as_posix() for p in files.values()} <= _names()


def test_the_parts_are_the_exporters_in_their_running_order():
    from sym3d.app import export
    from sym3d.app.commands import EXPORT_PARTS

    assert ALL_OUTPUTS == tuple(EXPORTERS)
    assert ALL_OUTPUTS[-2:] == ("metrics", "report")  # the report shows the metrics
    assert set(EXPORT_PARTS) == set(ALL_OUTPUTS)  # the CLI's --export (kept import-light)
    assert export.ExportOptions is ExportOptions


@pytest.mark.parametrize(
    ("setting", "value", "match"),
    [
        ("num_views", 0, "num_views: expected an integer >= 1, got 0"),
        ("mesh_resolution", 3, "mesh_resolution: expected an integer >= 4"),
        ("render_batch", 2.5, "render_batch: expected an integer >= 1, got 2.5"),
        ("render_batch", "8", "render_batch: expected an integer >= 1, got '8'"),
        ("fps", 0, "fps: expected a positive number"),
        ("video_format", "avi", "video_format: expected 'auto', 'mp4' or 'gif'"),
    ],
)
def test_bad_settings_raise_the_typed_error_before_anything_is_written(
    tiny, tiny_result, tmp_path, setting, value, match
):
    with pytest.raises(UserInputError, match=match):
        ExportOptions(**{setting: value})
    out = tmp_path / "out"
    with pytest.raises(UserInputError, match=match):
        export_result(tiny_result, tiny, out, **{setting: value})
    assert not out.exists()


def test_a_misspelt_setting_is_a_user_error_not_a_type_error(tiny, tiny_result, tmp_path):
    with pytest.raises(UserInputError, match="unknown setting.*num_view;.*any of num_views"):
        export_result(tiny_result, tiny, tmp_path, num_view=3)


def test_options_value_and_keyword_settings_give_the_same_folder(tiny, tiny_result, tmp_path):
    opts = ExportOptions(num_views=2, video_frames=4, mesh_resolution=24, lpips=True)
    a = export_result(tiny_result, tiny, tmp_path / "a", what=("views",), options=opts)
    b = export_result(tiny_result, tiny, tmp_path / "b", what=("views",), options=opts, lpips=False)
    assert set(a) == set(b) == {"input", "reconstruction", "mirror", "mirror_prior", "novel_grid"}
    for key in a:
        assert Path(a[key]).read_bytes() == Path(b[key]).read_bytes(), key
    assert attrs.evolve(opts, lpips=False).lpips is False and opts.lpips is True  # frozen


@pytest.mark.parametrize("part", ["views", "depth", "metrics"])
def test_an_exporter_run_without_the_base_render_raises_export_error(
    tiny, tiny_result, tmp_path, part
):
    calls = []
    ctx = ExportContext.create(
        tiny_result, tiny, tmp_path, ExportOptions(**SMALL), lambda *a: calls.append(a)
    )
    with pytest.raises(ExportError, match=f"{part!r} needs the base render"):
        with ctx.stage(part) as stage:
            EXPORTERS[part](ctx, stage)
    assert list(tmp_path.iterdir()) == [] and calls == []
    assert part in ctx.timings  # the stage was timed even though it failed


def test_the_context_holds_the_tuned_generator_and_cpu_inputs(tiny, tiny_result, tmp_path):
    ctx = ExportContext.create(tiny_result, tiny, tmp_path, ExportOptions())
    assert ctx.generator is not tiny  # the base generator gets the tuned values on a copy
    assert ctx.camera.shape == (1, 25) and ctx.camera.device.type == "cpu"
    assert ctx.target is not None and float(ctx.target.min()) >= 0 and float(ctx.target.max()) <= 1
    assert ctx.written == {} and ctx.notes == [] and ctx.base is None
