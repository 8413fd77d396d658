"""Equal-budget tuning: the validation split, the choice, a real Ray Tune run via the dispatcher."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import select

from db.models import Job, JobState, MetricValue, Role, Run, Submission, Tuning
from db.queue import store_submission
from db.session import session_factory, transaction
from db.tunings import store_tuning
from runners import tuning
from runners.benchmarks import BENCHMARKS
from runners.benchmarks.synthetic_scenes import SyntheticScenes
from runners.dispatch import Dispatch, JobReport, RunSummary, WorkItem, run_jobs, with_chosen
from runners.splits import validation_split
from runners.train import train
from runners.tuning import Trial, TuningError
from submissions.submit import check_file, store

MINI = BENCHMARKS.get("synthetic-scenes-mini")
PROTOCOL = MINI.protocol(1)

# A learning rate at which the mini benchmark's 3 epochs barely train: the random second
# trial (deterministic: Tune's search is seeded from the spec) learns more and is chosen.
TUNED = """\
spec_version: 1
name: hps-dwa-tuned
benchmark: synthetic-scenes-mini
architecture: {name: hard-sharing, backbone: small-cnn}
weighting: {name: dwa, temperature: 2.0}
optimizer: {name: adam, lr: 1.0e-4}
search:
  optimizer.lr: {low: 1.0e-4, high: 3.0e-2, log: true}
"""


def test_the_validation_split_is_disjoint_deterministic_and_sized() -> None:
    fit, validation = validation_split(64, 0.2, "synthetic-scenes-mini", 1)
    assert len(validation) == 13 and len(fit) == 51  # round(64 * 0.2) = 13
    assert set(fit).isdisjoint(validation)
    assert sorted([*fit, *validation]) == list(range(64))
    again = validation_split(64, 0.2, "synthetic-scenes-mini", 1)
    assert np.array_equal(again[0], fit) and np.array_equal(again[1], validation)
    # Another protocol version (or benchmark) may carve another split.
    other = validation_split(64, 0.2, "synthetic-scenes-mini", 2)
    assert not np.array_equal(other[1], validation)
    assert len(validation_split(1024, 0.2, "synthetic-scenes", 1)[1]) == 205
    assert [len(p) for p in validation_split(10, 0.01, "b", 1)] == [9, 1]
    assert [len(p) for p in validation_split(10, 0.99, "b", 1)] == [1, 9]
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        validation_split(64, 1.0, "b", 1)


def test_tuning_data_reads_the_train_split_only(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    load = SyntheticScenes.load

    def recording(self: SyntheticScenes, split: str, protocol: Any) -> Any:
        asked.append(split)
        return load(self, split, protocol)

    monkeypatch.setattr(SyntheticScenes, "load", recording)
    fit, validation = tuning.tuning_data(MINI, PROTOCOL)
    assert asked == ["train"]
    whole = MINI.load("train", PROTOCOL)
    fit_index, validation_index = validation_split(64, 0.2, MINI.name, 1)
    for name, tensor in whole.items():
        assert torch.equal(fit[name], tensor[torch.from_numpy(fit_index)])
        assert torch.equal(validation[name], tensor[torch.from_numpy(validation_index)])


def test_training_on_given_data_loads_no_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a trial runs: `train` with the fit and validation parts never touches a split."""
    fit, validation = tuning.tuning_data(MINI, PROTOCOL)
    # A few items keep it quick: one step per epoch.
    fit = {name: tensor[:8] for name, tensor in fit.items()}
    validation = {name: tensor[:4] for name, tensor in validation.items()}

    def refuse(self: SyntheticScenes, split: str, protocol: Any) -> Any:
        raise AssertionError(f"{split} split loaded")

    monkeypatch.setattr(SyntheticScenes, "load", refuse)
    spec, _ = _spec_and_source()
    result = train(spec, 0, train_data=fit, evaluation_data=validation)
    assert set(result.metrics) == {"segmentation", "depth", "normal"}


def _spec_and_source(directory: Path | None = None) -> tuple[dict[str, Any], str]:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(directory or scratch) / "tuned.yaml"
        path.write_text(TUNED)
        checked = check_file(path)
    assert checked.spec is not None, checked.problems
    return checked.spec.normalised, checked.source


