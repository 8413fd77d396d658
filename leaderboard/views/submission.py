"""Submission page: one submission's spec, provenance, runs, jobs, curves; linkable by id."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial

import streamlit as st

from db.delta_m import CONVENTIONS, PER_METRIC, PER_TASK
from db.queries import JobRow, MetricColumn, RankingRow, RunDelta, RunRow
from leaderboard import charts, data, exports, paired, site, tables
from leaderboard.text import CONVENTION_LABELS, escape_markdown, format_mean_std, last_line

CHOICE_KEY = "submission_choice"
SHORT_LABELS = {PER_TASK: "Δm per task ↑", PER_METRIC: "Δm per metric ↓"}


def choose(rows: list[RankingRow], convention: str) -> int:
    """The submission in the URL (`?submission=ID`), else the leader; the choice goes to the URL."""
    names = tables.display_names(rows)
    order = [row.id for row in tables.by_delta_m(rows, convention)]
    if st.session_state.get(CHOICE_KEY) not in order:
        given = st.query_params.get(site.SUBMISSION_PARAM)
        notice = site.ids_notice(site.SUBMISSION_PARAM, given)
        if notice is not None:
            st.warning(notice, icon=":material/link_off:")
        wanted = site.parse_ids(given)
        st.session_state[CHOICE_KEY] = next((i for i in wanted if i in order), order[0])
    chosen = st.selectbox(
        "Submission", order, format_func=lambda i: f"{names[i]} (#{i})", key=CHOICE_KEY
    )
    st.query_params[site.SUBMISSION_PARAM] = str(chosen)
    return int(chosen)


def summary(
    row: RankingRow,
    rows: list[RankingRow],
    convention: str,
    placed: Mapping[int, paired.Placement],
) -> None:
    st.title(escape_markdown(row.name))
    if row.description:
        st.markdown(escape_markdown(row.description))
    if row.authors:
        st.markdown("**Authors:** " + ", ".join(escape_markdown(a) for a in row.authors))
    placement = placed.get(row.id)
    cells = st.columns(4)
    names = {i: escape_markdown(name) for i, name in tables.display_names(rows).items()}
    test = tables.rank_test_text(placement, names)  # the help is markdown: names escaped
    cells[0].metric(
        "rank", "–" if placement is None else str(placement.rank),
        help=f"{CONVENTION_LABELS[convention]}. {tables.RANKS_EXPLAINED}"
        + (f" Placed by the comparison {test}." if test else ""),
    )  # fmt: skip
    for cell, name in zip(cells[1:3], (PER_TASK, PER_METRIC), strict=True):
        mean = tables.mean(row, name)
        half = tables.half_width(row, name)
        cell.metric(
            SHORT_LABELS[name], format_mean_std(mean, half) or "–",
            help=f"{CONVENTIONS[name]}. Mean ± half-width of the 95% t interval over seeds, in %.",
        )  # fmt: skip
    others = tables.seeds_text(row).partition(" ")[2].strip("()")  # "+2 pending, 1 failed"
    cells[3].metric(
        "seeds", str(row.seeds), delta=others or None, delta_color="off", delta_arrow="off",
        help="finished runs; jobs queued or running, and jobs failed or diverged",
    )  # fmt: skip


def spec_section(url: str, version: data.Version, row: RankingRow) -> None:
    st.subheader("Spec")
    stored = data.spec(url, version.results, row.id)
    if stored is None:
        st.info("The spec is not stored.")
        return
    rendered, raw, normalised = st.tabs(["Rendered", "File as submitted", "Normalised (JSON)"])
    normalised_json = json.dumps(stored.spec, indent=2, sort_keys=False)
    with rendered:
        st.dataframe(tables.spec_frame(stored.spec), hide_index=True, height="content")
        st.caption("The normalised spec, defaults written out: what the workers trained.")
    with raw:
        st.code(stored.source, language="yaml")
    with normalised:
        st.code(normalised_json, language="json")
    stem = exports.file_stem(row.name) or "spec"
    left, right, _ = st.columns([1, 1, 4])
    left.download_button(
        "spec file", partial(str, stored.source), f"{stem}.yaml", "application/x-yaml",
        icon=":material/download:", on_click="ignore", key="download_source",
    )  # fmt: skip
    right.download_button(
        "normalised JSON", partial(str, normalised_json), f"{stem}.json", "application/json",
        icon=":material/download:", on_click="ignore", key="download_spec",
    )  # fmt: skip


def campaigns_section(
    row: RankingRow,
    runs: list[RunRow],
    deltas: list[RunDelta],
    columns: list[MetricColumn],
    convention: str,
) -> None:
    """Each campaign's results apart: the original evaluation, then every rerun."""
    st.subheader("Campaigns")
    if not runs:
        st.info("No finished runs yet.")
        return
    frame = tables.campaigns_frame(runs, deltas, columns, row.original_campaign_id, convention)
    st.dataframe(
        frame, hide_index=True, height="content",
        column_config={
            c: st.column_config.NumberColumn(format="%.4f") for c in frame.columns[7:]
        },
    )  # fmt: skip
    st.caption(
        "One row per campaign under this protocol version: the original evaluation (its "
        "first campaign, which the ranking uses) and each rerun. Δm: mean ± half-width of the "
        "95% t interval over the campaign's seeds, in %; metrics: means over its seeds. "
        f"reproduced ({CONVENTION_LABELS[convention]}): 'yes' when the rerun's mean Δm is "
        "within the original's seed standard deviation of the original's mean, 'not "
        "reproduced' otherwise; blank when not judged (fewer than 2 original seeds, or no Δm)."
    )


