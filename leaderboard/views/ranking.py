"""Ranking page: the table of one benchmark version, its filters, exports and charts."""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from db.delta_m import CONVENTIONS
from db.models import Role
from db.queries import MetricColumn, RankingRow
from leaderboard import charts, data, exports, reported, site, tables
from leaderboard.front import FrontVerdict, front_verdicts
from leaderboard.text import (
    CONVENTION_LABELS,
    HIGHER_IS_BETTER,
    arrow,
    escape_markdown,
    metric_header,
)

# Charts with one group per submission show the best ones only.
TOP = 20
COST_OPTIONS = [tables.PARAMETERS, tables.FLOPS, tables.HOURS]


def filters(rows: list[tables.Row]) -> tables.Filters:
    """The sidebar's filters; each lives in the URL, so a filtered view can be shared."""
    options = {
        "architecture": sorted({row.architecture for row in rows}),
        "weighting": sorted({row.weighting for row in rows}),
        "backbone": sorted({row.backbone for row in rows}),
        "role": sorted({str(row.role) for row in rows}),
    }

    with st.sidebar:
        st.subheader("Filter")
        search = st.text_input(
            "Search", key="q", bind="query-params",
            placeholder="name, author, method…",
            help="Every word must appear in the name, description, authors or components.",
        )  # fmt: skip
        chosen = {
            key: st.multiselect(
                key.capitalize(), found, key=key, bind="query-params", placeholder="all"
            )
            for key, found in options.items()
        }
        statuses = st.multiselect(
            "Status", list(tables.STATUSES), key="status", bind="query-params", placeholder="all",
            help="has results: at least one finished run; pending: jobs queued or running; "
            "failed: jobs that failed or diverged; reported: results reported in papers (one "
            "value each, with its citation; not ranked).",
        )  # fmt: skip
    return tables.Filters(
        architectures=frozenset(chosen["architecture"]),
        weightings=frozenset(chosen["weighting"]),
        backbones=frozenset(chosen["backbone"]),
        roles=frozenset(chosen["role"]),
        statuses=frozenset(statuses),
        search=search or "",
    )


