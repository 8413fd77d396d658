"""Compare page: submissions side by side, metric by metric, with Welch's t-test per difference."""

from __future__ import annotations

from typing import Any

import streamlit as st

from leaderboard import charts, data, site, tables
from leaderboard.text import HIGHER_IS_BETTER, escape_markdown

CHOICE_KEY = "compare_choice"
ALPHA = 0.05


def choose(rows: list[dict[str, Any]], convention: str) -> list[int]:
    """The submissions in the URL (`?compare=ID,ID,...`), else the two best; back to the URL."""
    names = tables.display_names(rows)
    order = [row["id"] for _, row in tables.ranked(rows, convention)]
    current = st.session_state.get(CHOICE_KEY)
    if not isinstance(current, list) or not set(current) <= set(order):
        wanted = [i for i in site.parse_ids(st.query_params.get(site.COMPARE_PARAM)) if i in order]
        st.session_state[CHOICE_KEY] = wanted or order[:2]
    chosen = st.multiselect(
        "Submissions (the first is the reference)", order,
        format_func=lambda i: f"{names[i]} (#{i})", key=CHOICE_KEY,
    )  # fmt: skip
    st.query_params[site.COMPARE_PARAM] = ",".join(str(i) for i in chosen)
    return [int(i) for i in chosen]


def render() -> None:
    context = site.context()
    url, version = context.url, context.version
    st.title("Compare")
    rows = data.ranking(url, version, context.benchmark, context.protocol_version)
    if len(rows) < 2:
        st.info("Comparing needs at least two submissions of this benchmark version.")
        return
    columns = data.metric_columns(url, version.results, context.benchmark, context.protocol_version)
    chosen = choose(rows, context.convention)
    if len(chosen) < 2:
        st.info("Choose two or more submissions.")
        return
    by_id = {row["id"]: row for row in rows}
    names = tables.display_names(rows)
    shown = [names[i] for i in chosen]
    # The original campaign's runs, as the ranking: reruns are on the submission's page.
    found = [
        tables.samples(
            tables.original_runs(
                data.submission_runs(url, version.results, i, context.protocol_version), by_id[i]
            ),
            by_id[i].get("run_deltas", []),
            columns,
        )
        for i in chosen
    ]
    better = tables.directions(columns, context.convention)
    better.update({"Δm per task ↑": True, "Δm per metric ↓": False})
    side, differences = tables.comparison_frames(shown, found, better, ALPHA)

    st.subheader("Side by side")
    st.dataframe(side, hide_index=True, height="content")
    st.caption("Mean ± half-width of the 95% t interval over seeds (n seeds).")

    st.subheader(f"Differences from {escape_markdown(shown[0])}")
    st.dataframe(
        differences,
        hide_index=True,
        height="content",
        column_config={
            differences.columns[2]: st.column_config.NumberColumn(format="%+.4g"),
            "t": st.column_config.NumberColumn(format="%.3f"),
            "df": st.column_config.NumberColumn(format="%.1f"),
            "p (Welch)": st.column_config.NumberColumn(format="%.3g"),
        },
    )
    st.caption(
        "Each difference (the other submission's mean minus the reference's) is tested with "
        f"Welch's t-test over seeds (two-sided, unequal variances); significant at p < {ALPHA}. "
        "The p-values are per comparison, not corrected for the number of comparisons."
    )
    frame = tables.seeds_frame([by_id[i] for i in chosen], context.convention)
    if not frame.empty:
        st.subheader("Δm over seeds")
        st.plotly_chart(charts.seeds_figure(frame, HIGHER_IS_BETTER[context.convention]))
    links = st.columns(len(chosen))
    for cell, i in zip(links, chosen, strict=True):
        with cell:
            site.page_link("submission", escape_markdown(names[i]), {site.SUBMISSION_PARAM: str(i)})


if __name__ == "__main__":
    render()
