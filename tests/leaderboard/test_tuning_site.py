"""Tuned and untuned entries on the site: the ranking's label, the chosen values, the trials."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import streamlit as st

from db.delta_m import PER_TASK
from db.models import Role, Tuning
from db.queries import ranking_results
from db.queue import Outcome, campaign, claim_jobs, queue_jobs, record_success, store_submission
from db.session import URL_VARIABLE, transaction
from leaderboard.tables import TUNING, ranking_frame, tuning_frames
from tests.leaderboard.test_tables import COLUMNS, ROWS

TRIALS = [
    {"values": {"optimizer.lr": 0.001, "weighting.temperature": 2.0}, "state": "succeeded",
     "objective": 0.0, "metrics": {}, "error": None},
    {"values": {"optimizer.lr": 0.0075, "weighting.temperature": 3.5}, "state": "succeeded",
     "objective": 12.5, "metrics": {}, "error": None},
    {"values": {"optimizer.lr": 0.09, "weighting.temperature": 0.7}, "state": "diverged",
     "objective": None, "metrics": None, "error": "training loss not finite in epoch 1\nmore"},
]  # fmt: skip
CHOSEN = {"optimizer.lr": 0.0075, "weighting.temperature": 3.5}


def test_the_ranking_labels_tuned_and_untuned_entries() -> None:
    rows = [replace(r, tuned_values=CHOSEN) if r.name == "m1" else r for r in ROWS]
    frame = ranking_frame(rows, COLUMNS, PER_TASK)
    labels = dict(zip(frame["name"], frame[TUNING], strict=True))
    assert labels == {"m1": "tuned", "m2": "untuned", "stl": "untuned", "m3": "untuned"}


def test_the_tuning_tables_show_the_chosen_values_and_every_trial() -> None:
    chosen, trials = tuning_frames({"chosen": CHOSEN, "trials": TRIALS})
    assert chosen.to_dict("list") == {
        "parameter": ["optimizer.lr", "weighting.temperature"],
        "value": ["0.0075", "3.5"],
    }
    assert list(trials.columns) == [
        "trial", "optimizer.lr", "weighting.temperature", "state", "objective", "chosen", "error",
    ]  # fmt: skip
    assert trials["trial"].tolist() == [0, 1, 2]
    assert trials["optimizer.lr"].tolist() == ["0.001", "0.0075", "0.09"]
    assert trials["state"].tolist() == ["succeeded", "succeeded", "diverged"]
    assert trials["objective"].tolist()[:2] == [0.0, 12.5]
    assert math.isnan(trials["objective"].iloc[2])
    assert trials["chosen"].tolist() == [False, True, False]
    assert trials["error"].tolist() == ["", "", "training loss not finite in epoch 1"]


def test_ranking_rows_carry_the_chosen_values(database_url: str) -> None:
    spec: dict[str, Any] = {
        "name": "m", "benchmark": "synthetic-scenes-mini", "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": {"name": "dwa"}, "optimizer": {"name": "adam"},
    }  # fmt: skip
    with transaction(database_url) as session:
        tuned, _ = store_submission(
            session, spec=spec, spec_hash="t" * 64, source="", role=Role.METHOD
        )
        store_submission(
            session, spec={**spec, "name": "u"}, spec_hash="u" * 64, source="", role=Role.METHOD
        )
        session.add(
            Tuning(
                submission_id=tuned.id, chosen=CHOSEN, trials=TRIALS, trial_budget=3,
                validation_size=13, objective="Δm",
            )
        )  # fmt: skip
    with transaction(database_url) as session:
        rows = ranking_results(session, "synthetic-scenes-mini", 1)
    assert {r.name: r.tuned_values for r in rows} == {"m": CHOSEN, "u": None}


def test_the_pages_show_the_label_the_chosen_values_and_the_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headless pages on a hand-filled database: one tuned submission with a run."""
    from streamlit.testing.v1 import AppTest

    url = f"sqlite:///{tmp_path / 'site.sqlite'}"
    spec: dict[str, Any] = {
        "name": "hps-dwa-tuned", "benchmark": "synthetic-scenes-mini", "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": {"name": "dwa", "temperature": 2.0}, "optimizer": {"name": "adam"},
    }  # fmt: skip
    with transaction(url) as session:
        submission, _ = store_submission(
            session, spec=spec, spec_hash="t" * 64, source="", role=Role.METHOD
        )
        session.add(
            Tuning(
                submission_id=submission.id, chosen=CHOSEN, trials=TRIALS, trial_budget=3,
                validation_size=13, objective="Δm per task",
            )
        )  # fmt: skip
        queue_jobs(session, submission, [0], campaign(session))
        (job,) = claim_jobs(session)
        record_success(
            session, job,
            Outcome(
                metrics={"segmentation": {"miou": 0.5}},
                directions={"segmentation": {"miou": True}},
                curves=[],
                provenance={
                    "code_version": "x", "torch_version": "t", "python_version": "p",
                    "ray_version": "r", "device": "cpu", "wall_time_s": 1.0,
                    "parameter_count": 10, "flops": 20, "tuned_values": CHOSEN,
                },
            ),
        )  # fmt: skip
    monkeypatch.setenv(URL_VARIABLE, url)
    st.cache_data.clear()
    app = str(Path(__file__).resolve().parents[2] / "leaderboard" / "app.py")
    at = AppTest.from_file(app, default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    ranking = at.dataframe[0].value
    assert ranking["tuning"].tolist() == ["tuned"]

    at = AppTest.from_file(app, default_timeout=60)
    at.query_params.update({"submission": str(submission.id)})
    at.switch_page("views/submission.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert "Tuning" in [h.value for h in at.subheader]
    frames = [d.value for d in at.dataframe]
    chosen = next(f for f in frames if list(f.columns) == ["parameter", "value"])
    assert chosen["value"].tolist() == ["0.0075", "3.5"]
    trials = next(f for f in frames if "objective" in f.columns and "trial" in f.columns)
    assert trials["chosen"].tolist() == [False, True, False]
