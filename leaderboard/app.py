"""The leaderboard site: ranking by Δm, charts, one section per submission.

Served by `mtlb leaderboard` (`streamlit run leaderboard/app.py`).  Reads through
`db.queries` only, never writes.  Widget values live in the URL (`bind="query-params"`),
so a view can be shared.  Every submitter string reaches the page through
`st.dataframe`/`st.code`, or through `st.markdown` after `escape_markdown`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from db import queries
from db.delta_m import CONVENTIONS, PER_METRIC, PER_TASK
from db.queries import MetricColumn
from db.session import database_url, session_factory
from leaderboard import charts, tables
from leaderboard.text import (
    CONVENTION_LABELS,
    HIGHER_IS_BETTER,
    arrow,
    escape_markdown,
    metric_header,
)

TTL_S = 10  # results land while the site is open; stale by at most this long

T = TypeVar("T")

HOW_TO_SUBMIT = """\
No results yet. Train the single-task baselines, submit a method and run the queue:

```
mtlb baselines synthetic-scenes
mtlb validate my-method.yaml
mtlb submit my-method.yaml
mtlb run
```

Example specs are in `submissions/examples/`; results appear here as jobs finish.
"""


# ---------------------------------------------------------------------------
# Queries, cached per (database URL, arguments).  Plain rows only: they are pickled.


def _read(url: str, query: Callable[..., T], *args: Any) -> T:
    # A session that is closed, never committed: the site only reads.
    with session_factory(url)() as session:
        return query(session, *args)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def benchmark_versions(url: str) -> list[tuple[str, int]]:
    return _read(url, queries.benchmark_versions)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def metric_columns(url: str, benchmark: str, version: int) -> list[MetricColumn]:
    return _read(url, queries.metric_columns, benchmark, version)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def ranking(url: str, benchmark: str, version: int) -> list[dict[str, Any]]:
    return _read(url, queries.ranking, benchmark, version)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def task_deltas(url: str, benchmark: str, version: int) -> list[tuple[int, str, float]]:
    return _read(url, queries.task_deltas, benchmark, version)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def submission_runs(url: str, submission_id: int) -> list[dict[str, Any]]:
    return _read(url, queries.submission_runs, submission_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def curves(url: str, submission_id: int) -> list[tuple[int, int, str, str, float]]:
    return _read(url, queries.curves, submission_id)


def _spec(session: Session, submission_id: int) -> dict[str, Any]:
    found = queries.submission(session, submission_id)
    return {} if found is None else {"spec": dict(found.spec), "source": found.source}


@st.cache_data(ttl=TTL_S, show_spinner=False)
def spec(url: str, submission_id: int) -> dict[str, Any]:
    """The normalised spec and the file as submitted."""
    return _read(url, _spec, submission_id)


# ---------------------------------------------------------------------------
# Page sections.


def missing_sqlite_file(url: str) -> bool:
    """True for a SQLite URL whose file does not exist (opening it would create it)."""
    parsed = make_url(url)
    name = parsed.database
    return (
        parsed.get_backend_name() == "sqlite"
        and bool(name)
        and name != ":memory:"
        and not Path(str(name)).exists()
    )


def sidebar(versions: list[tuple[str, int]]) -> tuple[str, int, str]:
    """Benchmark version and Δm convention, from the sidebar (and the URL)."""
    labels = {f"{benchmark} v{version}": (benchmark, version) for benchmark, version in versions}
    with st.sidebar:
        choice = st.selectbox(
            "Benchmark",
            list(labels),
            key="benchmark",
            bind="query-params",
            help="A benchmark and its protocol version: results of different versions never mix.",
        )
        convention = st.radio(
            "Δm convention",
            [PER_TASK, PER_METRIC],
            format_func=CONVENTION_LABELS.__getitem__,
            key="convention",
            bind="query-params",
            help="  \n".join(CONVENTIONS.values()),
        )
        st.caption(f"Results refresh every {TTL_S} s.")
    benchmark, version = labels[choice]
    return benchmark, version, convention


def ranking_section(
    rows: list[dict[str, Any]], columns: list[MetricColumn], convention: str
) -> None:
    higher = HIGHER_IS_BETTER[convention]
    frame = tables.ranking_frame(rows, columns, convention)
    column_config: dict[str, Any] = {
        tables.RANK: st.column_config.NumberColumn(
            "rank", help=f"by mean Δm, {arrow(higher)}; blank without Δm", format="%d"
        ),
        tables.DELTA_M: st.column_config.TextColumn(
            f"Δm {arrow(higher)}", help=f"{CONVENTIONS[convention]}; mean ± std over seeds"
        ),
        "role": st.column_config.TextColumn("role", help="baseline: the single-task runs"),
        "seeds": st.column_config.TextColumn("seeds", help="runs done (+ jobs queued or running)"),
        tables.PARAMETERS: st.column_config.NumberColumn(
            "parameters", help="mean over runs", format="localized"
        ),
        "wall time (s)": st.column_config.NumberColumn(
            "wall time (s)", help="training + evaluation, mean over runs", format="%.1f"
        ),
    }
    for c in tables.headline_columns(columns):
        header = metric_header(c.task, c.metric, c.higher_is_better)
        better = "higher" if c.higher_is_better else "lower"
        column_config[header] = st.column_config.NumberColumn(
            header, help=f"headline metric of {c.task}, mean over seeds; {better} is better",
            format="%.4f",
        )  # fmt: skip
    st.dataframe(frame, hide_index=True, column_config=column_config)

    names = tables.display_names(rows)
    baseline_ids = sorted({r["baseline_submission_id"] for r in rows} - {None})
    used = (
        ", ".join(escape_markdown(names.get(i, f"#{i}")) + f" (#{i})" for i in baseline_ids)
        or "none trained yet, so no Δm"
    )
    st.caption(
        f"{escape_markdown(CONVENTIONS[convention])}. Baseline: {used}. "
        "Δm is the mean ± sample standard deviation over seeds (the mean alone for one seed); "
        "metrics are means over seeds."
    )


def charts_section(
    rows: list[dict[str, Any]], deltas: list[tuple[int, str, float]], convention: str
) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("Per-task deltas")
        frame = tables.task_delta_frame(deltas, rows, convention)
        if frame.empty:
            st.info("No per-task deltas yet: they need finished runs and a trained baseline.")
        else:
            st.plotly_chart(charts.task_deltas_figure(frame))
            st.caption(
                "Mean relative gain of each task's metrics over the baseline, x100, "
                "averaged over seeds (the terms of the per-task Δm; higher is better)."
            )
    with right:
        st.subheader("Δm vs parameters")
        cost = tables.cost_frame(rows, convention)
        if cost.empty:
            st.info("No Δm yet.")
        else:
            st.plotly_chart(charts.cost_figure(cost, HIGHER_IS_BETTER[convention]))
            st.caption(f"Δm {CONVENTION_LABELS[convention]}; bars: std over seeds.")


def submission_section(
    url: str, rows: list[dict[str, Any]], columns: list[MetricColumn], convention: str
) -> None:
    st.header("Submission")
    names = tables.display_names(rows)
    by_id = {row["id"]: row for row in rows}
    # In ranking order, so the default is the leader; the URL holds the shown name.
    chosen = st.selectbox(
        "Submission",
        [row["id"] for _, row in tables.ranked(rows, convention)],
        format_func=names.__getitem__,
        key="submission",
        bind="query-params",
    )
    row = by_id[chosen]
    st.markdown(f"### {escape_markdown(row['name'])}")
    if row["description"]:
        st.markdown(escape_markdown(row["description"]))
    if row["authors"]:
        st.markdown("**Authors:** " + ", ".join(escape_markdown(a) for a in row["authors"]))
    left, right = st.columns([1, 2])
    with left:
        st.dataframe(tables.facts_frame(row), hide_index=True)
    with right:
        st.markdown("**Spec hash**")
        st.code(row["spec_hash"], language=None)
        stored = spec(url, chosen)
        if stored:
            with st.expander("Spec (normalised, as trained)"):
                st.code(json.dumps(stored["spec"], indent=2), language="json")
            with st.expander("Spec file as submitted"):
                st.code(stored["source"], language="yaml")

    st.subheader("Runs")
    runs = submission_runs(url, chosen)
    if not runs:
        st.info("No finished runs yet.")
        return
    st.dataframe(
        tables.runs_frame(runs, columns),
        hide_index=True,
        column_config={
            tables.PARAMETERS: st.column_config.NumberColumn(format="localized"),
            "wall time (s)": st.column_config.NumberColumn(format="%.1f"),
        },
    )
    st.subheader("Training curves")
    points = curves(url, chosen)
    if points:
        st.plotly_chart(charts.curves_figure(tables.curves_frame(points)))
        st.caption("Mean training loss and task weight of each task per epoch, mean over seeds.")
    else:
        st.info("No training curves recorded.")


def main() -> None:
    st.set_page_config(page_title="MTL Leaderboard", layout="wide")
    st.title("MTL Leaderboard")
    url = database_url()
    versions = [] if missing_sqlite_file(url) else benchmark_versions(url)
    if not versions:
        st.info(HOW_TO_SUBMIT)
        return
    benchmark, version, convention = sidebar(versions)
    rows = ranking(url, benchmark, version)
    columns = metric_columns(url, benchmark, version)
    st.header(f"Ranking: {escape_markdown(benchmark)} v{version}")
    ranking_section(rows, columns, convention)
    charts_section(rows, task_deltas(url, benchmark, version), convention)
    submission_section(url, rows, columns, convention)


main()
