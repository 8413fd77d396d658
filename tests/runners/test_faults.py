"""Failures on real Ray: a worker node dies, a dispatcher is killed, two dispatchers share a queue.

Each scenario runs real processes (`mtlb run`, a Ray cluster) and asserts on
the database they leave: every job finished once, no run stored twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from db.models import Job, JobState, Run, Submission, utcnow
from db.queue import claim_jobs, trained_spec
from db.session import session_factory as url_factory
from db.session import transaction
from runners.benchmarks import BENCHMARKS
from runners.dispatch import JobReport, WorkItem, record, run_jobs
from runners.jobs import JobOutcome
from runners.train import RunResult
from submissions.submit import check_file, store
from tests.conftest import mini_spec

ROOT = Path(__file__).resolve().parents[2]
MTLB = [sys.executable, "-c", "from submissions.cli import app; app()"]


def queue_mini(
    url: str, directory: Path, names: list[str], seeds: int = 3, width: float = 1.0
) -> None:
    """Submit mini specs; keep the first `seeds` jobs of each, cancel the rest.

    `width`: the backbone's width multiplier; wider is slower, so that a job
    is still training when a test kills what runs it.
    """
    with transaction(url) as session:
        for name in names:
            path = mini_spec(name, directory)
            if width != 1.0:
                document = yaml.safe_load(path.read_text())
                document["architecture"]["backbone"] = {
                    "name": "small-cnn",
                    "width_multiplier": width,
                }
                path.write_text(yaml.safe_dump(document))
            checked = check_file(path)
            assert checked.spec is not None, checked.problems
            store(session, checked.spec, checked.source)
        for job in session.scalars(select(Job).where(Job.seed >= seeds)):
            job.state = JobState.CANCELLED


def jobs_and_runs(url: str) -> tuple[dict[int, Job], Counter[int]]:
    with transaction(url) as session:
        jobs = {job.id: job for job in session.scalars(select(Job))}
        runs = Counter(session.scalars(select(Run.job_id)))
    return jobs, runs


def ray_address() -> str:
    import ray

    return str(ray.get_runtime_context().gcs_address)


def test_worker_node_death_job_is_retried_elsewhere_and_recorded_once(tmp_path: Path) -> None:
    """Relies on Ray's task retry (max_retries=1) after node death, and on the job's checkpoint."""
    url = f"sqlite:///{tmp_path / 'cluster.sqlite'}"
    # Three times as wide: the job is still training when its first checkpoint
    # appears and the scenario freezes it (the node then dies mid-job).
    queue_mini(url, tmp_path, ["hps-equal"], seeds=1, width=3.0)
    storage = tmp_path / "storage"
    script = Path(__file__).with_name("cluster_scenario.py")
    done = subprocess.run(
        [sys.executable, str(script), url, str(storage)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["dispatcher_rc"] == 0, seen["dispatcher_output"]
    assert seen["frozen"] == 1  # the job was caught mid-training on the node that died
    # `mtlb run --address` attached to the cluster, and the job asked for its protocol's CPUs.
    protocol = BENCHMARKS.get("synthetic-scenes-mini").protocol(1)
    assert seen["cpus_in_use"] == protocol.resources.cpus
    jobs, runs = jobs_and_runs(url)
    [job] = [j for j in jobs.values() if j.state != JobState.CANCELLED]
    assert job.state == JobState.SUCCEEDED and runs == {job.id: 1}
    with transaction(url) as session:
        run = session.scalars(select(Run)).one()
        # The retry ran on the other node and resumed from the dead node's checkpoint.
        assert run.resumed_from_epoch is not None
    assert seen["checkpoints_left"] == []  # deleted once the result was recorded


def test_killed_dispatcher_jobs_are_requeued_after_its_lease_expires(
    ray_local: None, tmp_path: Path
) -> None:
    """Relies on leases in the database, not on Ray (the killed driver's tasks die with it)."""
    url = f"sqlite:///{tmp_path / 'killed.sqlite'}"
    queue_mini(url, tmp_path, ["hps-equal"])
    storage = tmp_path / "storage"
    first = subprocess.Popen(
        [*MTLB, "--database", url, "run", "--address", ray_address(), "--lease", "3s",
         "--storage", str(storage)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:  # mid-campaign: one job done, the others running
            jobs, _ = jobs_and_runs(url)
            if any(j.state == JobState.SUCCEEDED for j in jobs.values()):
                break
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    jobs, _ = jobs_and_runs(url)
    left = {i for i, j in jobs.items() if j.state == JobState.RUNNING}
    assert left, "the first dispatcher finished every job before it was killed"
    [owner] = {jobs[i].lease_owner for i in left}

    # Restarted before the lease expires: it takes nothing of the first dispatcher's.
    assert run_jobs(url, lease=timedelta(seconds=3), storage=storage).reports == []
    jobs, _ = jobs_and_runs(url)
    assert {i for i, j in jobs.items() if j.state == JobState.RUNNING} == left
    assert {jobs[i].lease_owner for i in left} == {owner}

    expires = max(e for e in (jobs[i].lease_expires_at for i in left) if e is not None)
    wait = (expires.replace(tzinfo=None) - utcnow().replace(tzinfo=None)).total_seconds()
    time.sleep(max(0.0, wait) + 0.2)
    again = run_jobs(url, storage=storage)
    assert again.requeued == len(left)
    assert {r.job_id for r in again.reports} == left
    jobs, runs = jobs_and_runs(url)
    assert {j.state for j in jobs.values()} == {JobState.SUCCEEDED}
    assert set(runs) == set(jobs) and set(runs.values()) == {1}
    assert {jobs[i].attempts for i in left} == {2}
    assert not any(storage.glob("*/*"))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_dispatchers_drain_one_postgresql_queue(
    ray_local: None, database_url: str, tmp_path: Path
) -> None:
    """Relies on FOR UPDATE SKIP LOCKED claims; failures are recorded while the others succeed."""
    queue_mini(database_url, tmp_path, ["hps-equal", "hps-uncertainty"], seeds=2)
    with transaction(database_url) as session:
        broken = session.scalars(
            select(Submission).where(Submission.name == "hps-uncertainty")
        ).one()
        # Behind the validator's back: the worker re-checks it and fails.
        broken.spec = {**broken.spec, "optimizer": {"name": "adam", "lr": 5.0, "weight_decay": 0.0}}
    command = [*MTLB, "--database", database_url, "run", "--address", ray_address(),
               "--max-jobs", "2", "--storage", str(tmp_path / "storage")]  # fmt: skip
    dispatchers = [
        subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [d.communicate(timeout=180)[0] for d in dispatchers]
    assert [d.returncode for d in dispatchers] == [0, 0], outputs
    jobs, runs = jobs_and_runs(database_url)
    with transaction(database_url) as session:
        rows = session.execute(select(Job.id, Submission.name).join(Job.submission))
        method = {job_id: name for job_id, name in rows}
    live = {i: j for i, j in jobs.items() if j.state != JobState.CANCELLED}
    assert len(live) == 4
    # Each dispatcher claimed two jobs of its own: none claimed twice, none left.
    assert sorted(Counter(j.lease_owner for j in live.values()).values()) == [2, 2]
    assert {j.attempts for j in live.values()} == {1}
    for job in live.values():
        if method[job.id] == "hps-equal":
            assert job.state == JobState.SUCCEEDED and runs[job.id] == 1
        else:
            assert job.state == JobState.FAILED and job.id not in runs
            assert job.error is not None and "exceeds the protocol's maximum" in job.error


def test_record_stores_failures_and_refuses_late_or_second_results(tmp_path: Path) -> None:
    """What a dispatcher does with each outcome, without Ray: the database is the judge."""
    url = f"sqlite:///{tmp_path / 'record.sqlite'}"
    queue_mini(url, tmp_path, ["hps-equal"])
    with transaction(url) as session:
        diverging, late, good = [j.id for j in claim_jobs(session, owner="A")]
        spec = trained_spec(session.get(Job, good))  # type: ignore[arg-type]
    directions = BENCHMARKS.get("synthetic-scenes-mini").metric_directions
    result = RunResult(
        metrics={t: dict.fromkeys(ms, 0.5) for t, ms in directions.items()},
        curves=[],
        parameter_count=1,
        wall_time_s=1.0,
        device="cpu",
    )
    succeeded = JobOutcome.succeeded(result)

    def save(job_id: int, outcome: JobOutcome, owner: str) -> JobReport:
        item = WorkItem(job_id, 1, "hps-equal", 0, spec, key="k")
        return record(url_factory(url), item, outcome, "v", owner=owner)

    error = "training loss not finite in epoch 0: [nan]"
    assert save(diverging, JobOutcome(JobState.DIVERGED, error=error), "A").recorded
    # A result from a dispatcher that no longer holds the job (its lease was taken over).
    refused = save(late, succeeded, "B")
    assert not refused.recorded and refused.error is not None and "lease" in refused.error
    assert save(good, succeeded, "A").recorded
    with transaction(url) as session:  # a stale state: only runs.job_id unique can refuse it
        session.get(Job, good).state = JobState.RUNNING  # type: ignore[union-attr]
    again = save(good, succeeded, "A")
    assert not again.recorded and again.error is not None and "already recorded" in again.error
    jobs, runs = jobs_and_runs(url)
    assert (jobs[diverging].state, jobs[diverging].error) == (JobState.DIVERGED, error)
    assert jobs[late].state == JobState.RUNNING and jobs[late].lease_owner == "A"
    assert runs == {good: 1}


def test_lease_option_is_checked() -> None:
    from typer.testing import CliRunner

    from submissions.cli import app

    result = CliRunner().invoke(app, ["--database", "sqlite://", "run", "--lease", "10 minutes"])
    assert result.exit_code == 1
    assert "--lease: expected a positive duration such as 90s, 10m or 1h" in result.output
    from submissions.cli import parse_lease

    assert parse_lease("90s") == timedelta(seconds=90) and parse_lease("1h") == timedelta(hours=1)