def column_config(columns: list[MetricColumn], convention: str) -> dict[str, Any]:
    higher = HIGHER_IS_BETTER[convention]
    config: dict[str, Any] = {
        tables.ID: st.column_config.NumberColumn("id", format="%d"),
        tables.RANK: st.column_config.NumberColumn(
            "rank", format="%d",
            help="By mean Δm, with ties from paired comparisons: going down the table, each "
            "entry is compared with its tie group's leader (the group's best) over the seeds "
            "they share (paired t; Welch's test when they share fewer than 2). It shares the "
            "leader's rank unless the 95% interval of the difference excludes 0, and then "
            "leads a new group. Blank without Δm.",
        ),
        tables.RANK_RANGE: st.column_config.TextColumn(
            "possible ranks",
            help="best: 1 + the entries significantly better (paired test); worst: the number "
            "of entries − those significantly worse.",
        ),
        tables.TIE_GROUP: st.column_config.NumberColumn(
            "tie group", format="%d", help="1 is the best group; its members share a rank."
        ),
        tables.RANK_TEST: st.column_config.TextColumn(
            "rank test",
            help="The comparison that placed the entry: with its tie group's leader (a tie: "
            "the difference is not significant), or, for a group's leader, with the leader of "
            "the group above (significant). 'paired t, k seeds': over the k seeds both ran; "
            "'Welch': the two share fewer than 2 seeds; 'not testable': too few seeds, a tie.",
        ),
        tables.NAME: st.column_config.TextColumn("name", pinned=True),
        # A coloured pill per role, so that baselines stand out.
        tables.ROLE: st.column_config.MultiselectColumn(
            "role", options=["baseline", "method"], color=["orange", "blue"],
            help="baseline: the single-task runs every Δm is measured against",
        ),
        tables.DELTA_M: st.column_config.NumberColumn(
            f"Δm {arrow(higher)}", format="%+.2f",
            help=f"{CONVENTIONS[convention]}; mean over seeds, in %",
        ),
        tables.CI: st.column_config.NumberColumn(
            "± 95% CI", format="%.2f",
            help="Half-width of the 95% t interval of the mean Δm: t(0.975, n-1) · s / √n; "
            "blank for one seed",
        ),
        tables.SEEDS: st.column_config.NumberColumn("seeds", help="finished runs", format="%d"),
        tables.PENDING: st.column_config.NumberColumn("pending", help="jobs queued or running"),
        tables.RERUN_DELTA_M: st.column_config.NumberColumn(
            f"latest rerun Δm {arrow(higher)}", format="%+.2f",
            help="Mean Δm over the seeds of the latest rerun campaign (mtlb rerun) under this "
            "protocol version; blank without a rerun",
        ),
        tables.REPRODUCED: st.column_config.TextColumn(
            "reproduced",
            help="'not reproduced' when the latest rerun's mean Δm differs from the original "
            "campaign's by more than the original's seed standard deviation; blank when not "
            "judged (no rerun, or fewer than 2 original seeds)",
        ),
        tables.FAILED: st.column_config.NumberColumn("failed", help="jobs failed or diverged"),
        tables.SOURCE: st.column_config.TextColumn(
            "source",
            help="platform: trained and evaluated here (reproduced); reported: values from a "
            "paper (see citation), Δm against the reported baseline, not ranked",
        ),
        tables.TUNING: st.column_config.TextColumn(
            "tuning",
            help="tuned: the seeds trained with values chosen by equal-budget tuning (the "
            "protocol's trial budget, on a validation split of the training data; the submission "
            "page shows them); untuned: with the spec's own values",
        ),
        tables.CITATION: st.column_config.TextColumn(
            "citation", help="where a reported result comes from; its page link opens the paper"
        ),
        tables.PARAMETERS: st.column_config.NumberColumn(
            "parameters", help="mean over runs", format="localized"
        ),
        tables.FLOPS: st.column_config.NumberColumn(
            "FLOPs", help="forward FLOPs of one input image (a multiply-add is 2)",
            format="compact",
        ),
        tables.WALL_TIME: st.column_config.NumberColumn(
            "wall time (s)", help="training + evaluation, mean over runs", format="%.1f"
        ),
        tables.GPU_MEMORY: st.column_config.NumberColumn(
            "peak GPU memory (MiB)",
            help="the most GPU memory a run held allocated (torch.cuda.max_memory_allocated),"
            " largest over runs; blank for runs on the CPU", format="%.0f",
        ),
        tables.LAST_RESULT: st.column_config.DatetimeColumn(
            "last result", format="YYYY-MM-DD HH:mm", help="when the latest run finished (UTC)"
        ),
        tables.PAGE: st.column_config.LinkColumn(
            "page", display_text="open", help="The submission's own page (a shareable link)"
        ),
    }  # fmt: skip
    for c in columns:
        header = metric_header(c.task, c.metric, c.higher_is_better)
        better = "higher" if c.higher_is_better else "lower"
        position = "headline metric" if c.position == 0 else "metric"
        config[header] = st.column_config.NumberColumn(
            header, help=f"{position} of {c.task}, mean over seeds; {better} is better",
            format="%.4f",
        )  # fmt: skip
    return config


def table_controls(columns: list[MetricColumn]) -> tuple[list[str], str, bool, Any]:
    """Column choice, sort column and order; and the cell where the exports go."""
    every = tables.ranking_columns(columns)
    sortable = [c for c in every if c != tables.PAGE]
    sort_cell, order_cell, columns_cell, exports_cell = st.columns(
        [2, 1, 1, 3], vertical_alignment="bottom"
    )
    with sort_cell:
        sort_by = st.selectbox(
            "Sort by", sortable, index=sortable.index(tables.RANK), key="sort",
            bind="query-params",
        )  # fmt: skip
    with order_cell:
        best_first = st.toggle("best first", value=True, key="best_first")
    with columns_cell.popover("Columns", icon=":material/view_column:"):
        chosen = st.multiselect(
            "Columns shown", every, default=tables.default_columns(columns), key="columns",
        )  # fmt: skip
    shown = [c for c in every if c in chosen] or [tables.NAME]
    return shown, sort_by or tables.RANK, best_first, exports_cell


