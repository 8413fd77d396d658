"""What one bad job, one failed write or one lost task must not do: stop the others.

Each test here failed before its fix (issue 12, "The queue"): a missing dataset
stopped every claimed job; one failed database write cancelled the whole batch;
`mtlb run` attached to a dead cluster through Ray's current-cluster file, or
waited with no message on an address that does not answer; a job that no node
can take kept the dispatcher waiting for ever.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from db.models import Job, JobState, Run, Submission
from db.queue import job_counts, stalled_jobs
from db.session import engine, transaction
from runners import dispatch
from runners.benchmarks import BENCHMARKS
from runners.dispatch import ClusterUnreachable, check_reachable, run_jobs
from submissions.cli import app
from submissions.submit import check_file, store
from tests.runners.test_faults import jobs_and_runs, queue_mini

ROOT = Path(__file__).resolve().parents[2]
MINI = BENCHMARKS.get("synthetic-scenes-mini")


class RefusedRuns:
    """The database refuses `times` times to store a run of `job_ids`, as a busy SQLite does."""

    def __init__(self, url: str, job_ids: set[int], times: float) -> None:
        self.engine, self.job_ids, self.times = engine(url), job_ids, times
        self.refused = 0

    def __enter__(self) -> RefusedRuns:
        event.listen(self.engine, "before_cursor_execute", self.refuse)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self.refuse)

    def refuse(self, _conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith("INSERT INTO RUNS"):
            return
        values = params if isinstance(params, tuple | list) else tuple(params.values())
        if values and values[0] in self.job_ids and self.refused < self.times:
            self.refused += 1
            raise OperationalError(
                statement, params, sqlite3.OperationalError("database is locked")
            )


def mini_jobs(url: str, tmp_path: Path, names: list[str]) -> dict[str, int]:
    """One queued job (seed 0) of each mini spec in `names`: {name: job id}."""
    queue_mini(url, tmp_path, names, seeds=1)
    with transaction(url) as session:
        return {
            name: session.scalars(
                select(Job.id).join(Job.submission).where(Submission.name == name, Job.seed == 0)
            ).one()
            for name in names
        }


def test_missing_data_and_an_unwritable_result_stop_only_their_own_jobs(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job without data fails in one line; one whose result cannot be written goes back to
    the queue with its outcome kept; the other job succeeds.  The next run records the kept
    outcome without training again."""
    url = f"sqlite:///{tmp_path / 'faults.sqlite'}"
    monkeypatch.setattr(dispatch, "RECORD_BACKOFF_S", 0.01)
    storage = tmp_path / "storage"
    ids = mini_jobs(url, tmp_path, ["hps-equal", "hps-dwa"])
    cityscapes = check_file(ROOT / "submissions/examples/cityscapes-segnet-hps-equal.yaml")
    assert cityscapes.spec is not None, cityscapes.problems
    with transaction(url) as session:
        store(session, cityscapes.spec, cityscapes.source)
        [missing_id, *others] = session.scalars(
            select(Job.id)
            .join(Job.submission)
            .where(Submission.benchmark == "cityscapes")
            .order_by(Job.id)
        )
        session.execute(update(Job).where(Job.id.in_(others)).values(state=JobState.CANCELLED))
    monkeypatch.setenv("MTLB_DATA_ROOT", str(tmp_path / "empty"))  # no Cityscapes here

    with RefusedRuns(url, {ids["hps-dwa"]}, times=float("inf")) as refusing:
        summary = run_jobs(url, storage=storage)
    by_job = {r.job_id: r for r in summary.reports}
    missing = by_job[missing_id]
    assert missing.state == JobState.FAILED and missing.recorded
    assert missing.error is not None and "\n" not in missing.error
    assert missing.error.startswith("DatasetError: ")
    assert by_job[ids["hps-equal"]].state == JobState.SUCCEEDED
    kept = by_job[ids["hps-dwa"]]
    assert (kept.state, kept.recorded) == (JobState.QUEUED, False)
    assert "could not be written (OperationalError: database is locked)" in str(kept.error)
    assert refusing.refused == dispatch.RECORD_ATTEMPTS  # retried, then given up
    jobs, runs = jobs_and_runs(url)
    assert jobs[missing_id].state == JobState.FAILED and jobs[missing_id].error == missing.error
    assert jobs[ids["hps-dwa"]].state == JobState.QUEUED  # back in the queue at once
    assert runs == {ids["hps-equal"]: 1}
    [folder] = [p for p in storage.iterdir() if (p / dispatch.OUTCOME_FILE).exists()]
    kept_outcome = json.loads((folder / dispatch.OUTCOME_FILE).read_text())
    assert kept_outcome["state"] == "succeeded"

    # The database answers again: the next run records the kept outcome, not a new training.
    again = run_jobs(url, storage=storage)
    assert [(r.job_id, r.state, r.recorded) for r in again.reports] == [
        (ids["hps-dwa"], JobState.SUCCEEDED, True)
    ]
    with transaction(url) as session:
        run = session.scalars(select(Run).where(Run.job_id == ids["hps-dwa"])).one()
        assert run.wall_time_s == kept_outcome["result"]["wall_time_s"]
    assert not folder.exists()  # recorded: the kept outcome went with its checkpoint


