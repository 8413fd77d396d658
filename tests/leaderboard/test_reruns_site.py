"""The site with a rerun campaign: campaigns apart on the submission page; the ranking's flag."""

from __future__ import annotations

import math
import sqlite3
import statistics
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from db import queries
from db.models import Run, Submission
from db.queue import Outcome, claim_jobs, queue_jobs, record_success
from db.reruns import new_campaign
from db.session import transaction

MINI = ("synthetic-scenes-mini", 2)
T1 = 12.706204736174698  # t(0.975, 1): two seeds


@pytest.fixture
def rerun_db(pipeline_db: str, tmp_path: Path) -> str:
    """A copy of the pipeline's database where hps-equal was rerun (campaign `nightly`) on
    seeds 0 and 1, with every metric ten times worse (a method that no longer reproduces:
    far outside even the mini protocol's spread of seeds)."""
    target = tmp_path / "rerun.sqlite"
    source = sqlite3.connect(pipeline_db.removeprefix("sqlite:///"))
    with sqlite3.connect(target) as destination:
        source.backup(destination)
    source.close()
    url = f"sqlite:///{target}"
    with transaction(url) as session:
        submission = session.scalars(select(Submission).where(Submission.name == "hps-equal")).one()
        originals = {
            run.seed: run
            for run in session.scalars(select(Run).where(Run.submission_id == submission.id))
        }
        queue_jobs(session, submission, [0, 1], new_campaign(session, "nightly", "nightly check"))
        for job in claim_jobs(session):
            run = originals[job.seed]
            metrics: dict[str, dict[str, float]] = {}
            directions: dict[str, dict[str, bool]] = {}
            for m in run.metric_values:
                scale = 0.1 if m.higher_is_better else 10.0
                metrics.setdefault(m.task, {})[m.metric] = m.value * scale
                directions.setdefault(m.task, {})[m.metric] = m.higher_is_better
            provenance = {k: getattr(run, k) for k in (
                "code_version", "torch_version", "python_version", "ray_version", "device",
                "wall_time_s", "parameter_count", "flops")}  # fmt: skip
            record_success(session, job, Outcome(metrics, directions, [], provenance))
    return url


def test_campaigns_apart_and_the_reproduction_flag(rerun_db: str, site: Any) -> None:
    with transaction(rerun_db) as session:
        row = next(r for r in queries.ranking(session, *MINI) if r.name == "hps-equal")
        deltas = queries.run_deltas(session, *MINI, submission_id=row.id)
        originals = {d.run_id for d in deltas if d.campaign_id == row.original_campaign_id}
        miou = {
            run.seed: next(m.value for m in run.metric_values if m.metric == "miou")
            for run in session.scalars(select(Run).where(Run.id.in_(originals)))
        }
    original = [d.per_task for d in deltas if d.campaign_id == row.original_campaign_id]
    rerun = [d.per_task for d in deltas if d.campaign_id != row.original_campaign_id]
    assert len(original) == 3 and len(rerun) == 2
    # The flag, by hand: |mean(rerun) - mean(original)| against the original's sample std.
    expected = abs(statistics.fmean(rerun) - statistics.fmean(original)) <= statistics.stdev(
        original
    )
    assert expected is False  # ten times worse is far outside the seeds' spread
    assert row.per_task_reproduced is expected and row.seeds == 3

    at = site(rerun_db, "submission", submission=str(row.id))
    campaigns = at.dataframe[3].value
    assert list(campaigns["campaign"]) == ["initial", "nightly"]
    assert list(campaigns["kind"]) == ["original", "rerun"]
    assert list(campaigns["seeds"]) == ["0, 1, 2", "0, 1"]
    assert list(campaigns["reproduced"]) == ["", "not reproduced"]
    half = T1 * statistics.stdev(rerun) / math.sqrt(2)
    assert campaigns["Δm per task ↑"][1] == f"{statistics.fmean(rerun):+.2f} ± {half:.2f}"
    worse = 0.1 * statistics.fmean([miou[0], miou[1]])
    assert campaigns["segmentation miou ↑"][1] == pytest.approx(worse)
    runs = at.dataframe[4].value
    assert sorted(runs["campaign"]) == ["initial"] * 3 + ["nightly"] * 2
    by_seed = runs[runs["campaign"] == "nightly"]["Δm per task ↑"].tolist()
    assert by_seed == pytest.approx(rerun, abs=1e-12)

    ranking = site(rerun_db, "ranking")
    frame = ranking.dataframe[0].value
    mine = frame[frame["name"] == "hps-equal"].iloc[0]
    assert mine["latest rerun Δm"] == pytest.approx(statistics.fmean(rerun))
    assert mine["reproduced"] == "not reproduced" and mine["seeds"] == 3
    others = frame[frame["name"] != "hps-equal"]
    assert set(others["reproduced"]) == {""} and others["latest rerun Δm"].isna().all()
    assert "Ranked by each submission's original campaign" in ranking.caption[0].value
