"""Ray dispatch: failures are recorded, the rest goes on, nothing runs twice."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from db.models import Job, JobState, Run, Submission
from db.session import transaction
from runners.dispatch import run_jobs
from submissions.submit import check_file, store
from tests.conftest import mini_spec


def test_failed_job_is_recorded_and_others_succeed(ray_local: None, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dispatch.sqlite'}"
    with transaction(url) as session:
        for name in ("hps-equal", "hps-uncertainty"):
            checked = check_file(mini_spec(name, tmp_path))
            assert checked.spec is not None
            store(session, checked.spec, checked.source)
        # Tamper with a stored spec behind the validator's back: the worker re-checks it.
        broken = session.scalars(
            select(Submission).where(Submission.name == "hps-uncertainty")
        ).one()
        broken.spec = {**broken.spec, "optimizer": {"name": "adam", "lr": 5.0, "weight_decay": 0.0}}

    first = run_jobs(url, max_jobs=2)
    assert len(first.reports) == 2  # --max-jobs is honoured
    rest = run_jobs(url)
    assert len(rest.reports) == 4
    assert run_jobs(url).reports == []  # nothing left, nothing runs twice

    with transaction(url) as session:
        states = {
            (job.submission.name, job.seed): (job.state, job.error)
            for job in session.scalars(select(Job))
        }
        assert len(session.scalars(select(Run)).all()) == 3
    for seed in (0, 1, 2):
        assert states[("hps-equal", seed)] == (JobState.SUCCEEDED, None)
        state, error = states[("hps-uncertainty", seed)]
        assert state == JobState.FAILED
        assert error is not None
        assert "optimizer.lr: 5.0 exceeds the protocol's maximum of 0.1" in error