def tuning_section(url: str, version: data.Version, submission_id: int) -> None:
    """The values equal-budget tuning chose and its trials, for a spec with a search space."""
    tuning = data.tuning(url, version.results, submission_id)
    if tuning is None:
        return
    st.subheader("Tuning")
    chosen, trials = tables.tuning_frames(tuning)
    left, right = st.columns([1, 3])
    with left:
        st.dataframe(chosen, hide_index=True, height="content")
    with right:
        st.dataframe(
            trials, hide_index=True, height="content",
            column_config={"objective": st.column_config.NumberColumn(format="%+.2f")},
        )  # fmt: skip
    st.caption(
        f"Chosen by {tuning['trial_budget']} trials (the protocol's budget, the same for every "
        f"method), each trained on the train split less {tuning['validation_size']} validation "
        "items and scored there, never on the test split. Objective: "
        f"{escape_markdown(tuning['objective'])}; the first trial is the spec's own values, so "
        "the choice is never worse on validation. The seeds then trained with the chosen values."
    )


def jobs_section(jobs: list[JobRow]) -> None:
    st.subheader("Jobs")
    if not jobs:
        st.info("No jobs.")
        return
    site.jobs_table(tables.jobs_frame(jobs).drop(columns=["submission", "benchmark"]))
    for job in jobs:
        if job.error:
            # The last line only: the traceback above it names files on the workers.
            with st.expander(f"Job {job.id} (seed {job.seed}): {job.state}"):
                st.code(last_line(job.error), language=None)


def render() -> None:
    context = site.context()
    url, version = context.url, context.version
    rows = data.ranking(url, version, context.benchmark, context.protocol_version)
    if not rows:
        st.info("No submissions for this benchmark version.")
        return
    columns = data.metric_columns(url, version.results, context.benchmark, context.protocol_version)
    chosen = choose(rows, context.convention)
    row = next(r for r in rows if r.id == chosen)
    names = tables.display_names(rows)
    placed = data.placements(
        url, version.results, context.benchmark, context.protocol_version, context.convention
    )
    summary(row, rows, context.convention, placed)

    # This version's runs only: a rerun under another version shows under that version.
    runs = data.submission_runs(url, version.results, chosen, context.protocol_version)
    deltas = data.submission_deltas(
        url, version.results, context.benchmark, context.protocol_version, chosen
    )
    left, right = st.columns(2)
    with left:
        st.subheader("Submission")
        st.dataframe(tables.facts_frame(row), hide_index=True, height="content")
    with right:
        st.subheader("Provenance")
        st.dataframe(tables.provenance_frame(row, runs, names), hide_index=True, height="content")
    links = st.columns(3)
    leader = tables.by_delta_m(rows, context.convention)[0].id
    baseline = row.baseline_submission_id
    with links[0]:
        others = {i: label for i, label in ((leader, "the leader"), (baseline, "its baseline"))
                  if i is not None and i != chosen}  # fmt: skip
        if others:
            site.page_link(
                "compare", "Compare with " + " and ".join(others.values()),
                {site.COMPARE_PARAM: ",".join(str(i) for i in [chosen, *others])},
            )  # fmt: skip
    with links[1]:
        if baseline is not None and baseline != chosen:
            site.page_link(
                "submission", f"Its baseline: {escape_markdown(names.get(baseline, '?'))}",
                {site.SUBMISSION_PARAM: str(baseline)},
            )  # fmt: skip

    spec_section(url, version, row)
    tuning_section(url, version, chosen)
    campaigns_section(row, runs, deltas, columns, context.convention)

    st.subheader("Runs")
    if runs:
        st.dataframe(
            tables.runs_frame(runs, columns, deltas),
            hide_index=True,
            column_config={
                tables.PARAMETERS: st.column_config.NumberColumn(format="localized"),
                tables.FLOPS: st.column_config.NumberColumn(format="compact"),
                tables.WALL_TIME: st.column_config.NumberColumn(format="%.1f"),
                tables.GPU_MEMORY: st.column_config.NumberColumn(format="%.0f"),
                "Δm per task ↑": st.column_config.NumberColumn(format="%+.2f"),
                "Δm per metric ↓": st.column_config.NumberColumn(format="%+.2f"),
                "finished at": site.time_column("finished at"),
            },
        )
    else:
        st.info("No finished runs yet.")
    jobs_section(data.jobs(url, version.jobs, chosen))

    st.subheader("Training curves and task weights")
    points = data.curves(url, version.results, chosen)
    if points:
        st.plotly_chart(charts.curves_figure(tables.curves_frame(points)))
        st.caption(
            "Mean training loss and mean task weight of each task per epoch, mean over seeds."
        )
    else:
        st.info("No training curves recorded.")


if __name__ == "__main__":
    render()
