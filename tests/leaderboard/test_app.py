"""Every page of the site, headless (AppTest), on a database the real pipeline filled."""

from __future__ import annotations

import base64
import json
import math
import sqlite3
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from scipy.stats import ttest_rel
from sqlalchemy import Engine, event, select
from streamlit.testing.v1 import AppTest

from db import queries
from db.delta_m import PER_METRIC, PER_TASK
from db.models import JobState, Role, Run, Submission
from db.queue import Outcome, campaign, claim_jobs, queue_jobs, record_failure, record_success
from db.session import URL_VARIABLE, engine, read_only_session_factory, transaction
from leaderboard.text import CONVENTION_LABELS
from tests.conftest import PIPELINE_METHODS

APP = Path(__file__).resolve().parents[2] / "leaderboard" / "app.py"
BENCHMARK = ("synthetic-scenes-mini", 2)
BASELINE = "stl-small-cnn"
HOSTILE = "<script>alert(1)</script> **bold** [x](javascript:alert(1))"
T2 = 4.302652729749464  # t(0.975, 2): three seeds

Open = Callable[..., AppTest]


@pytest.fixture
def open_site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Open]:
    """Run the app against a database URL, on a page, with query parameters; no exception."""

    def run(url: str, page: str | None = None, **params: str) -> AppTest:
        monkeypatch.setenv(URL_VARIABLE, url)
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params.update(params)
        if page is not None:
            at.switch_page(f"views/{page}.py")
        return rerun(at)

    st.cache_data.clear()
    yield run
    st.cache_data.clear()


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def copy_of(url: str, directory: Path) -> str:
    """A copy of a SQLite database that a test may write to (the backup API: WAL included)."""
    target = directory / "copy.sqlite"
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    with sqlite3.connect(target) as destination:
        source.backup(destination)
    source.close()
    return f"sqlite:///{target}"


def ranking_rows(url: str) -> dict[str, queries.RankingRow]:
    with read_only_session_factory(url)() as session:
        return {r.name: r for r in queries.ranking(session, *BENCHMARK)}


def table(at: AppTest, index: int = 0) -> pd.DataFrame:
    return at.dataframe[index].value


def plotly_spec(at: AppTest, index: int) -> dict[str, Any]:
    return dict(json.loads(at.get("plotly_chart")[index].proto.spec))


def values(array: Any) -> list[Any]:
    """A Plotly JSON array: a list, or a typed array {"dtype", "bdata": base64}."""
    if isinstance(array, dict):
        return list(np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]))
    return list(array)


