"""Sizing the local pool to the machine."""

from __future__ import annotations

import pytest

from sym3d.app.batch.sizing import CPU_WORKER_MEMORY, plan_local
from sym3d.app.batch.tasks import Placement
from sym3d.errors import UserInputError

BIG = 64 * CPU_WORKER_MEMORY


def test_cpu_default_splits_the_cores():
    assert plan_local("auto", cores=2, gpus=0, memory=BIG) == [Placement(device="cpu", threads=2)]
    plan = plan_local("auto", cores=16, gpus=0, memory=BIG)
    assert len(plan) == 8 and {p.threads for p in plan} == {2}
    assert [p.threads for p in plan_local("cpu", workers=2, cores=2, memory=BIG)] == [1, 1]
    assert [p.threads for p in plan_local("cpu", workers=3, cores=2, memory=BIG)] == [1, 1, 1]


def test_memory_caps_cpu_workers():
    assert len(plan_local("cpu", cores=32, gpus=0, memory=3 * CPU_WORKER_MEMORY)) == 3


def test_one_worker_per_gpu():
    plan = plan_local("auto", cores=8, gpus=2)
    assert plan == [Placement(device="cuda:0", threads=4), Placement(device="cuda:1", threads=4)]
    assert [p.device for p in plan_local("cuda", workers=3, cores=8, gpus=2)] == [
        "cuda:0",
        "cuda:1",
        "cuda:0",
    ]
    assert {p.device for p in plan_local("cuda:1", workers=2, cores=8, gpus=2)} == {"cuda:1"}
    assert {p.device for p in plan_local("cpu", workers=2, cores=8, gpus=2)} == {"cpu"}


def test_bad_requests():
    with pytest.raises(UserInputError, match="no CUDA device"):
        plan_local("cuda", cores=2, gpus=0)
    with pytest.raises(UserInputError, match="--workers"):
        plan_local("cpu", workers=0)
    with pytest.raises(UserInputError, match="--threads"):
        plan_local("cpu", threads=0)
