"""Fractions of a GPU per job: checked, passed to Ray, placed on one device each."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest

from runners.benchmarks.base import Resources, gpu_share
from runners.dispatch import job_resources, task_options
from tests.runners.test_faults import ROOT, jobs_and_runs, queue_mini


def test_gpu_shares_are_checked() -> None:
    for ok in (0, 0.25, 0.5, 1, 2, 4.0):
        assert gpu_share(ok) == float(ok)
    for bad in (-0.5, 1.5, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="gpus"):
            gpu_share(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Resources.gpus .* got 2.5"):
        Resources(gpus=2.5)
    with pytest.raises(ValueError, match=r"Resources\.cpus"):
        Resources(cpus=0)


def test_the_operator_overrides_the_protocols_gpus() -> None:
    protocol = Resources(cpus=4.0, gpus=1.0)
    assert job_resources(protocol) == protocol
    assert job_resources(protocol, 0.25) == Resources(cpus=4.0, gpus=0.25)
    assert job_resources(protocol, 0) == Resources(cpus=4.0, gpus=0.0)
    assert task_options(Resources(cpus=1.0, gpus=0.25)) == {
        "num_cpus": 1.0, "num_gpus": 0.25, "max_retries": 1
    }  # fmt: skip


def test_fractional_gpus_reach_rays_placement(tmp_path: Path) -> None:
    """On a cluster with fake GPUs: each job sees exactly one device, shares are never split.

    8 jobs of 0.25 run at once on 3 devices, at most 4 per device; jobs of
    0.75 never share a device at the same time; and `mtlb run --gpus-per-job
    0.5`'s jobs hold 0.5 GPU each while they run.
    """
    url = f"sqlite:///{tmp_path / 'share.sqlite'}"
    queue_mini(url, tmp_path, ["hps-equal"], seeds=2)
    script = Path(__file__).with_name("gpu_share_scenario.py")
    done = subprocess.run(
        [sys.executable, str(script), url, str(tmp_path / "storage"), str(tmp_path / "marks")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["options"]["quarter"]["num_gpus"] == 0.25

    def device(job: dict[str, str | list[str]]) -> tuple[str, str]:
        # Exactly one device, and Ray's id for it is what CUDA_VISIBLE_DEVICES names.
        assert job["gpu_ids"] == [job["visible"]], job
        assert isinstance(job["visible"], str) and job["visible"].isdigit()
        return str(job["node"]), job["visible"]

    quarters = seen["quarter"]
    assert len(quarters) == 8 and all(job["together"] >= 8 for job in quarters)  # all at once
    per_device = Counter(device(job) for job in quarters)
    assert max(per_device.values()) <= 4 and sum(per_device.values()) == 8

    three_quarters = seen["three_quarter"]
    assert len(three_quarters) == 4
    for a, b in combinations(three_quarters, 2):
        if device(a) == device(b):  # one after the other, never together
            assert a["end"] <= b["start"] or b["end"] <= a["start"]

    assert seen["dispatcher_states"] == ["succeeded", "succeeded"], seen["dispatcher_errors"]
    # Ray's books while the jobs ran: 0.5 GPU per job, one or both jobs at a time.
    assert set(seen["dispatcher_gpus_in_use"]) - {0.0} <= {0.5, 1.0}
    assert 0.5 in seen["dispatcher_gpus_in_use"] or 1.0 in seen["dispatcher_gpus_in_use"]
    jobs, runs = jobs_and_runs(url)
    assert sorted(runs.values()) == [1, 1] and len(jobs) == 3  # the third seed was cancelled
