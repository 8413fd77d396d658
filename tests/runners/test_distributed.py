"""Data-parallel jobs on Ray Train: two CPU workers (gloo) train as one process would."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import select

from db.models import Job, JobState, Run
from db.session import transaction
from runners.benchmarks import BENCHMARKS
from runners.benchmarks.base import Protocol, Resources
from runners.dispatch import run_jobs
from runners.distributed import (
    TorchDataParallel,
    execute_data_parallel,
    report_outcome,
    reported_outcome,
)
from runners.jobs import JobOutcome
from runners.train import load_checkpoint, train
from submissions.spec import validate
from submissions.submit import store

MINI = "synthetic-scenes-mini"
VERSION = BENCHMARKS.get(MINI).latest_version  # the version SPEC validates to
# SGD, not Adam: Adam's first steps are about lr * sign(g), so a gradient that rounds
# differently near zero would move a parameter by a whole step; SGD's update is linear in g.
SPEC = {
    "spec_version": 1,
    "name": "hps-equal-sgd",
    "benchmark": MINI,
    "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
    "weighting": {"name": "equal"},
    "optimizer": {"name": "sgd", "lr": 0.1},
}
BATCH = 16  # the mini protocol's batch: 16 scenes are one step per epoch


def normalised() -> dict[str, Any]:
    spec, problems = validate(SPEC)
    assert spec is not None, problems
    return spec.normalised


def two_epochs() -> Protocol:
    """The mini protocol in 2 epochs: its checkpoint after epoch 0, the last one it writes,
    holds the state after one step when an epoch is one batch."""
    return dataclasses.replace(BENCHMARKS.get(MINI).protocol(VERSION), epochs=2)


def one_batch() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    benchmark = BENCHMARKS.get(MINI)
    protocol = benchmark.protocol(VERSION)
    train_split = benchmark.load("train", protocol)
    test_split = benchmark.load("test", protocol)
    return {k: v[:BATCH] for k, v in train_split.items()}, test_split


def _worker(config: dict[str, Any]) -> None:
    """A Ray Train worker: the real loop with the real hook, on one batch per epoch."""
    import ray.train

    context = ray.train.get_context()
    parallel = TorchDataParallel(context.get_world_rank(), context.get_world_size())
    BENCHMARKS.get(MINI).protocols[VERSION] = two_epochs()  # in this worker process only
    torch.set_num_threads(1)
    train_data, test_data = one_batch()
    result = train(
        config["spec"], 0, train_data=train_data, evaluation_data=test_data,
        checkpoint=Path(config["checkpoint"]), parallel=parallel,
    )  # fmt: skip
    report_outcome(JobOutcome.succeeded(result), parallel.rank)


def test_data_parallel_step_equals_single_process_step(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step of two workers on 8 scenes each == a step of one process on the 16, to 1e-5."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    spec = normalised()
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"spec": spec, "checkpoint": str(tmp_path / "dp.pt")},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="dp", storage_path=str(tmp_path / "ray")),
    )
    reported = reported_outcome(trainer.fit()).result
    assert reported is not None
    parallel_metrics = reported.metrics

    monkeypatch.setitem(BENCHMARKS.get(MINI).protocols, VERSION, two_epochs())
    torch.set_num_threads(1)
    train_data, test_data = one_batch()
    single = train(
        spec, 0, train_data=train_data, evaluation_data=test_data, checkpoint=tmp_path / "one.pt"
    )
    # What the test tells apart: one process on only the first worker's shard.
    shard = {k: v[: BATCH // 2] for k, v in train_data.items()}
    train(spec, 0, train_data=shard, evaluation_data=test_data, checkpoint=tmp_path / "half.pt")

    parallel = load_checkpoint(tmp_path / "dp.pt", "cpu")
    whole = load_checkpoint(tmp_path / "one.pt", "cpu")
    half = load_checkpoint(tmp_path / "half.pt", "cpu")
    assert parallel["epoch"] == whole["epoch"] == 0
    moved_apart = 0.0
    for name, value in whole["model"].items():
        torch.testing.assert_close(parallel["model"][name], value, rtol=0, atol=1e-5, msg=name)
        if value.is_floating_point():
            moved_apart = max(moved_apart, float((half["model"][name] - value).abs().max()))
    assert moved_apart > 1e-3  # a shard's gradient is not the batch's: the check has teeth
    for task, values in single.metrics.items():
        for metric, value in values.items():
            assert parallel_metrics[task][metric] == pytest.approx(value, rel=1e-4, abs=1e-4)


def test_data_parallel_job_runs_through_the_dispatcher_once(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workers=2 protocol on the mini data: one job, two Ray Train workers, one run stored."""
    benchmark = BENCHMARKS.get(MINI)
    protocol = dataclasses.replace(
        benchmark.protocol(VERSION), resources=Resources(cpus=1, workers=2)
    )
    # The dispatcher reads the resources in this process; the workers train the same protocol.
    monkeypatch.setitem(benchmark.protocols, VERSION, protocol)
    url = f"sqlite:///{tmp_path / 'dp.sqlite'}"
    spec, problems = validate(SPEC)
    assert spec is not None, problems
    with transaction(url) as session:
        store(session, spec, "")

    summary = run_jobs(url, max_jobs=1, storage=tmp_path / "storage")
    assert [(r.seed, r.state, r.recorded) for r in summary.reports] == [
        (0, JobState.SUCCEEDED, True)
    ], summary.reports
    with transaction(url) as session:
        runs = session.scalars(select(Run)).all()
        assert len(runs) == 1
        run = runs[0]
        assert session.get(Job, run.job_id).seed == 0  # type: ignore[union-attr]
        queued = session.scalars(select(Job).where(Job.state == JobState.QUEUED)).all()
        assert sorted(j.seed for j in queued) == [1, 2]
        stored = {(m.task, m.metric): m.value for m in run.metric_values}
        assert run.device.startswith("cpu") and run.parameter_count > 0
    assert list((tmp_path / "storage").iterdir()) == []  # the job's folder went with its result

    # Every metric of the benchmark, finite.  (Equality with one process is checked per
    # step above; over a whole job, float rounding at different places compounds.)
    directions = benchmark.metric_directions
    assert stored.keys() == {(t, m) for t, metrics in directions.items() for m in metrics}
    assert all(math.isfinite(v) for v in stored.values())


def test_a_data_parallel_job_needs_two_workers() -> None:
    outcome = execute_data_parallel(json.dumps(normalised()), 0, 1.0, 0.0, 1)
    assert outcome.state == JobState.FAILED
    assert str(outcome.error).startswith(
        "TypeError: a data-parallel job needs an int of at least 2 workers, got 1"
    )