DIRECTIONS = {"seg": {"miou": True}, "depth": {"abs_err": False, "rel_err": False}}


def test_objectives_are_delta_m_per_task_against_the_first_trial() -> None:
    first = {"seg": {"miou": 0.50}, "depth": {"abs_err": 0.40, "rel_err": 0.25}}
    second = {"seg": {"miou": 0.40}, "depth": {"abs_err": 0.50, "rel_err": 0.20}}
    trials = [
        Trial({"optimizer.lr": 1e-3}, "succeeded", metrics=first),
        Trial({"optimizer.lr": 1e-2}, "succeeded", metrics=second),
        Trial({"optimizer.lr": 5e-2}, "diverged", error="training loss not finite"),
    ]
    # db.delta_m's worked example: 100 * mean(-0.20, mean(-0.25, +0.20)) = -11.25.
    assert tuning.objectives(trials, DIRECTIONS) == [0.0, pytest.approx(-11.25, abs=1e-12), None]
    # A metric that is zero for the first trial is left out for every trial.
    zero = {"seg": {"miou": 0.0}, "depth": {"abs_err": 0.40, "rel_err": 0.25}}
    scored = tuning.objectives(
        [Trial({}, "succeeded", metrics=zero), Trial({}, "succeeded", metrics=second)],
        DIRECTIONS,
    )
    assert scored == [0.0, pytest.approx(100 * (-0.25 + 0.20) / 2, abs=1e-12)]
    with pytest.raises(TuningError, match="the spec's own values failed on the validation split"):
        tuning.objectives([Trial({}, "failed", error="boom"), *trials[:2]], DIRECTIONS)


def test_the_best_objective_is_chosen_the_earliest_on_a_tie() -> None:
    def trial(lr: float, objective: float | None) -> Trial:
        return Trial({"optimizer.lr": lr}, "succeeded", objective=objective)

    assert tuning.choose([trial(1, 0.0), trial(2, 3.0), trial(3, None), trial(4, 1.0)]) == {
        "optimizer.lr": 2
    }
    assert tuning.choose([trial(1, 0.0), trial(2, -1.0)]) == {"optimizer.lr": 1}
    assert tuning.choose([trial(1, 2.0), trial(2, 2.0), trial(3, 2.0)]) == {"optimizer.lr": 1}
    with pytest.raises(TuningError, match="no trial succeeded"):
        tuning.choose([trial(1, None)])


def test_values_are_merged_into_the_spec_and_recorded() -> None:
    spec, _ = _spec_and_source()
    merged = tuning.with_values(spec, {"optimizer.lr": 0.003, "weighting.temperature": 1.5})
    assert merged["optimizer"] == {"name": "adam", "lr": 0.003, "weight_decay": 0.0}
    assert merged["weighting"] == {"name": "dwa", "temperature": 1.5}
    assert merged["tuned"] == {"optimizer.lr": 0.003, "weighting.temperature": 1.5}
    assert spec["optimizer"]["lr"] == 1e-4  # the stored spec is left as it was
    with pytest.raises(ValueError, match="the spec has no 'scheduler' section"):
        tuning.with_values(spec, {"scheduler.min_lr": 0.0})


def test_integer_ranges_include_high() -> None:
    space = tuning.param_space(
        {
            "architecture.head_width": {"low": 8, "high": 10, "log": False},
            "x.y": {"choices": [1, 2]},
        }
    )
    seen = {space["architecture.head_width"].sample() for _ in range(200)}
    assert seen == {8, 9, 10}
    assert space["x.y"].categories == [1, 2]


def test_the_first_tuning_stored_wins(database_url: str) -> None:
    spec, source = _spec_and_source()
    with transaction(database_url) as session:
        submission, _ = store_submission(
            session, spec=spec, spec_hash="a" * 64, source=source, role=Role.METHOD
        )
        sid = submission.id
    factory = session_factory(database_url)
    common: dict[str, Any] = {"trial_budget": 2, "validation_size": 13, "objective": "Δm"}
    first = store_tuning(factory, sid, chosen={"optimizer.lr": 0.01}, trials=[{"a": 1}], **common)
    # A second dispatcher that tuned at the same time: its insert loses, it reads the winner's.
    second = store_tuning(factory, sid, chosen={"optimizer.lr": 0.02}, trials=[{"b": 2}], **common)
    assert first["chosen"] == second["chosen"] == {"optimizer.lr": 0.01}
    assert second["trials"] == [{"a": 1}]
    with transaction(database_url) as session:
        assert len(session.scalars(select(Tuning)).all()) == 1


