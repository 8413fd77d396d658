"""Reported (paper) results on the ranking page: rows, columns, placement, details.

A reported result (`db.reported.reported_results`) becomes a ranking row
like a submission's (`tables.ranking_frame` reads both), marked `source =
reported`, with a negative id (-reported id) so that it never collides with
a submission id, no seeds, no interval and no rank, and a link to its paper.
Its Δm is against the reported baseline, never against runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd  # no pandas-stubs in dev deps

from db.delta_m import PER_METRIC, PER_TASK
from db.queries import MetricColumn
from leaderboard import tables

Row = dict[str, Any]
METHOD = ("architecture", "weighting", "backbone")  # what makes a paper result "the same method"


def reported_rows(reported: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Ranking rows (the keys `tables.ranking_frame` reads) of reported results.

    >>> [row] = reported_rows([{"reported_id": 4, "name": "x", "architecture": "a",
    ...     "weighting": "w", "backbone": "b", "role": "method", "citation": "C",
    ...     "url": "", "note": "", "metrics": {}, "per_task": 1.5, "per_metric": -1.0}])
    >>> row["id"], row["source"], row["per_task_mean"], row["per_task_std"], row["seeds"]
    (-4, 'reported', 1.5, None, 0)
    """
    rows = []
    for r in reported:
        rows.append(
            {
                "id": -int(r["reported_id"]),
                "name": r["name"],
                "description": " ".join(part for part in (r["citation"], r["note"]) if part),
                "authors": [],
                **{key: r[key] for key in METHOD},
                "optimizer": "",
                "role": str(r["role"]),
                "seeds": 0,
                "run_deltas": [],
                "metrics": dict(r["metrics"]),
                "source": tables.REPORTED,
                "citation": r["citation"],
                "url": r["url"],
                **{f"{c}_mean": r[c] for c in (PER_TASK, PER_METRIC)},
                **{f"{c}_std": None for c in (PER_TASK, PER_METRIC)},
            }
        )
    return rows


def merge_columns(
    columns: Sequence[MetricColumn], reported: Iterable[Mapping[str, Any]]
) -> list[MetricColumn]:
    """The runs' metric columns, then any metric only reported results have (task order kept).

    >>> run = [MetricColumn("seg", "miou", True, 0)]
    >>> paper = [{"columns": [("seg", "miou", True, 0), ("seg", "acc", True, 1)]}]
    >>> [c.metric for c in merge_columns(run, paper)]
    ['miou', 'acc']
    """
    out = list(columns)
    seen = {(c.task, c.metric) for c in out}
    for r in reported:
        for task, metric, higher, position in r["columns"]:
            if (task, metric) not in seen:
                seen.add((task, metric))
                out.append(MetricColumn(task, metric, bool(higher), int(position)))
    first = {c.task: i for i, c in reversed(list(enumerate(out)))}
    return sorted(out, key=lambda c: (first[c.task], c.position))


def place_reported(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with each reported row moved just after the platform's row of the same method.

    The same method: equal architecture, weighting and backbone.  Reported
    rows without one stay where they were (unranked rows sort last), in
    their order.
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


def details_frame(reported: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One line per reported result: identity, citation, link, note, Δm and its baseline."""
    records = [
        {
            "name": r["name"],
            "role": str(r["role"]),
            **{key: r[key] for key in METHOD},
            "Δm per task ↑": r[PER_TASK],
            "Δm per metric ↓": r[PER_METRIC],
            "against (reported baseline)": r["baseline_name"] or r["delta_m_note"],
            "citation": r["citation"],
            "link": tables.paper_link(r["url"]),
            "note": r["note"],
        }
        for r in reported
    ]
    columns = ["name", "role", *METHOD, "Δm per task ↑", "Δm per metric ↓",
               "against (reported baseline)", "citation", "link", "note"]  # fmt: skip
    frame = pd.DataFrame.from_records(records, columns=columns)
    for column in ("Δm per task ↑", "Δm per metric ↓"):
        frame[column] = frame[column].astype("float64")
    return frame


__all__ = ["details_frame", "merge_columns", "place_reported", "reported_rows"]