def exports_row(frame: pd.DataFrame, context: site.Context, better: dict[str, bool]) -> None:
    label = site.benchmark_label(context.benchmark, context.protocol_version)
    stem = exports.file_stem("mtlb", label, context.convention)
    meta = {
        "benchmark": context.benchmark,
        "protocol_version": context.protocol_version,
        "convention": context.convention,
        "delta_m": CONVENTIONS[context.convention],
        "interval": "95% t interval over seeds: mean ± t(0.975, n-1) · s / √n",
        "ranks": tables.RANKS_EXPLAINED,
    }
    caption = f"{label}: {CONVENTIONS[context.convention]}. Δm in %, mean ± 95% CI over seeds."
    # Made when clicked (deferred), from the table as shown: filtered, sorted, its columns.
    csv, json, latex = st.columns(3)
    csv.download_button(
        "CSV", partial(exports.to_csv, frame), f"{stem}.csv", "text/csv",
        icon=":material/download:", on_click="ignore", key="export_csv",
    )  # fmt: skip
    json.download_button(
        "JSON", partial(exports.to_json, frame, meta), f"{stem}.json", "application/json",
        icon=":material/download:", on_click="ignore", key="export_json",
    )  # fmt: skip
    latex.download_button(
        "LaTeX", partial(exports.to_latex, frame, better, caption), f"{stem}.tex",
        "text/x-tex", icon=":material/download:", on_click="ignore", key="export_latex",
        help="A booktabs table for a paper (\\toprule, \\midrule, \\bottomrule); the best "
        "method of each column in bold.",
    )  # fmt: skip


CHART_TABS = ["Δm vs cost", "Per-task deltas", "Δm over time", "Spread over seeds"]


def charts_section(
    context: site.Context, rows: list[RankingRow], all_rows: list[RankingRow]
) -> None:
    """The charts of the filtered rows, one tab each.

    Only the open tab runs (its choice lives in the URL): a chart costs more than the table.
    """
    top = tables.by_delta_m(rows, context.convention)[:TOP]
    cost_tab, tasks_tab, time_tab, seeds_tab = st.tabs(CHART_TABS, key="chart", bind="query-params")
    if cost_tab.open:
        with cost_tab:
            cost_chart(context, rows, tables.hours_label(all_rows))
    if tasks_tab.open:
        with tasks_tab:
            tasks_chart(context, top)
    if time_tab.open:
        with time_tab:
            frame = tables.timeline_frame(rows, context.convention)
            if frame.empty:
                st.info("No Δm yet.")
            else:
                higher = HIGHER_IS_BETTER[context.convention]
                st.plotly_chart(charts.timeline_figure(frame, higher))
                st.caption(
                    "Each submission at the time its last result landed; the line is the best "
                    "method so far."
                )
    if seeds_tab.open:
        with seeds_tab:
            frame = tables.seeds_frame(top, context.convention)
            if frame.empty:
                st.info("No Δm yet.")
            else:
                st.plotly_chart(charts.seeds_figure(frame, HIGHER_IS_BETTER[context.convention]))
                st.caption(
                    f"The {frame['submission'].nunique()} best-ranked submissions with Δm "
                    "shown: Δm of every run (seed), "
                    "with its box (median and quartiles)."
                )