def _plain_delta_m(result: dict[str, Any], reference: dict[str, Any], higher: Any) -> float:
    """Δm per task written out independently of db.delta_m: mean over tasks of the mean of
    s (M - B) / B over a task's metrics, x100; metrics with B = 0 left out."""
    per_task = []
    for task, metrics in reference.items():
        ds = [
            (1 if higher[task, m] else -1) * (result[task][m] - b) / b
            for m, b in metrics.items()
            if b != 0
        ]
        if ds:
            per_task.append(sum(ds) / len(ds))
    return 100 * sum(per_task) / len(per_task)


def test_the_dispatcher_tunes_once_then_trains_the_seeds_with_the_chosen_values(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'tuning.sqlite'}"
    (tmp_path / "tuned.yaml").write_text(TUNED)
    with transaction(url) as session:
        checked = check_file(tmp_path / "tuned.yaml")
        assert checked.spec is not None
        store(session, checked.spec, checked.source)

    # Which splits the dispatcher (the driver) loads while it tunes.  The trials get their
    # data from it through Ray's object store (and train on given data loads no split, above).
    loads: list[tuple[str, bool]] = []
    tuning_now = [False]
    load, tune_spec = SyntheticScenes.load, tuning.tune_spec

    def recording(self: SyntheticScenes, split: str, protocol: Any) -> Any:
        loads.append((split, tuning_now[0]))
        return load(self, split, protocol)

    def observed(spec: Any) -> Any:
        tuning_now[0] = True
        try:
            return tune_spec(spec)
        finally:
            tuning_now[0] = False

    monkeypatch.setattr(SyntheticScenes, "load", recording)
    monkeypatch.setattr(tuning, "tune_spec", observed)
    summary = run_jobs(url)
    assert [r.state for r in summary.reports] == [JobState.SUCCEEDED] * 3
    assert ("train", True) in loads and ("test", True) not in loads

    with transaction(url) as session:
        row = session.scalars(select(Tuning)).one()
        trials = row.trials
        assert row.trial_budget == PROTOCOL.tuning_trials == len(trials) == 2
        assert row.validation_size == 13
        assert trials[0]["values"] == {"optimizer.lr": 1e-4}  # the spec's own values first
        assert all(t["state"] == "succeeded" for t in trials)
        higher = {
            (m.task, m.metric): m.higher_is_better for m in session.scalars(select(MetricValue))
        }
        for t in trials:
            expected = _plain_delta_m(t["metrics"], trials[0]["metrics"], higher)
            assert math.isclose(t["objective"], expected, rel_tol=1e-9, abs_tol=1e-9)
        best = max(trials, key=lambda t: t["objective"])
        assert row.chosen == best["values"] != trials[0]["values"]
        assert 1e-4 <= row.chosen["optimizer.lr"] <= 3e-2
        runs = session.scalars(select(Run).order_by(Run.seed)).all()
        assert [r.seed for r in runs] == [0, 1, 2]
        assert all(r.tuned_values == row.chosen for r in runs)
        stored = {(m.task, m.metric): m.value for m in runs[0].metric_values}
        spec = dict(session.scalars(select(Submission)).one().spec)

    # Seed 0 retrained here with the chosen values (one thread, as in the worker): the same
    # metrics as the stored run; the spec's own values give others.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = train(tuning.with_values(spec, row.chosen), 0).metrics
    finally:
        torch.set_num_threads(threads)
    for (task, metric), value in stored.items():
        assert math.isclose(again[task][metric], value, rel_tol=1e-6, abs_tol=1e-9)

    # Claimed again (a rerun), a job of the submission trains with the stored tuning's values,
    # without a second tuning.
    def refuse(spec: Any) -> Any:
        raise AssertionError("tuned twice")

    monkeypatch.setattr(tuning, "tune_spec", refuse)
    with transaction(url) as session:
        job = session.scalars(select(Job).where(Job.seed == 1)).one()
        item = WorkItem(
            job.id, job.submission_id, "hps-dwa-tuned", 1, dict(job.submission.spec), "k"
        )
    dispatch = Dispatch(session_factory(url), None, RunSummary(), tmp_path, None)  # type: ignore[arg-type]
    assert dispatch.tune_first([item]) == [with_chosen(item, row.chosen)]
    assert dispatch.waiting == {}


