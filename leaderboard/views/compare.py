"""Compare page: submissions side by side, metric by metric, each difference paired by seed."""

from __future__ import annotations

import streamlit as st

from db.queries import RankingRow
from leaderboard import charts, data, site, tables
from leaderboard.text import HIGHER_IS_BETTER, escape_markdown

CHOICE_KEY = "compare_choice"


def choose(rows: list[RankingRow], convention: str) -> list[int]:
    """The submissions in the URL (`?compare=ID,ID,...`), else the two best; back to the URL."""
    names = tables.display_names(rows)
    order = [row.id for row in tables.by_delta_m(rows, convention)]
    current = st.session_state.get(CHOICE_KEY)
    if not isinstance(current, list) or not set(current) <= set(order):
        given = st.query_params.get(site.COMPARE_PARAM)
        notice = site.ids_notice(site.COMPARE_PARAM, given)
        if notice is not None:
            st.warning(notice, icon=":material/link_off:")
        wanted = [i for i in site.parse_ids(given) if i in order]
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
    by_id = {row.id: row for row in rows}
    names = tables.display_names(rows)
    shown = [names[i] for i in chosen]
    # The original campaign's seeds, as the ranking: reruns are on the submission's page.
    results = data.seed_results(
        url, version.results, context.benchmark, context.protocol_version, tuple(chosen)
    )
    found = [
        tables.seed_samples((r for r in results if r.submission_id == i), columns) for i in chosen
    ]
    better = tables.directions(columns, context.convention)
    better.update({"Δm per task ↑": True, "Δm per metric ↓": False})
    side, differences = tables.comparison_frames(shown, found, better)

    st.subheader("Side by side")
    st.dataframe(side, hide_index=True, height="content")
    st.caption("Mean ± half-width of the 95% t interval over seeds (n seeds).")

    st.subheader(f"Differences from {escape_markdown(shown[0])}")
    significant = differences[differences[tables.SIGNIFICANT]]
    if len(differences):
        st.markdown(
            f"**{len(significant)} of {len(differences)}** differences are significant at 95%."
        )
    st.dataframe(
        differences,
        hide_index=True,
        height="content",
        placeholder="",
        column_config={
            differences.columns[2]: st.column_config.NumberColumn(
                format="%+.4g", help="other − reference: the mean of the paired differences "
                "over the seeds both ran (Welch: the difference of the two means)",
            ),
            tables.CI: st.column_config.NumberColumn(
                format="%.3g", help="half-width of the 95% interval of the difference",
            ),
            "test": st.column_config.TextColumn(
                help="paired t over the k seeds both ran; Welch's t test (all seeds, unpaired) "
                "when they share fewer than 2 seeds; not testable with fewer than 2 seeds a side",
            ),
            "p": st.column_config.NumberColumn(format="%.3g", help="two-sided"),
            tables.IMPROVEMENT: st.column_config.NumberColumn(
                format="%.2f", help="the share of matched seeds on which the other submission "
                "is better than the reference (a tie counts 1/2); Agarwal et al. 2021",
            ),
            tables.SIGNIFICANT: st.column_config.CheckboxColumn(
                help="the 95% interval of the difference excludes 0"
            ),
        },
    )  # fmt: skip
    st.caption(
        "Each difference is the other submission minus the reference, paired by seed: a "
        "protocol seed fixes data order, augmentation and the initialisation of shared "
        "components, so runs at the same seed are compared with each other (paired t test over "
        "the seeds both ran). With fewer than 2 shared seeds, Welch's unpaired t test over all "
        "seeds is used instead, as the test column says. Significant: the 95% interval "
        "excludes 0 (p < 0.05). The p-values are per comparison, not corrected for the number "
        "of comparisons."
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
