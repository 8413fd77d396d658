"""The site, headless (Streamlit's AppTest), against a database filled by the real pipeline."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from sqlalchemy import Engine, event
from streamlit.testing.v1 import AppTest

from db import queries
from db.delta_m import PER_METRIC, PER_TASK
from db.models import Role
from db.queue import store_submission
from db.session import URL_VARIABLE, engine, transaction
from leaderboard.text import CONVENTION_LABELS, format_mean_std
from tests.conftest import PIPELINE_METHODS

APP = Path(__file__).resolve().parents[2] / "leaderboard" / "app.py"
BENCHMARK = ("synthetic-scenes-mini", 1)
BASELINE = "stl-small-cnn"
HOSTILE = "<script>alert(1)</script> **bold** [x](javascript:alert(1))"

Run = Callable[[str], AppTest]


@pytest.fixture
def open_site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """Run the app against a database URL; no exception allowed."""

    def run(url: str) -> AppTest:
        monkeypatch.setenv(URL_VARIABLE, url)
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    st.cache_data.clear()
    yield run
    st.cache_data.clear()


def ranking_rows(url: str) -> list[dict[str, Any]]:
    with transaction(url) as session:
        return queries.ranking(session, *BENCHMARK)


def ranking_table(at: AppTest) -> pd.DataFrame:
    frame = at.dataframe[0].value
    assert list(frame.columns[:8]) == [
        "rank", "name", "role", "architecture", "backbone", "weighting", "Δm", "seeds",
    ]  # fmt: skip
    return frame


def plotly_spec(at: AppTest, index: int) -> dict[str, Any]:
    charts = at.get("plotly_chart")
    return dict(json.loads(charts[index].proto.spec))


def values(array: Any) -> list[Any]:
    """A Plotly JSON array: a list, or a typed array {"dtype", "bdata": base64}."""
    if isinstance(array, dict):
        return list(np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]))
    return list(array)


def markdown_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [h.value for h in at.header] + [h.value for h in at.subheader]
    return "\n".join(parts)


def set_convention(at: AppTest, convention: str) -> AppTest:
    at.sidebar.radio(key="convention").set_value(convention)
    at.run()
    assert not at.exception
    return at


# ---------------------------------------------------------------------------
# The ranking


def test_ranking_has_one_row_per_submission_with_the_baseline_marked(
    pipeline_db: str, open_site: Run
) -> None:
    at = open_site(pipeline_db)
    assert at.title[0].value == "MTL Leaderboard"
    assert at.sidebar.selectbox(key="benchmark").options == ["synthetic-scenes-mini v1"]
    frame = ranking_table(at)
    assert sorted(frame["name"]) == sorted([BASELINE, *PIPELINE_METHODS])
    roles = dict(zip(frame["name"], frame["role"], strict=True))
    assert roles == {BASELINE: "baseline"} | {m: "method" for m in PIPELINE_METHODS}
    assert set(frame["seeds"]) == {"3"}
    assert set(frame["architecture"]) == {"single-task", "hard-sharing"}
    # Cost: the single-task baseline is three networks, so it has more parameters.
    parameters = dict(zip(frame["name"], frame["parameters"], strict=True))
    assert all(parameters[BASELINE] > parameters[m] > 0 for m in PIPELINE_METHODS)
    caption = at.caption[0].value
    assert "Baseline: stl\\-small\\-cnn (#1)" in caption
    assert "mean ± sample standard deviation over seeds" in caption


@pytest.mark.parametrize("convention", [PER_TASK, PER_METRIC])
def test_ranks_follow_the_mean_delta_m_of_the_selected_convention(
    pipeline_db: str, open_site: Run, convention: str
) -> None:
    at = open_site(pipeline_db)
    if convention != PER_TASK:
        set_convention(at, convention)
    assert at.sidebar.radio(key="convention").value == convention
    frame = ranking_table(at)

    rows = {r["name"]: r for r in ranking_rows(pipeline_db)}
    means = [rows[name][f"{convention}_mean"] for name in frame["name"]]
    higher_is_better = convention == PER_TASK
    assert means == sorted(means, reverse=higher_is_better)
    assert list(frame["rank"]) == [1, 2, 3, 4]
    for name, text in zip(frame["name"], frame["Δm"], strict=True):
        row = rows[name]
        assert text == format_mean_std(row[f"{convention}_mean"], row[f"{convention}_std"])
        assert " ± " in text  # three seeds: a standard deviation
    assert CONVENTION_LABELS[convention] in at.sidebar.radio(key="convention").options


def test_switching_the_convention_shows_the_other_delta_m(pipeline_db: str, open_site: Run) -> None:
    at = open_site(pipeline_db)
    per_task = dict(zip(ranking_table(at)["name"], ranking_table(at)["Δm"], strict=True))
    set_convention(at, PER_METRIC)
    per_metric = dict(zip(ranking_table(at)["name"], ranking_table(at)["Δm"], strict=True))

    rows = {r["name"]: r for r in ranking_rows(pipeline_db)}
    for name in PIPELINE_METHODS:
        row = rows[name]
        assert per_task[name] == format_mean_std(row["per_task_mean"], row["per_task_std"])
        assert per_metric[name] == format_mean_std(row["per_metric_mean"], row["per_metric_std"])
        # A gain is positive per task and a negative drop per metric.
        assert per_task[name] != per_metric[name]
    assert "lower is better" in at.caption[0].value


def test_headline_metrics_are_means_over_seeds_with_their_direction(
    pipeline_db: str, open_site: Run
) -> None:
    frame = ranking_table(open_site(pipeline_db)).set_index("name")
    headlines = {
        "depth abs_err ↓": ("depth", "abs_err"),
        "normal mean_angle ↓": ("normal", "mean_angle"),
        "segmentation miou ↑": ("segmentation", "miou"),
    }
    assert [c for c in frame.columns if c[-1] in "↑↓"] == list(headlines)
    for row in ranking_rows(pipeline_db):
        for column, key in headlines.items():
            assert math.isclose(frame.loc[row["name"], column], row["metrics"][key], rel_tol=1e-12)


def test_the_site_only_reads(pipeline_db: str, open_site: Run) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    event.listen(Engine, "before_cursor_execute", record)
    try:
        at = open_site(pipeline_db)
        set_convention(at, PER_METRIC)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert statements and set(statements) == {"SELECT"}


# ---------------------------------------------------------------------------
# Charts


def test_per_task_delta_chart_has_a_bar_per_task_and_submission(
    pipeline_db: str, open_site: Run
) -> None:
    at = open_site(pipeline_db)
    assert len(at.get("plotly_chart")) == 3  # per-task deltas, Δm vs parameters, curves
    spec = plotly_spec(at, 0)
    bars = {trace["name"]: trace for trace in spec["data"]}
    assert set(bars) == {"depth", "normal", "segmentation"}
    with transaction(pipeline_db) as session:
        names = {r["id"]: r["name"] for r in queries.ranking(session, *BENCHMARK)}
        expected = {(names[s], t): v for s, t, v in queries.task_deltas(session, *BENCHMARK)}
    order = list(ranking_table(at)["name"])
    for task, trace in bars.items():
        assert trace["type"] == "bar"
        assert list(trace["x"]) == order  # in ranking order
        for name, value in zip(trace["x"], values(trace["y"]), strict=True):
            assert math.isclose(value, expected[(name, task)], rel_tol=1e-12, abs_tol=1e-9)
    assert [s["y0"] for s in spec["layout"]["shapes"]] == [0]  # the zero line

    scatter = plotly_spec(at, 1)
    points = sum(len(values(trace["x"])) for trace in scatter["data"])
    assert points == 1 + len(PIPELINE_METHODS)


# ---------------------------------------------------------------------------
# One submission


def test_selecting_a_submission_shows_its_runs_and_curves(pipeline_db: str, open_site: Run) -> None:
    rows = {r["name"]: r for r in ranking_rows(pipeline_db)}
    chosen = rows["hps-pcgrad"]
    at = open_site(pipeline_db)
    at.selectbox(key="submission").set_value(chosen["id"])
    at.run()
    assert not at.exception

    assert "### hps\\-pcgrad" in [m.value for m in at.markdown]
    assert "**Authors:** MTL Leaderboard" in [m.value for m in at.markdown]
    assert chosen["spec_hash"] in [c.value for c in at.code]
    runs = at.dataframe[2].value
    assert list(runs["seed"]) == [0, 1, 2]
    assert set(runs["spec hash"]) == {chosen["spec_hash"]}
    assert set(runs["protocol version"]) == {1}
    assert {"device", "code version", "torch", "ray", "python"} <= set(runs.columns)
    assert math.isclose(
        runs["segmentation miou ↑"].mean(), chosen["metrics"][("segmentation", "miou")]
    )

    curves = plotly_spec(at, 2)
    lines = {(t["name"], t["xaxis"]) for t in curves["data"]}
    tasks = {"depth", "normal", "segmentation"}
    assert lines == {(task, axis) for task in tasks for axis in ("x", "x2")}  # loss, weight
    assert all(t["type"] == "scatter" and t["mode"] == "lines+markers" for t in curves["data"])


def test_the_url_selects_the_convention_and_the_submission(
    pipeline_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_VARIABLE, pipeline_db)
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["convention"] = CONVENTION_LABELS[PER_METRIC]
    at.query_params["submission"] = "hps-equal"
    at.run()
    assert not at.exception
    assert at.sidebar.radio(key="convention").value == PER_METRIC
    assert "### hps\\-equal" in [m.value for m in at.markdown]


# ---------------------------------------------------------------------------
# Empty and hostile databases


def test_an_empty_database_explains_how_to_submit(tmp_path: Path, open_site: Run) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    engine(url)  # the schema, no rows
    at = open_site(url)
    assert len(at.info) == 1
    assert "mtlb submit" in at.info[0].value and "mtlb run" in at.info[0].value
    assert not at.dataframe and not at.get("plotly_chart")


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path, open_site: Run) -> None:
    path = tmp_path / "absent.sqlite"
    at = open_site(f"sqlite:///{path}")
    assert "mtlb submit" in at.info[0].value
    assert not path.exists()


def hostile_spec() -> dict[str, Any]:
    """A normalised spec, by hand, whose submitter strings try markdown and HTML."""
    return {
        "spec_version": 1,
        "name": HOSTILE,
        "description": f"# Heading\n\n{HOSTILE}\n\n<img src=x onerror=alert(1)>",
        "authors": ["<b>Mallory</b>", "[me](https://evil.example)"],
        "benchmark": BENCHMARK[0],
        "protocol_version": BENCHMARK[1],
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn", "head_width": 16},
        "weighting": {"name": "equal"},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
        "scheduler": None,
    }


def test_a_hostile_submission_is_rendered_inert(tmp_path: Path, open_site: Run) -> None:
    url = f"sqlite:///{tmp_path / 'hostile.sqlite'}"
    with transaction(url) as session:
        store_submission(
            session, spec=hostile_spec(), spec_hash="f" * 64, source="name: x", role=Role.METHOD
        )
    at = open_site(url)

    frame = ranking_table(at)  # st.dataframe shows text as text
    assert list(frame["name"]) == [HOSTILE]
    assert frame["rank"].isna().all()
    assert list(frame["Δm"]) == [""] and list(frame["seeds"]) == ["0"]

    rendered = markdown_text(at)
    for raw in ("<script", "<img", "<b>", "](", "**bold**", "\n# Heading"):
        assert raw not in rendered
    assert "### &lt;script&gt;alert\\(1\\)&lt;/script&gt; \\*\\*bold\\*\\*" in rendered
    assert "\\[x\\]\\(javascript\\:alert\\(1\\)\\)" in rendered
    assert "**Authors:** &lt;b&gt;Mallory&lt;/b&gt;, \\[me\\]\\(https\\:" in rendered
    assert "No finished runs yet." in [i.value for i in at.info]