def text_of(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [h.value for h in at.header] + [h.value for h in at.subheader]
    parts += [t.value for t in at.title]
    return "\n".join(parts)


def set_convention(at: AppTest, convention: str) -> AppTest:
    at.sidebar.radio(key="convention").set_value(convention)
    return rerun(at)


def landed_run(url: str, submission_id: int) -> None:
    """A new result of a submission, recorded as the dispatcher records one."""
    with transaction(url) as session:
        run = session.scalars(select(Run).where(Run.submission_id == submission_id)).first()
        submission = session.get(Submission, submission_id)
        assert run is not None and submission is not None
        # A new seed of the original campaign: the ranking counts that campaign's runs only.
        queue_jobs(session, submission, [9], campaign(session))
        [job] = claim_jobs(session)
        metrics: dict[str, dict[str, float]] = {}
        directions: dict[str, dict[str, bool]] = {}
        for m in run.metric_values:
            metrics.setdefault(m.task, {})[m.metric] = m.value
            directions.setdefault(m.task, {})[m.metric] = m.higher_is_better
        provenance = {
            k: getattr(run, k)
            for k in ("code_version", "torch_version", "python_version", "ray_version", "device",
                      "wall_time_s", "parameter_count", "flops")
        }  # fmt: skip
        record_success(session, job, Outcome(metrics, directions, [], provenance))


# ---------------------------------------------------------------------------
# Ranking


def test_ranking_shows_delta_m_with_its_interval_and_marks_the_baseline(
    pipeline_db: str, open_site: Open
) -> None:
    at = open_site(pipeline_db)
    assert at.title[0].value == "Ranking: synthetic\\-scenes\\-mini v2"
    assert at.sidebar.selectbox(key="benchmark").options == ["synthetic-scenes-mini v2"]
    frame = table(at)
    assert list(frame.columns[:5]) == ["rank", "name", "role", "architecture", "weighting"]
    assert sorted(frame["name"]) == sorted([BASELINE, *PIPELINE_METHODS])
    roles = dict(zip(frame["name"], frame["role"], strict=True))
    assert roles == {BASELINE: "baseline"} | {m: "method" for m in PIPELINE_METHODS}
    rows = ranking_rows(pipeline_db)
    for _, shown in frame.iterrows():
        runs = [d.per_task for d in rows[shown["name"]].run_deltas]
        assert len(runs) == shown["seeds"] == 3
        assert math.isclose(shown["Δm"], statistics.fmean(runs), rel_tol=1e-9, abs_tol=1e-9)
        half = T2 * statistics.stdev(runs) / math.sqrt(3)
        assert math.isclose(shown["± 95% CI"], half, rel_tol=1e-9)
    assert list(frame["Δm"]) == sorted(frame["Δm"], reverse=True)  # best first
    assert frame["rank"].iloc[0] == 1 and (frame["rank"].diff().dropna() >= 0).all()
    # Every metric with its direction, parameters, FLOPs and time.
    assert [c for c in frame.columns if c[-1] in "↑↓"] == [
        "depth abs_err ↓", "depth rel_err ↓", "normal mean_angle ↓", "normal median_angle ↓",
        "normal within_11_25 ↑", "normal within_22_5 ↑", "normal within_30 ↑",
        "segmentation miou ↑", "segmentation pixel_acc ↑",
    ]  # fmt: skip
    shown = frame.set_index("name")
    for name, row in rows.items():
        assert math.isclose(shown.loc[name, "segmentation miou ↑"],
                            row.metrics[("segmentation", "miou")], rel_tol=1e-12)  # fmt: skip
        assert shown.loc[name, "FLOPs"] == round(row.flops) > 0
    assert all(shown.loc[BASELINE, "parameters"] > shown.loc[m, "parameters"] > 0
               for m in PIPELINE_METHODS)  # fmt: skip
    assert "Baseline: stl\\-small\\-cnn (#1)" in at.caption[0].value
    assert [b.proto.label for b in at.get("download_button")] == ["CSV", "JSON", "LaTeX"]
    assert frame["page"].iloc[0] == f"submission?submission={rows[frame['name'][0]].id}"


@pytest.mark.parametrize("convention", [PER_TASK, PER_METRIC])
def test_the_convention_orders_the_ranking(
    pipeline_db: str, open_site: Open, convention: str
) -> None:
    at = open_site(pipeline_db)
    if convention != PER_TASK:
        set_convention(at, convention)
    frame = table(at)
    rows = ranking_rows(pipeline_db)
    means = [rows[name].mean(convention) for name in frame["name"]]
    assert means == sorted(means, reverse=convention == PER_TASK)
    assert frame["Δm"].tolist() == pytest.approx(means, abs=1e-9)
    assert ("lower is better" in at.caption[0].value) == (convention == PER_METRIC)


def test_the_url_selects_convention_and_filters(pipeline_db: str, open_site: Open) -> None:
    at = open_site(pipeline_db, convention=CONVENTION_LABELS[PER_METRIC], weighting="dwa")
    assert at.sidebar.radio(key="convention").value == PER_METRIC
    assert table(at)["name"].tolist() == ["hps-dwa"]
    assert at.caption[0].value.startswith("1 of 4 submissions")


@pytest.mark.parametrize(
    ("widget", "value", "names"),
    [
        ("role", ["baseline"], [BASELINE]),
        ("architecture", ["hard-sharing"], sorted(PIPELINE_METHODS)),
        ("status", ["failed"], []),
        ("status", ["has results"], sorted([BASELINE, *PIPELINE_METHODS])),
        ("q", "PCGRAD", ["hps-pcgrad"]),
    ],
)
def test_filters_and_search(
    pipeline_db: str, open_site: Open, widget: str, value: Any, names: list[str]
) -> None:
    at = open_site(pipeline_db)
    ranks = dict(zip(table(at)["name"], table(at)["rank"], strict=True))
    if widget == "q":
        at.sidebar.text_input(key="q").input(value)
    else:
        at.sidebar.multiselect(key=widget).set_value(value)
    rerun(at)
    assert sorted(table(at)["name"]) == names
    # Ranks are the leaderboard's, not recomputed within the filtered rows.
    assert all(ranks[n] == r for n, r in zip(table(at)["name"], table(at)["rank"], strict=True))
    assert at.caption[0].value.startswith(f"{len(names)} of 4 submissions")


def test_sorting_and_column_choice(pipeline_db: str, open_site: Open) -> None:
    at = open_site(pipeline_db)
    at.selectbox(key="sort").set_value("name")
    rerun(at)
    assert table(at)["name"].tolist() == sorted([BASELINE, *PIPELINE_METHODS])
    at.selectbox(key="sort").set_value("depth abs_err ↓")
    rerun(at)
    errors = table(at)["depth abs_err ↓"].tolist()
    assert errors == sorted(errors)  # lower is better: best first
    at.toggle(key="best_first").set_value(False)
    rerun(at)
    assert table(at)["depth abs_err ↓"].tolist() == sorted(errors, reverse=True)
    at.multiselect(key="columns").set_value(["name", "Δm", "FLOPs"])
    rerun(at)
    assert table(at).columns.tolist() == ["name", "Δm", "FLOPs"]


def open_tab(at: AppTest, label: str) -> dict[str, Any]:
    """Switch the charts' tabs (only the open one runs) and return its chart."""
    at.session_state["chart"] = label
    rerun(at)
    [chart] = at.get("plotly_chart")
    return dict(json.loads(chart.proto.spec))


def test_the_charts(pipeline_db: str, open_site: Open) -> None:
    at = open_site(pipeline_db)
    assert [t.label for t in at.tabs] == [
        "Δm vs cost", "Per-task deltas", "Δm over time", "Spread over seeds",
    ]  # fmt: skip
    assert len(at.get("plotly_chart")) == 1  # the open tab's only
    rows = ranking_rows(pipeline_db)
    names = list(table(at)["name"])
    cost = plotly_spec(at, 0)
    traces = {t["name"]: t for t in cost["data"]}
    assert set(traces) == {"method", "baseline", "Pareto front"}
    assert sum(len(values(traces[r]["x"])) for r in ("method", "baseline")) == len(rows)
    assert cost["layout"]["xaxis"]["title"]["text"] == "parameters"
    # The front: no point both cheaper and better; the baseline (most parameters, Δm 0) is off it.
    assert BASELINE not in traces["Pareto front"]["hovertext"]

    at.radio(key="cost").set_value("FLOPs")
    rerun(at)
    cost = plotly_spec(at, 0)
    assert cost["layout"]["xaxis"]["title"]["text"] == "FLOPs per image"
    flops = {round(r.flops) for r in rows.values()}
    assert {round(x) for t in cost["data"][:2] for x in values(t["x"])} == flops
    at.radio(key="cost").set_value("hours")
    rerun(at)
    assert plotly_spec(at, 0)["layout"]["xaxis"]["title"]["text"] == "CPU-hours per run"

    tasks = open_tab(at, "Per-task deltas")
    with read_only_session_factory(pipeline_db)() as session:
        by_id = {r.id: r.name for r in rows.values()}
        expected = {(by_id[s], t): v for s, t, v in queries.task_deltas(session, *BENCHMARK)}
    assert {t["name"] for t in tasks["data"]} == {"depth", "normal", "segmentation"}
    for trace in tasks["data"]:
        assert trace["type"] == "bar" and list(trace["x"]) == names  # ranking order
        for name, value in zip(trace["x"], values(trace["y"]), strict=True):
            assert math.isclose(value, expected[(name, trace["name"])], abs_tol=1e-9)

    timeline = open_tab(at, "Δm over time")
    assert [t["name"] for t in timeline["data"]] == ["baseline", "method", "best method so far"]
    best = values(timeline["data"][2]["y"])
    assert math.isclose(np.nanmax(best), max(r.per_task_mean for r in rows.values()))

    spread = open_tab(at, "Spread over seeds")
    points = sum(len(values(t["y"])) for t in spread["data"])
    assert points == 3 * len(rows) and {t["type"] for t in spread["data"]} == {"box"}


def test_the_site_only_reads(pipeline_db: str, open_site: Open) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    event.listen(Engine, "before_cursor_execute", record)
    try:
        at = open_site(pipeline_db)
        set_convention(at, PER_METRIC)
        for page, params in (("submission", {"submission": "2"}), ("compare", {}), ("queue", {})):
            open_site(pipeline_db, page, **params)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert statements and set(statements) == {"SELECT"}


def test_new_results_show_at_once(pipeline_db: str, open_site: Open, tmp_path: Path) -> None:
    url = copy_of(pipeline_db, tmp_path)
    at = open_site(url)
    seeds = dict(zip(table(at)["name"], table(at)["seeds"], strict=True))
    assert seeds["hps-equal"] == 3
    rows = ranking_rows(url)
    landed_run(url, rows["hps-equal"].id)
    rerun(at)  # the same session, its caches warm: the data version moved
    seeds = dict(zip(table(at)["name"], table(at)["seeds"], strict=True))
    assert seeds["hps-equal"] == 4


# ---------------------------------------------------------------------------
# Submission


def test_a_submission_page_by_url(pipeline_db: str, open_site: Open) -> None:
    rows = ranking_rows(pipeline_db)
    chosen = rows["hps-pcgrad"]
    at = open_site(pipeline_db, "submission", submission=str(chosen.id))
    assert at.selectbox(key="submission_choice").value == chosen.id
    assert at.title[0].value == "hps\\-pcgrad"
    assert "**Authors:** MTL Leaderboard" in [m.value for m in at.markdown]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["seeds"] == "3"
    assert metrics["Δm per task ↑"].startswith(f"{chosen.per_task_mean:+.2f} ± ")
    facts, provenance, spec, campaigns, runs, jobs = (table(at, i) for i in range(6))
    assert list(campaigns["campaign"]) == ["initial"] and list(campaigns["kind"]) == ["original"]
    assert dict(zip(facts["field"], facts["value"], strict=True))["spec hash"] == chosen.spec_hash
    fields = dict(zip(provenance["field"], provenance["value"], strict=True))
    assert fields["Δm baseline"] == f"{BASELINE} (#1)" and fields["runs"] == "3"
    assert fields["code version"].startswith("git:") or fields["code version"]
    assert dict(zip(spec["field"], spec["value"], strict=True))["weighting.name"] == "pcgrad"
    assert any("weighting:" in c.value for c in at.code)  # the file as submitted
    assert json.loads(at.code[-1].value)["name"] == "hps-pcgrad"  # the normalised spec
    assert list(runs["seed"]) == [0, 1, 2]
    deltas = [d.per_task for d in chosen.run_deltas]
    assert runs["Δm per task ↑"].tolist() == pytest.approx(deltas, abs=1e-12)
    assert math.isclose(runs["segmentation miou ↑"].mean(),
                        chosen.metrics[("segmentation", "miou")])  # fmt: skip
    assert (runs["FLOPs"] > 0).all() and set(runs["spec hash"]) == {chosen.spec_hash}
    assert set(jobs["state"]) == {"succeeded"} and len(jobs) == 3
    assert {b.proto.label for b in at.get("download_button")} == {"spec file", "normalised JSON"}
    curves = plotly_spec(at, 0)
    lines = {(t["name"], t["xaxis"]) for t in curves["data"]}
    assert lines == {(task, axis) for task in ("depth", "normal", "segmentation")
                     for axis in ("x", "x2")}  # fmt: skip
    links = {link.proto.label: link.proto.page for link in at.get("page_link")}
    assert any(label.startswith("Compare with") for label in links)


def test_choosing_a_submission_puts_it_in_the_url(pipeline_db: str, open_site: Open) -> None:
    rows = ranking_rows(pipeline_db)
    at = open_site(pipeline_db, "submission")
    leader = table(open_site(pipeline_db))["name"][0]
    assert at.selectbox(key="submission_choice").value == rows[leader].id  # the leader
    at.selectbox(key="submission_choice").set_value(rows[BASELINE].id)
    rerun(at)
    assert at.query_params["submission"] == str(rows[BASELINE].id)
    assert at.title[0].value == "stl\\-small\\-cnn"


# ---------------------------------------------------------------------------
# Compare


def test_compare_states_the_significance_of_each_difference(
    pipeline_db: str, open_site: Open
) -> None:
    rows = ranking_rows(pipeline_db)
    ids = [rows[name].id for name in ("hps-equal", BASELINE, "hps-dwa")]
    at = open_site(pipeline_db, "compare", compare=",".join(map(str, ids)))
    assert at.multiselect(key="compare_choice").value == ids
    side, differences = table(at, 0), table(at, 1)
    assert side.columns.tolist() == ["quantity", "hps-equal", BASELINE, "hps-dwa"]
    assert side["quantity"].tolist()[:2] == ["Δm per task ↑", "Δm per metric ↓"]
    assert len(side) == 2 + 9
    assert all(cell.endswith("(n=3)") for cell in side["hps-equal"])
    assert len(differences) == 2 * 11  # each metric of the two others vs the reference
    row = differences[(differences["quantity"] == "Δm per task ↑")
                      & (differences["submission"] == BASELINE)].iloc[0]  # fmt: skip
    # Paired by seed over the three seeds both ran, as scipy's ttest_rel says.
    first = {d.seed: d.per_task for d in rows["hps-equal"].run_deltas}
    second = {d.seed: d.per_task for d in rows[BASELINE].run_deltas}
    seeds = sorted(first)
    reference = ttest_rel([second[s] for s in seeds], [first[s] for s in seeds])
    assert row["test"] == "paired t, 3 seeds"
    mean = statistics.fmean(second[s] - first[s] for s in seeds)
    assert math.isclose(row["difference vs hps-equal"], mean, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(row["p"], reference.pvalue, rel_tol=1e-9)
    interval = reference.confidence_interval(0.95)
    assert math.isclose(row["± 95% CI"], (interval.high - interval.low) / 2, rel_tol=1e-9)
    wins = sum(second[s] > first[s] for s in seeds) / 3
    assert row["P(improvement)"] == wins
    assert row["significant"] == (reference.pvalue < 0.05)
    assert row["verdict vs hps-equal"] in (
        "significantly better",
        "significantly worse",
        "not significant",
    )
    assert "paired t test over the seeds both ran" in text_of(at)
    assert len(at.get("plotly_chart")) == 1  # Δm over seeds


def test_compare_defaults_to_the_two_best_and_needs_two(pipeline_db: str, open_site: Open) -> None:
    at = open_site(pipeline_db, "compare")
    order = [ranking_rows(pipeline_db)[n].id for n in table(open_site(pipeline_db))["name"]]
    assert at.multiselect(key="compare_choice").value == order[:2]
    assert at.query_params["compare"] == f"{order[0]},{order[1]}"
    at.multiselect(key="compare_choice").set_value(order[:1])
    rerun(at)
    assert [i.value for i in at.info] == ["Choose two or more submissions."]


# ---------------------------------------------------------------------------
# Queue


def test_the_queue_shows_states_and_failure_reasons(
    pipeline_db: str, open_site: Open, tmp_path: Path
) -> None:
    url = copy_of(pipeline_db, tmp_path)
    with transaction(url) as session:
        submission = session.get(Submission, 2)
        assert submission is not None
        queue_jobs(session, submission, [5, 6, 7], campaign(session, "nightly"))
        failed, diverged = claim_jobs(session, 2)
        record_failure(session, failed, JobState.FAILED, "RuntimeError: out of memory\n"
                       "Traceback (most recent call last):\n  File \"/srv/worker/runners/train.py\""
                       ", line 9, in train\nRuntimeError: out of memory")  # fmt: skip
        record_failure(session, diverged, JobState.DIVERGED, "training loss not finite")
    at = open_site(url, "queue")
    counts = {m.label: m.value for m in at.metric}
    assert counts == {"queued": "1", "running": "0", "succeeded": "12", "failed": "1",
                      "diverged": "1", "cancelled": "0"}  # fmt: skip
    jobs = table(at, 0)
    assert set(jobs["state"]) == {"queued", "failed", "diverged"}  # the default states
    assert set(jobs["campaign"]) == {"nightly"}
    assert "RuntimeError: out of memory" in set(jobs["reason"])
    reasons = table(at, 1)
    assert reasons["reason"].tolist() == ["RuntimeError: out of memory", "training loss not finite"]
    # The last line of an error, not its traceback: that names files on the workers.
    assert "RuntimeError: out of memory" in [c.value for c in at.code]
    assert not any("/srv/worker" in c.value for c in at.code)
    at.multiselect(key="state").set_value(["succeeded"])
    rerun(at)
    assert set(table(at, 0)["state"]) == {"succeeded"} and len(table(at, 0)) == 12


# ---------------------------------------------------------------------------
# Empty and hostile databases


def test_an_empty_database_explains_how_to_submit(tmp_path: Path, open_site: Open) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    engine(url)  # the schema, no rows
    at = open_site(url)
    assert len(at.info) == 1
    assert "mtlb submit" in at.info[0].value and "mtlb run" in at.info[0].value
    assert not at.dataframe and not at.get("plotly_chart")


def test_a_database_without_tables_is_left_alone(tmp_path: Path, open_site: Open) -> None:
    path = tmp_path / "bare.sqlite"
    sqlite3.connect(path).close()
    at = open_site(f"sqlite:///{path}")
    assert "mtlb submit" in at.info[0].value
    assert sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path, open_site: Open) -> None:
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


@pytest.mark.parametrize("page", ["ranking", "submission", "compare", "queue"])
def test_a_hostile_submission_is_rendered_inert(tmp_path: Path, open_site: Open, page: str) -> None:
    url = f"sqlite:///{tmp_path / 'hostile.sqlite'}"
    with transaction(url) as session:
        for i, role in enumerate((Role.METHOD, Role.BASELINE)):
            submission, _ = store_hostile(session, i, role)
            queue_jobs(session, submission, [0], campaign(session))
        [job] = claim_jobs(session, 1)
        record_failure(session, job, JobState.FAILED, f"ValueError: {HOSTILE}")
    at = open_site(url, page)
    rendered = text_of(at) + "\n".join(e.proto.label for e in at.get("expandable"))
    for raw in ("<script", "<img", "<b>", "](", "**bold**", "\n# Heading"):
        assert raw not in rendered, raw
    if page == "ranking":
        frame = table(at)  # st.dataframe shows text as text
        assert sorted(frame["name"]) == sorted([f"{HOSTILE} #1", f"{HOSTILE} #2"])
        assert frame["rank"].isna().all()
    if page == "submission":
        assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt; \\*\\*bold\\*\\*" in rendered
        assert "\\[x\\]\\(javascript\\:alert\\(1\\)\\)" in rendered
        assert "**Authors:** &lt;b&gt;Mallory&lt;/b&gt;, \\[me\\]\\(https\\:" in rendered
        assert "No finished runs yet." in [i.value for i in at.info]
    if page == "queue":
        assert f"ValueError: {HOSTILE}" in [c.value for c in at.code]  # st.code: text


def store_hostile(session: Any, i: int, role: Role) -> Any:
    from db.queue import store_submission

    spec = {**hostile_spec(), "weighting": {"name": "equal" if i == 0 else "dwa"}}
    return store_submission(session, spec=spec, spec_hash=f"{i}" * 64, source="name: x", role=role)


def test_page_modules_do_nothing_when_imported() -> None:
    """Page files render only when Streamlit runs them (as __main__), not on import."""
    import importlib

    for page in ("ranking", "submission", "compare", "queue"):
        module = importlib.import_module(f"leaderboard.views.{page}")
        assert callable(module.render)
