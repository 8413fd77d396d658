"""Queue page: what is queued, running and failed (every benchmark), with failure reasons."""

from __future__ import annotations

import streamlit as st

from db.models import JobState
from leaderboard import data, site, tables
from leaderboard.text import escape_markdown, last_line

DEFAULT_STATES = [JobState.QUEUED, JobState.RUNNING, JobState.FAILED, JobState.DIVERGED]
ERRORS_SHOWN = 20


def render() -> None:
    context = site.context()
    st.title("Queue")
    jobs = data.jobs(context.url, context.version.jobs)
    counts = tables.state_counts(jobs)
    for cell, (state, n) in zip(st.columns(len(counts)), counts.items(), strict=True):
        cell.metric(state, f"{n:,}")
    states = st.multiselect(
        "States", [s.value for s in JobState], default=[s.value for s in DEFAULT_STATES],
        key="state", bind="query-params",
    )  # fmt: skip
    frame = tables.jobs_frame(jobs, states or None)
    site.jobs_table(frame)
    st.caption(
        f"{len(frame):,} of {len(jobs):,} jobs, newest first; every benchmark. "
        "reason: the first line of a failed job's error."
    )

    st.subheader("Failure reasons")
    reasons = tables.failure_reasons(jobs)
    if reasons.empty:
        st.info("No job has failed or diverged.")
        return
    st.dataframe(reasons, hide_index=True)
    failed = [j for j in reversed(jobs) if j.state in (JobState.FAILED, JobState.DIVERGED)]
    st.caption(
        f"The {min(len(failed), ERRORS_SHOWN)} most recent errors, the last line of each (the "
        "full traceback names files on the workers: it stays in the database)."
    )
    for job in failed[:ERRORS_SHOWN]:
        name = escape_markdown(job.name)
        with st.expander(f"Job {job.id}: {name}, seed {job.seed} ({job.state})"):
            st.code(last_line(job.error or ""), language=None)


if __name__ == "__main__":
    render()
