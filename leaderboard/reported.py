"""Reported (paper) results on the ranking page: columns, placement, details.

A reported result (`db.queries.ReportedRow`) is a ranking row of source
`reported` (`tables.ranking_frame` reads both kinds), keyed by -reported id so
that it never collides with a submission id, with no seeds, no interval and
no rank, and a link to its paper.  Its Δm is against the reported baseline,
never against runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd  # no pandas-stubs in dev deps

from db.queries import MetricColumn, ReportedRow
from leaderboard import tables

METHOD = ("architecture", "weighting", "backbone")  # what makes a paper result "the same method"


def merge_columns(
    columns: Sequence[MetricColumn], reported: Iterable[ReportedRow]
) -> list[MetricColumn]:
    """The runs' metric columns, then any metric only reported results have (task order kept).

    >>> from types import SimpleNamespace as R
    >>> miou, acc = MetricColumn("seg", "miou", True, 0), MetricColumn("seg", "acc", True, 1)
    >>> run, paper = [miou], R(columns=(miou, acc))
    >>> [c.metric for c in merge_columns(run, [paper])]
    ['miou', 'acc']
    """
    out = list(columns)
    seen = {(c.task, c.metric) for c in out}
    for r in reported:
        for column in r.columns:
            if (column.task, column.metric) not in seen:
                seen.add((column.task, column.metric))
                out.append(column)
    first = {c.task: i for i, c in reversed(list(enumerate(out)))}
    return sorted(out, key=lambda c: (first[c.task], c.position))


def place_reported(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with each reported row moved just after the platform's row of the same method.

    The same method: equal architecture, weighting and backbone.  Reported
    rows without one stay where they were (unranked rows sort last), in
    their order.

    >>> frame = pd.DataFrame({"name": ["p", "a", "b"], "source": ["reported", "platform",
    ...     "platform"], "architecture": ["x", "x", "y"], "weighting": "w", "backbone": "k"})
    >>> place_reported(frame)["name"].tolist()
    ['a', 'p', 'b']
    """
    if tables.SOURCE not in frame.columns:
        return frame
    is_reported = frame[tables.SOURCE] == tables.REPORTED
    platform = frame[~is_reported]
    papers = frame[is_reported]
    placed: dict[int, list[int]] = {}
    unplaced = []
    keys = [tuple(row) for row in platform[list(METHOD)].itertuples(index=False)]
    for index, row in papers.iterrows():
        key = tuple(row[k] for k in METHOD)
        if key in keys:
            # After the last platform row of that method.
            anchor = platform.index[len(keys) - 1 - keys[::-1].index(key)]
            placed.setdefault(int(anchor), []).append(int(index))
        else:
            unplaced.append(index)
    order: list[Any] = []
    for index in platform.index:
        order.append(index)
        order.extend(placed.get(int(index), []))
    order.extend(unplaced)
    return frame.loc[order].reset_index(drop=True)


def details_frame(reported: Iterable[ReportedRow]) -> pd.DataFrame:
    """One line per reported result: identity, citation, link, note, Δm and its baseline."""
    records = [
        {
            "name": r.name,
            "role": str(r.role),
            "architecture": r.architecture,
            "weighting": r.weighting,
            "backbone": r.backbone,
            "Δm per task ↑": r.per_task,
            "Δm per metric ↓": r.per_metric,
            "against (reported baseline)": r.baseline_name or r.delta_m_note,
            "citation": r.citation,
            "link": tables.paper_link(r.url),
            "note": r.note,
        }
        for r in reported
    ]
    columns = ["name", "role", *METHOD, "Δm per task ↑", "Δm per metric ↓",
               "against (reported baseline)", "citation", "link", "note"]  # fmt: skip
    frame = pd.DataFrame.from_records(records, columns=columns)
    for column in ("Δm per task ↑", "Δm per metric ↓"):
        frame[column] = frame[column].astype("float64")
    return frame


__all__ = ["details_frame", "merge_columns", "place_reported"]