def cost_chart(context: site.Context, rows: list[RankingRow], hours: str) -> None:
    labels = {tables.PARAMETERS: "parameters", tables.FLOPS: "FLOPs per image",
              tables.HOURS: f"{hours} per run"}  # fmt: skip
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    cost = left.radio(
        "Cost", COST_OPTIONS, format_func=labels.__getitem__, horizontal=True, key="cost",
        bind="query-params",
    )  # fmt: skip
    log_x = right.toggle("log scale", key="log_x")
    frame = tables.cost_frame(rows, context.convention, cost)
    if frame.empty:
        st.info("No Δm with this cost yet: it needs finished runs and a trained baseline.")
        return
    higher = HIGHER_IS_BETTER[context.convention]
    st.plotly_chart(charts.cost_figure(frame, labels[cost], higher, log_x))
    st.caption(
        f"Δm {CONVENTION_LABELS[context.convention]}; bars: 95% CI over seeds. The green line is "
        "the Pareto front: no other submission is both cheaper and better."
    )


def tasks_chart(context: site.Context, top: list[RankingRow]) -> None:
    ids = tuple(row.id for row in top)
    deltas = data.task_deltas(
        context.url, context.version.results, context.benchmark, context.protocol_version, ids
    )
    frame = tables.task_delta_frame(deltas, top, context.convention)
    if frame.empty:
        st.info("No per-task deltas yet: they need finished runs and a trained baseline.")
        return
    st.plotly_chart(charts.task_deltas_figure(frame))
    shown = frame["submission"].nunique()
    st.caption(
        f"The {shown} best-ranked submissions with Δm shown. Mean relative gain of each task's "
        "metrics over the baseline, x100, averaged over seeds (the terms of the per-task Δm; "
        "higher is better)."
    )


BEATS_FRONT = "beats the front"


def front_verdicts_of(
    context: site.Context, entries: list[RankingRow], front: list[RankingRow]
) -> dict[int, FrontVerdict]:
    """Each entry against the benchmark version's scalarisation front (`leaderboard.front`)."""
    if not front:
        return {}
    deltas = data.task_deltas(
        context.url, context.version.results, context.benchmark, context.protocol_version,
        tuple(r.id for r in [*entries, *front]),
    )  # fmt: skip
    return front_verdicts(deltas, {r.id for r in front})


def front_section(
    context: site.Context,
    entries: list[RankingRow],
    front: list[RankingRow],
    verdicts: dict[int, FrontVerdict],
) -> None:
    st.subheader("Against the scalarisation front")
    deltas = data.task_deltas(
        context.url, context.version.results, context.benchmark, context.protocol_version,
        tuple(r.id for r in [*entries, *front]),
    )  # fmt: skip
    frame = tables.front_frame(deltas, entries, front, verdicts)
    tasks = [c for c in frame.columns if c not in ("submission", "kind", "id")]
    if len(tasks) < 2 or frame.empty:
        st.info("No per-task gains of the front yet: they need finished runs and a baseline.")
        return
    pairs = [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1 :]]
    x, y = pairs[0]
    if len(pairs) > 1:
        x, y = st.selectbox(
            "Task pair", pairs, format_func=lambda p: f"{p[0]} and {p[1]}", key="front_pair"
        )
        # In this pair's plane: dominated there or not (`FrontVerdict.pairs`).
        frame["kind"] = [
            kind if kind == "front" or i not in verdicts
            else ("dominated" if verdicts[i].pairs.get((x, y)) else "beats the front")
            for i, kind in zip(frame["id"], frame["kind"], strict=True)
        ]  # fmt: skip
    st.plotly_chart(charts.front_figure(frame, x, y))
    beating = sum(v.beats_front for v in verdicts.values())
    st.caption(
        f"{len(front)} points of the front: hard sharing with fixed task weights on a grid of "
        "the task simplex, trained like any submission (`mtlb front`). An entry beats the "
        "front when no point is at least as good on every task and better on one (means over "
        f"seeds, no interval); {beating} of {len(verdicts)} entries do. "
        + ("Colours here judge the chosen pair of tasks only." if len(pairs) > 1 else "")
    )


