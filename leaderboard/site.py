"""What every page shares: the context of a page run, the sidebar, links between pages.

`app.py` builds the context once per run (database URL, data version,
benchmark version, Δm convention) and the pages read it with `context()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from db.delta_m import CONVENTIONS, PER_METRIC, PER_TASK
from leaderboard import data
from leaderboard.text import CONVENTION_LABELS, escape_markdown

CONTEXT_KEY = "mtlb_context"
# Query parameters of the shared widgets; the pages add their own.
BENCHMARK_PARAM = "benchmark"
CONVENTION_PARAM = "convention"
SUBMISSION_PARAM = "submission"
COMPARE_PARAM = "compare"

PAGES = {
    "ranking": ("views/ranking.py", "Ranking", ":material/leaderboard:"),
    "submission": ("views/submission.py", "Submission", ":material/description:"),
    "compare": ("views/compare.py", "Compare", ":material/compare_arrows:"),
    "queue": ("views/queue.py", "Queue", ":material/pending_actions:"),
    # The one page that writes, through submissions.intake only.
    "submit": ("views/submit.py", "Submit", ":material/upload_file:"),
}


@dataclass(frozen=True)
class Context:
    url: str
    version: data.Version
    benchmark: str
    protocol_version: int
    convention: str


def context() -> Context:
    """The context `app.py` set for this page run."""
    found = st.session_state.get(CONTEXT_KEY)
    if not isinstance(found, Context):
        raise RuntimeError("a page of the site ran without app.py (serve leaderboard/app.py)")
    return found


def benchmark_label(benchmark: str, version: int) -> str:
    return f"{benchmark} v{version}"


# The largest value of a SQL BIGINT: a longer number cannot be a submission id.
MAX_ID = 2**63 - 1
NOTICE_LIMIT = 40  # characters of a rejected value quoted back


def _as_id(part: str) -> int | None:
    # ASCII digits only: str.isdigit accepts '²', which int() refuses; and a bounded length,
    # because int() refuses more than 4300 digits (and no id has more than 19).
    if not (part.isascii() and part.isdigit()) or len(part) > len(str(MAX_ID)):
        return None
    value = int(part)
    return value if value <= MAX_ID else None


def _parts(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def parse_ids(text: str | None) -> list[int]:
    """Submission ids from a query parameter: '3' or '3,7,9'; anything else is skipped
    (`rejected_ids` lists it).

    >>> parse_ids("3, 7,x,,9,3"), parse_ids(None), parse_ids("²,4"), parse_ids("9" * 5000)
    ([3, 7, 9], [], [4], [])
    """
    out: list[int] = []
    for part in _parts(text):
        value = _as_id(part)
        if value is not None and value not in out:
            out.append(value)
    return out


def rejected_ids(text: str | None) -> list[str]:
    """The parts of a query parameter that `parse_ids` skips: not submission ids.

    >>> rejected_ids("3,x, ²,,-1")
    ['x', '²', '-1']
    """
    return [part for part in _parts(text) if _as_id(part) is None]


def ids_notice(param: str, text: str | None) -> str | None:
    """One line for the page when the URL's `param` holds something that is not an id; None
    when all is well.  Quotes the value (cut short, markdown-escaped): it came from the URL.

    >>> ids_notice("submission", "3"), ids_notice("submission", "x")
    (None, 'Ignored ?submission=x in the URL: not a submission id.')
    """
    rejected = rejected_ids(text)
    if not rejected:
        return None
    shown = ",".join(rejected)
    if len(shown) > NOTICE_LIMIT:
        shown = shown[: NOTICE_LIMIT - 1] + "…"
    what = "not a submission id" if len(rejected) == 1 else "not submission ids"
    return f"Ignored ?{param}={escape_markdown(shown)} in the URL: {what}."


def wanted_benchmark(
    page: str, params: Mapping[str, str], index: Sequence[tuple[int, str, str, int]]
) -> tuple[str, int] | None:
    """The benchmark version of the submission a page's URL names, if the URL names one.

    A shared link to a submission (or a comparison) shows it even when its
    benchmark version is not the one the sidebar would pick by default.
    """
    key = {"submission": SUBMISSION_PARAM, "compare": COMPARE_PARAM}.get(page)
    if key is None:
        return None
    ids = parse_ids(params.get(key))
    by_id = {i: (b, v) for i, _, b, v in index}
    return next((by_id[i] for i in ids if i in by_id), None)


def sidebar(
    versions: list[tuple[str, int]], wanted: tuple[str, int] | None
) -> tuple[str, int, str]:
    """Benchmark version and Δm convention, from the sidebar (and the URL)."""
    labels = {benchmark_label(b, v): (b, v) for b, v in versions}
    if (
        wanted is not None
        and BENCHMARK_PARAM not in st.query_params
        and BENCHMARK_PARAM not in st.session_state
    ):
        st.session_state[BENCHMARK_PARAM] = benchmark_label(*wanted)
    with st.sidebar:
        choice = st.selectbox(
            "Benchmark",
            list(labels),
            key=BENCHMARK_PARAM,
            bind="query-params",
            help="A benchmark and its protocol version: results of different versions never mix.",
        )
        convention = st.radio(
            "Δm convention",
            [PER_TASK, PER_METRIC],
            format_func=CONVENTION_LABELS.__getitem__,
            key=CONVENTION_PARAM,
            bind="query-params",
            help="  \n".join(CONVENTIONS.values()),
        )
    benchmark, version = labels[choice]
    return benchmark, version, convention


def shared_params() -> dict[str, str]:
    """The shared widgets' query parameters now in the URL, to carry into a link."""
    return {
        key: str(st.query_params[key])
        for key in (BENCHMARK_PARAM, CONVENTION_PARAM)
        if key in st.query_params
    }


def page_link(page: str, label: str, params: Mapping[str, Any] | None = None) -> None:
    """A link to one of the site's pages, keeping the benchmark and convention.

    The label is markdown: escape any submitter string in it.
    """
    path, _, icon = PAGES[page]
    st.page_link(path, label=label, icon=icon, query_params={**shared_params(), **(params or {})})


def time_column(label: str) -> Any:
    return st.column_config.DatetimeColumn(label, format="YYYY-MM-DD HH:mm:ss", help="UTC")


def jobs_table(frame: Any) -> None:
    """A `tables.jobs_frame` as a table."""
    st.dataframe(
        frame,
        hide_index=True,
        height="content" if len(frame) <= 20 else 36 * 20,
        column_config={
            "job": st.column_config.NumberColumn(format="%d"),
            **{c: time_column(c) for c in ("created", "started", "finished")},
            "reason": st.column_config.TextColumn(width="large"),
        },
    )
