"""Reported (paper) results on the ranking page: marked, cited, unranked, next to their method.

The database is made by hand (no training): a platform baseline and method
with one run each, and a reported-results file imported through the CLI.
"""

from __future__ import annotations

import doctest
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from db import queries
from db.delta_m import PER_METRIC
from db.models import Role
from db.queue import (
    Outcome,
    campaign,
    claim_jobs,
    designate_baseline,
    queue_jobs,
    record_success,
    store_submission,
)
from db.session import URL_VARIABLE, transaction
from leaderboard import reported, tables
from leaderboard.text import CONVENTION_LABELS
from tests.submissions.test_reported import (
    BASELINE_METRICS,
    BENCHMARK,
    GOOD,
    METHOD_METRICS,
    METHOD_PER_METRIC,
    entry,
    invoke,
    write,
)

APP = Path(__file__).resolve().parents[2] / "leaderboard" / "app.py"
PROVENANCE = {
    "code_version": "test", "torch_version": "x", "python_version": "x", "ray_version": "x",
    "device": "cpu", "wall_time_s": 1.0, "parameter_count": 10, "flops": 100,
}  # fmt: skip


def spec(name: str, architecture: str) -> dict[str, Any]:
    return {
        "spec_version": 1, "name": name, "description": "", "authors": [],
        "benchmark": BENCHMARK, "protocol_version": 1,
        "architecture": {"name": architecture, "backbone": "small-cnn"},
        "weighting": {"name": "equal"},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}, "scheduler": None,
    }  # fmt: skip


def platform_run(session: Any, name: str, architecture: str, role: Role, metrics: Any) -> None:
    submission, _ = store_submission(
        session, spec=spec(name, architecture), spec_hash=name.ljust(64, "0"), source="", role=role
    )
    if role is Role.BASELINE:
        designate_baseline(session, submission)
    queue_jobs(session, submission, [0], campaign(session))
    [job] = claim_jobs(session, 1)
    directions = {
        task: {m: m in ("miou", "pixel_acc") or m.startswith("within") for m in values}
        for task, values in metrics.items()
    }
    record_success(session, job, Outcome(metrics, directions, [], PROVENANCE))


@pytest.fixture
def site_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'site.sqlite'}"
    with transaction(url) as session:
        platform_run(session, "stl-small-cnn", "single-task", Role.BASELINE, BASELINE_METRICS)
        # The platform's method: every metric 1% better than the baseline's direction says.
        better = {
            t: {m: v * (1.01 if m in ("miou", "pixel_acc") or m.startswith("within") else 0.99)
                for m, v in ms.items()}
            for t, ms in BASELINE_METRICS.items()
        }  # fmt: skip
        platform_run(session, "hps-equal", "hard-sharing", Role.METHOD, better)
    papers = {
        **GOOD,
        "results": [
            *GOOD["results"],
            entry("nash-paper", weighting="nash-mtl", metrics=METHOD_METRICS),
        ],
    }
    result = invoke(url, str(write(tmp_path / "papers.yaml", papers)))
    assert result.exit_code == 0, result.output
    return url


@pytest.fixture
def open_site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def run(url: str, **params: str) -> AppTest:
        monkeypatch.setenv(URL_VARIABLE, url)
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params.update(params)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    st.cache_data.clear()
    yield run
    st.cache_data.clear()


def test_the_ranking_shows_reported_rows_marked_cited_and_next_to_their_method(
    site_db: str, open_site: Any
) -> None:
    at = open_site(site_db, convention=CONVENTION_LABELS[PER_METRIC])
    frame: pd.DataFrame = at.dataframe[0].value
    assert frame["name"].tolist() == [
        "hps-equal",
        "hps-paper",
        "stl-small-cnn",
        "stl",
        "nash-paper",
    ]
    assert frame["source"].tolist() == ["platform", "reported", "platform", "reported", "reported"]
    # Platform rows are ranked; reported ones are not.  One seed each: no test can tell the
    # two platform rows apart, so they tie.
    assert frame["rank"].tolist()[0] == 1 and frame["rank"].tolist()[2] == 1
    assert frame["rank"].iloc[[1, 3, 4]].isna().all()
    assert frame["citation"].iloc[1] == "Doe et al., hps-paper, 2024, Table 2"
    assert frame["citation"].iloc[0] == ""
    # Reported Δm against the reported baseline (hand-computed in test_reported), not the runs'.
    assert math.isclose(frame["Δm"].iloc[1], METHOD_PER_METRIC, rel_tol=1e-9)
    assert frame["Δm"].iloc[3] == 0.0
    # The platform method: 1% better on every metric -> per-metric drop of -1.
    assert math.isclose(frame["Δm"].iloc[0], -1.0, rel_tol=1e-9)
    # The reported baseline links to its paper; no interval and no seeds for a paper value.
    assert frame["page"].iloc[3] == "https://example.org/stl"
    assert math.isnan(frame["± 95% CI"].iloc[1]) and frame["seeds"].iloc[1] == 0

    [details] = [e for e in at.expander if "Reported results (3)" in e.label]
    cited = at.dataframe[1].value
    assert cited["citation"].tolist()[1] == "Doe et al., hps-paper, 2024, Table 2"
    assert cited["against (reported baseline)"].tolist() == ["stl", "stl", "stl"]
    assert math.isclose(cited["Δm per metric ↓"].iloc[1], METHOD_PER_METRIC, rel_tol=1e-9)
    assert details is not None


def test_reported_rows_can_be_filtered_in_and_out(site_db: str, open_site: Any) -> None:
    only = open_site(site_db, status="reported").dataframe[0].value
    assert sorted(only["name"]) == ["hps-paper", "nash-paper", "stl"]
    assert set(only["source"]) == {"reported"}
    without = open_site(site_db, status="has results").dataframe[0].value
    assert without["name"].tolist() == ["hps-equal", "stl-small-cnn"]


def test_place_reported_keeps_unmatched_rows_in_order() -> None:
    frame = pd.DataFrame(
        {
            "name": ["a", "p1", "b", "p2"],
            "architecture": ["x", "y", "x", "x"],
            "weighting": ["w", "w", "w", "w"],
            "backbone": ["k", "k", "k", "k"],
            tables.SOURCE: [tables.PLATFORM, tables.REPORTED, tables.PLATFORM, tables.REPORTED],
        }
    )
    # p2 matches a and b (same method): after the last of them; p1 matches nothing.
    assert reported.place_reported(frame)["name"].tolist() == ["a", "b", "p2", "p1"]


def test_docstring_examples() -> None:
    result = doctest.testmod(reported)
    assert result.attempted >= 5 and result.failed == 0


def test_the_site_opens_on_a_benchmark_with_runs_not_on_papers_alone(
    site_db: str, open_site: Any
) -> None:
    """The shipped nyuv2 paper baseline sorts before synthetic-* by name, yet has no runs."""
    result = invoke(site_db, "--builtin")
    assert result.exit_code == 0, result.output
    with transaction(site_db) as session:
        assert queries.benchmark_versions(session) == [(BENCHMARK, 1), ("nyuv2", 1)]
    at = open_site(site_db)
    assert at.dataframe[0].value["name"].tolist()[0] == "hps-equal"