def render() -> None:
    context = site.context()
    label = site.benchmark_label(context.benchmark, context.protocol_version)
    every_row = data.ranking(
        context.url, context.version, context.benchmark, context.protocol_version
    )
    # The scalarisation front's points (`mtlb front`) are not entries: apart, below.
    platform_rows = [r for r in every_row if r.role != Role.FRONT]
    front_rows = [r for r in every_row if r.role == Role.FRONT]
    verdicts = front_verdicts_of(context, platform_rows, front_rows)
    columns = data.metric_columns(
        context.url, context.version.results, context.benchmark, context.protocol_version
    )
    # Reported (paper) results join the table (marked, unranked), not the charts.
    papers = data.reported(
        context.url, context.version.results, context.benchmark, context.protocol_version
    )
    columns = reported.merge_columns(columns, papers)
    rows: list[tables.Row] = [*platform_rows, *papers]
    placed = data.placements(
        context.url, context.version.results, context.benchmark, context.protocol_version,
        context.convention,
    )  # fmt: skip
    st.title(f"Ranking: {escape_markdown(label)}")
    notice = tables.tie_notice(placed)
    if notice is not None:
        st.warning(notice, icon=":material/balance:")
    chosen = filters(rows)
    full = tables.ranking_frame(rows, columns, context.convention, site.shared_params(), placed)
    if verdicts:
        full[BEATS_FRONT] = full[tables.ID].map(
            lambda i: None if i not in verdicts else verdicts[i].beats_front
        )
    shown_rows = [row for row in platform_rows if tables.matches(row, chosen)]
    frame = tables.filter_frame(full, rows, chosen)
    better = tables.directions(columns, context.convention)
    shown, sort_by, best_first, exports_cell = table_controls(columns)
    frame = tables.sort_frame(frame, sort_by, best_first, better)
    if sort_by == tables.RANK:
        frame = reported.place_reported(frame)  # next to the platform's runs of the same method
    frame = frame[[*shown, *([BEATS_FRONT] if verdicts else [])]]
    st.dataframe(
        frame, hide_index=True, column_config=column_config(columns, context.convention),
        height="content" if len(frame) <= 25 else 36 * 25, key="ranking_table",
        placeholder="",  # a blank cell, not "None", where there is no value
    )  # fmt: skip

    names = tables.display_names(platform_rows)
    baseline_ids = sorted({b for r in platform_rows if (b := r.baseline_submission_id) is not None})
    used = (
        ", ".join(escape_markdown(names.get(i, f"#{i}")) + f" (#{i})" for i in baseline_ids)
        or "none trained yet, so no Δm"
    )
    st.caption(
        f"{len(frame)} of {len(rows)} submissions. "
        f"{escape_markdown(CONVENTIONS[context.convention])}. Baseline: {used}. Δm is the mean "
        "over seeds ± the half-width of its 95% t interval. "
        f"{tables.RANKS_EXPLAINED} Metrics are means over seeds. "
        "Ranked by each submission's original campaign (its first evaluation under this "
        "version); reruns are not mixed in: the latest rerun's Δm is shown beside it, flagged "
        "'not reproduced' when it differs from the original's by more than the original's seed "
        "standard deviation. "
        "Rows of source 'reported' are results from papers: one value each, not ranked, their "
        "Δm against the reported baseline of the same backbone (a paper's values), placed "
        "after the platform's runs of the same method; details below."
    )
    if papers:
        with st.expander(f"Reported results ({len(papers)}): citations and Δm"):
            st.dataframe(
                reported.details_frame(papers), hide_index=True, key="reported_table",
                column_config={
                    "link": st.column_config.LinkColumn("link", display_text="paper"),
                    "Δm per task ↑": st.column_config.NumberColumn(format="%+.2f"),
                    "Δm per metric ↓": st.column_config.NumberColumn(format="%+.2f"),
                },
            )  # fmt: skip
    with exports_cell:
        exports_row(frame, context, better)
    charts_section(context, shown_rows, platform_rows)
    if front_rows:
        front_section(context, platform_rows, front_rows, verdicts)


if __name__ == "__main__":
    render()
