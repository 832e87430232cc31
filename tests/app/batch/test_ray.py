"""The Ray backend on a local Ray (2 CPUs, no dashboard, usage stats off): a killed actor, the
generator loaded once per actor, and results identical to the local pool's."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict

import pytest

from tests.app.batch.conftest import (
    copy_inputs,
    fast_settings,
    load_result_tensors,
    read_events,
    read_rows,
    run_with_kill,
)

pytestmark = pytest.mark.dist


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="the dist extra (ray) is not installed")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_batch(ray_local, symheads_images, tmp_path_factory):
    """3 heads on 2 actors x 1 thread; the actor processing head1 is SIGKILLed mid-image."""
    root = tmp_path_factory.mktemp("ray-batch")
    inputs = copy_inputs(symheads_images, root / "in")
    settings = fast_settings(inputs, root / "out", ray="auto", workers=2, threads=1)
    report, killed = run_with_kill(settings, "head1")
    return {"report": report, "killed": killed, "out": root / "out"}


def test_killed_actor_image_is_retried_nothing_lost_or_duplicated(ray_batch):
    assert ray_batch["killed"], "the killer thread never saw head1 running"
    out = ray_batch["out"]
    assert ray_batch["report"].counts == {"pending": 0, "running": 0, "done": 3, "failed": 0}
    assert (
        ray_batch["report"].backend["backend"] == "ray"
        and ray_batch["report"].backend["workers"] == 2
    )
    events = read_events(out / "manifest.sqlite")
    lost = [e for e in events if e["event"] == "lost"]
    assert [e["key"] for e in lost] == ["head1"] and lost[0]["worker"] == ray_batch["killed"][
        "worker"
    ]
    assert "ActorDiedError" in json.loads(lost[0]["detail"])["reason"]
    assert Counter(e["key"] for e in events if e["event"] == "done") == {
        "head0": 1,
        "head1": 1,
        "head2": 1,
    }
    rows = read_rows(out / "manifest.sqlite")
    assert (
        rows["head1"]["attempts"] == 2 and rows["head1"]["worker"] != ray_batch["killed"]["worker"]
    )
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        ".work",
        "head0",
        "head1",
        "head2",
    ]
    # the killed attempt's work folder was resumed and renamed: only lock files stay in .work
    assert all(p.suffix == ".lock" and p.is_file() for p in (out / ".work").iterdir())


def test_each_actor_loads_the_generator_once(ray_batch):
    events = read_events(ray_batch["out"] / "manifest.sqlite")
    served = defaultdict(list)
    for e in events:
        if e["event"] == "done":
            served[e["worker"]].append(json.loads(e["detail"])["worker_images"])
    # 3 images + 1 killed attempt on at most 3 actor processes (2 + the replacement): an actor
    # that survived went on to its next image with the generator it had loaded at start
    assert max(n for counts in served.values() for n in counts) >= 2
    for counts in served.values():
        assert counts == sorted(counts) and len(set(counts)) == len(counts)
    loads = [e for e in events if e["event"] == "worker_ready"]  # one generator load each
    attempts = [e for e in events if e["event"] == "started"]
    assert 2 <= len(loads) <= 3 < len(attempts) == 4
    assert {e["worker"] for e in attempts} <= {e["worker"] for e in loads}


def test_ray_and_local_pool_give_identical_results(ray_batch, local_batch):
    # both: 1 torch thread per worker, same seed (config default), same settings; head1 was
    # killed and retried on both backends
    for key in ("head0", "head1", "head2"):
        ray_t = load_result_tensors(ray_batch["out"] / key)
        local_t = load_result_tensors(local_batch["out"] / key)
        assert ray_t.keys() == local_t.keys() and len(ray_t) > 1
        for name in ray_t:
            assert (ray_t[name] == local_t[name]).all(), f"{key} {name} differs"