def test_a_transient_write_error_is_retried_and_the_result_recorded(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'retry.sqlite'}"
    monkeypatch.setattr(dispatch, "RECORD_BACKOFF_S", 0.01)
    ids = mini_jobs(url, tmp_path, ["hps-equal"])
    with RefusedRuns(url, set(ids.values()), times=2) as refusing:
        summary = run_jobs(url, storage=tmp_path / "storage")
    assert [(r.state, r.recorded) for r in summary.reports] == [(JobState.SUCCEEDED, True)]
    assert refusing.refused == 2
    assert jobs_and_runs(url)[1] == {ids["hps-equal"]: 1}


def test_a_job_past_its_time_limit_or_on_no_node_is_stopped_and_failed(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job over the protocol's time limit fails with the limit in its reason; a job that
    asks for a GPU on a cluster without one is stopped past its deadline, not waited for."""
    url = f"sqlite:///{tmp_path / 'limits.sqlite'}"
    ids = mini_jobs(url, tmp_path, ["hps-equal"])
    version = 2
    protocol = MINI.protocol(version)
    monkeypatch.setitem(MINI.protocols, version, dataclasses.replace(protocol, time_limit_s=0.001))
    summary = run_jobs(url, storage=tmp_path / "storage")
    assert [(r.job_id, r.state, r.error) for r in summary.reports] == [
        (ids["hps-equal"], JobState.FAILED, "exceeded the protocol's time limit of 0.001 s")
    ]

    with transaction(url) as session:  # the same job again, now asking for a GPU
        session.execute(update(Job).where(Job.id == ids["hps-equal"]).values(state=JobState.QUEUED))
    monkeypatch.setattr(dispatch, "LOST_GRACE_S", 1.0)
    monkeypatch.setattr(dispatch, "POLL_S", 0.2)
    summary = run_jobs(url, storage=tmp_path / "storage", gpus_per_job=1.0)
    [report] = summary.reports
    assert report.state == JobState.FAILED and report.recorded
    assert report.error is not None and report.error.startswith("stopped: not finished")
    assert "0 GPU" not in report.error and "1 GPU(s)" in report.error


def test_a_dispatcher_whose_lease_expired_shows_its_jobs_as_stalled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stalled.sqlite'}"
    ids = mini_jobs(url, tmp_path, ["hps-equal"])
    with transaction(url) as session:
        session.execute(
            update(Job)
            .where(Job.id == ids["hps-equal"])
            .values(state=JobState.RUNNING, lease_owner="gone:1:ab", lease_expires_at=None)
        )
    with transaction(url) as session:
        assert [j.id for j in stalled_jobs(session)] == [ids["hps-equal"]]
        [(_, _, _, _, counts)] = job_counts(session)
        assert counts["stalled"] == 1 and "running" not in counts
    result = CliRunner().invoke(app, ["--database", url, "status"])
    assert result.exit_code == 0
    assert "1 stalled" in result.output and "running" not in result.output
    assert f"job {ids['hps-equal']} stalled: the lease of its dispatcher (gone:1:ab)" in " ".join(
        result.output.split()
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_address_is_one_line_and_claims_nothing(tmp_path: Path) -> None:
    port = closed_port()
    with pytest.raises(
        ClusterUnreachable, match=rf"^the Ray cluster at 127.0.0.1:{port} cannot be reached: "
    ):
        check_reachable(f"127.0.0.1:{port}", timeout_s=2)
    url = f"sqlite:///{tmp_path / 'unreachable.sqlite'}"
    ids = mini_jobs(url, tmp_path, ["hps-equal"])
    result = CliRunner().invoke(app, ["--database", url, "run", "--address", f"127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert result.output.strip().startswith(
        f"error: the Ray cluster at 127.0.0.1:{port} cannot be reached"
    )
    assert len(result.output.strip().splitlines()) == 1
    with transaction(url) as session:
        assert session.get(Job, ids["hps-equal"]).state == JobState.QUEUED  # type: ignore[union-attr]


def test_without_an_address_a_dead_cluster_s_file_is_not_followed() -> None:
    """Ray's current-cluster file names a cluster that died: start a private one anyway."""
    # Short: Ray's socket paths under it must stay within 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix="mtlb-ray-", dir="/tmp"))
    (temp / "ray_current_cluster").write_text(f"127.0.0.1:{closed_port()}")
    script = (
        "import ray\n"
        "from runners.dispatch import ensure_ray\n"
        "ensure_ray(None)\n"
        "print('started', ray.cluster_resources().get('CPU', 0) > 0)\n"
        "ray.shutdown()\n"
    )
    env = {**os.environ, "RAY_TMPDIR": str(temp), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "started True" in done.stdout


def test_ray_s_error_messages_go_to_the_log_not_the_terminal(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The private function Ray's driver prints other processes' errors with is replaced."""
    import ray._private.worker as ray_worker

    original = ray_worker.print_to_stdstream
    try:
        dispatch.ray_errors_to_log()
        with caplog.at_level("INFO", logger="ray"):
            ray_worker.print_to_stdstream(
                {"lines": ["Raylet is terminated", "[state-dump] ..."], "pid": "raylet"},
                ignore_prefix=False,
            )
    finally:
        ray_worker.print_to_stdstream = original
    assert capsys.readouterr() == ("", "")
    assert "Raylet is terminated\n[state-dump] ..." in caplog.text