def test_tuning_runs_beside_the_other_jobs_and_a_failed_one_respects_leases(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain job finishes while a tuning still runs; the failed tuning fails only held jobs.

    The tuning waits for the plain job's report: a dispatcher that tuned before
    sending any job would never report it, and the wait would time out.
    """
    url = f"sqlite:///{tmp_path / 'beside.sqlite'}"
    (tmp_path / "tuned.yaml").write_text(TUNED)
    plain = TUNED.replace("name: hps-dwa-tuned", "name: hps-equal-plain").replace(
        "weighting: {name: dwa, temperature: 2.0}", "weighting: {name: equal}"
    )
    (tmp_path / "plain.yaml").write_text(plain.split("search:")[0])
    with transaction(url) as session:
        for name in ("tuned.yaml", "plain.yaml"):
            checked = check_file(tmp_path / name)
            assert checked.spec is not None, checked.problems
            store(session, checked.spec, checked.source)
        plain_ids = set(
            session.scalars(
                select(Job.id).join(Job.submission).where(Submission.name == "hps-equal-plain")
            )
        )
    plain_done = threading.Event()
    waited: list[bool] = []

    def after_the_plain_jobs(spec: Any) -> Any:
        waited.append(plain_done.wait(timeout=120))
        with transaction(url) as session:  # another dispatcher took one job over
            stolen = session.scalars(
                select(Job).where(Job.id.not_in(plain_ids)).order_by(Job.id)
            ).first()
            assert stolen is not None
            stolen.lease_owner = "another dispatcher"
        raise TuningError("boom")

    def seen(report: JobReport) -> None:
        if report.job_id in plain_ids and report.recorded:
            reported.add(report.job_id)
            if reported == plain_ids:
                plain_done.set()

    reported: set[int] = set()
    monkeypatch.setattr(tuning, "tune_spec", after_the_plain_jobs)
    summary = run_jobs(url, on_report=seen)
    assert waited == [True]  # the plain jobs were recorded while the tuning ran
    with transaction(url) as session:
        jobs = {j.id: j for j in session.scalars(select(Job))}
    assert {i for i, j in jobs.items() if j.state == JobState.SUCCEEDED} == plain_ids
    tuned = {i: j for i, j in jobs.items() if i not in plain_ids}
    states = sorted((j.state.value, j.lease_owner == "another dispatcher") for j in tuned.values())
    assert states == [("failed", False), ("failed", False), ("running", True)]
    assert {j.error for j in tuned.values() if j.state == JobState.FAILED} == {
        "tuning failed: TuningError: boom"
    }
    lost = [r for r in summary.reports if not r.recorded]
    assert len(lost) == 1 and "no longer running under this dispatcher's lease" in str(
        lost[0].error
    )


def test_a_failed_tuning_fails_the_submission_s_jobs_with_the_reason(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'failed.sqlite'}"
    (tmp_path / "tuned.yaml").write_text(TUNED)
    with transaction(url) as session:
        checked = check_file(tmp_path / "tuned.yaml")
        assert checked.spec is not None
        store(session, checked.spec, checked.source)

    def fail(spec: Any) -> Any:
        raise TuningError("the spec's own values failed on the validation split: boom")

    monkeypatch.setattr(tuning, "tune_spec", fail)
    summary = run_jobs(url)
    assert [r.state for r in summary.reports] == [JobState.FAILED] * 3
    with transaction(url) as session:
        errors = {job.error for job in session.scalars(select(Job))}
        assert errors == {
            "tuning failed: TuningError: the spec's own values failed on the validation split: boom"
        }
        assert session.scalars(select(Tuning)).all() == []
        assert session.scalars(select(Run)).all() == []
