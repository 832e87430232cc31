"""The local process pool end to end: layout, a corrupt file, a killed worker, resume, summary."""

from __future__ import annotations

import json
from collections import Counter

from sym3d.app.batch import run_batch
from sym3d.cli import main
from tests.app.batch.conftest import read_events, read_rows

INVERT_FILES = [
    "latent.pt",
    "tuned.safetensors",
    "config.resolved.toml",
    "history.json",
    "input.png",
    "pose.json",
    "run.json",
    "summary.json",
    "views/aligned.png",
    "views/input.png",
    "views/reconstruction.png",
    "views/mirror.png",
    "views/novel_grid.png",
    "metrics.json",
]


def test_one_result_folder_per_image_laid_out_like_invert(local_batch):
    out = local_batch["out"]
    for key in ("head0", "head1", "head2"):
        missing = [f for f in INVERT_FILES if not (out / key / f).exists()]
        assert not missing, (key, missing)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        ".work",
        "head0",
        "head1",
        "head2",
    ]
    # assembled in .work/<key>, then renamed; the failed images (corrupt, killed) left no folder behind
    assert all(p.suffix == ".lock" and p.is_file() for p in (out / ".work").iterdir())


def test_manifest_records_status_timings_metrics_and_errors(local_batch):
    rows = read_rows(local_batch["out"] / "manifest.sqlite")
    assert {k: r["status"] for k, r in rows.items()} == {
        "head0": "done",
        "head1": "done",
        "head2": "done",
        "corrupt": "failed",
        "nolabel": "failed",
    }
    for key in ("head0", "head1", "head2"):
        r = rows[key]
        assert (
            r["seconds"] > 0
            and r["worker"]
            and r["error"] is None
            and r["finished_at"] >= r["started_at"]
        )
        metrics = json.loads(r["metrics"])
        assert metrics["reconstruction"]["psnr"] > 10 and "latent_seconds" in metrics["timings"]
    # a corrupt file fails with its reason while the others complete
    assert (
        rows["corrupt"]["error_type"] == "ImageLoadError"
        and "not a recognised image" in rows["corrupt"]["error"]
    )
    assert rows["corrupt"]["attempts"] == 1
    assert "no camera label for 'nolabel.png'" in rows["nolabel"]["error"]
    assert local_batch["report"].counts == {"pending": 0, "running": 0, "done": 3, "failed": 2}


def test_killed_worker_image_is_retried_nothing_lost_or_duplicated(local_batch):
    killed = local_batch["killed"]
    assert killed, "the killer thread never saw head1 running"
    out = local_batch["out"]
    events = read_events(out / "manifest.sqlite")
    lost = [e for e in events if e["event"] == "lost"]
    assert [e["key"] for e in lost] == ["head1"] and lost[0]["worker"] == killed["worker"]
    assert "signal 9" in json.loads(lost[0]["detail"])["reason"]
    done = Counter(e["key"] for e in events if e["event"] == "done")
    assert done == {"head0": 1, "head1": 1, "head2": 1}, "each image finished exactly once"
    row = read_rows(out / "manifest.sqlite")["head1"]
    assert row["attempts"] == 2 and row["worker"] != killed["worker"]
    # the other worker went on; the killed one was replaced by a new process
    assert killed["worker"] not in {e["worker"] for e in events if e["event"] == "done"}
    assert killed["worker"] in {e["worker"] for e in events if e["event"] == "worker_ready"}


def test_rerun_skips_finished_and_retries_failed_up_to_the_limit(local_batch):
    settings = local_batch["settings"]
    out = local_batch["out"]
    before = {k: r["finished_at"] for k, r in read_rows(out / "manifest.sqlite").items()}
    # the failing images are retried by a re-run; the finished ones are not touched
    report = run_batch(_with(settings, max_attempts=2, workers=1))
    rows = read_rows(out / "manifest.sqlite")
    assert {k for k, r in rows.items() if r["status"] == "done"} == {"head0", "head1", "head2"}
    assert all(rows[k]["finished_at"] == before[k] for k in ("head0", "head1", "head2"))
    assert rows["corrupt"]["attempts"] == 2 and rows["nolabel"]["attempts"] == 2
    assert {i.key for i in report.items} == {"corrupt"}  # only the corrupt file went to a worker
    # at the limit: nothing left to do, no worker is started
    report = run_batch(_with(settings, max_attempts=2))
    assert (
        report.items == ()
        and report.backend == {}
        and any("max-attempts" in n for n in report.notes)
    )


def _with(settings, **changes):
    import attrs

    return attrs.evolve(settings, **changes)


def test_summary_command(local_batch, capsys):
    code = main(["batch", "--summary", str(local_batch["out"])])
    assert code == 0
    text = capsys.readouterr().out
    assert "done" in text and "failed" in text and "pending" in text and "mean s/image" in text
    assert "reconstruction.psnr" in text
    assert "corrupt" in text and "not a recognised image" in text
