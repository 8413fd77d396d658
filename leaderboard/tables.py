"""DataFrames for the site, built from the plain rows of `db.queries`.

Pure functions, no Streamlit and no database: the page (`app.py`) queries, these shape.
Submitter strings stay raw here; a DataFrame shown by `st.dataframe` renders them as text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd  # no pandas-stubs in dev deps

from db.queries import MetricColumn
from leaderboard.text import HIGHER_IS_BETTER, format_mean_std, metric_header, seeds_text

RANK = "rank"
DELTA_M = "Δm"
PARAMETERS = "parameters"

Row = Mapping[str, Any]


def ranks(means: Sequence[float | None], higher_is_better: bool) -> list[int | None]:
    """Competition ranks ('1224'): 1 + the number of strictly better means; None without a mean.

    >>> ranks([1.0, None, 3.0, 1.0], higher_is_better=True)
    [2, None, 1, 2]
    >>> ranks([1.0, None, 3.0, 1.0], higher_is_better=False)
    [1, None, 3, 1]
    """
    known = [m for m in means if m is not None]
    out: list[int | None] = []
    for mean in means:
        if mean is None:
            out.append(None)
        elif higher_is_better:
            out.append(1 + sum(other > mean for other in known))
        else:
            out.append(1 + sum(other < mean for other in known))
    return out


def display_names(rows: Iterable[Row]) -> dict[int, str]:
    """Submission id -> the name shown; names are not unique, so a repeated one gets its id.

    >>> display_names([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "a"}])
    {1: 'a #1', 2: 'b', 3: 'a #3'}
    """
    rows = list(rows)
    counts = Counter(row["name"] for row in rows)
    return {
        row["id"]: row["name"] if counts[row["name"]] == 1 else f"{row['name']} #{row['id']}"
        for row in rows
    }


def headline_columns(columns: Iterable[MetricColumn]) -> list[MetricColumn]:
    """Each task's headline metric (position 0), in task order."""
    return [c for c in columns if c.position == 0]


def _mean(row: Row, convention: str) -> float | None:
    value = row.get(f"{convention}_mean")
    return None if value is None else float(value)


def ranked(rows: Sequence[Row], convention: str) -> list[tuple[int | None, Row]]:
    """(rank, row) by the convention's mean Δm, best first; rows without Δm last, by id."""
    order = ranks([_mean(row, convention) for row in rows], HIGHER_IS_BETTER[convention])
    pairs = list(zip(order, rows, strict=True))
    return sorted(pairs, key=lambda p: (p[0] is None, p[0] or 0, p[1]["id"]))


def ranking_frame(
    rows: Sequence[Row], columns: Iterable[MetricColumn], convention: str
) -> pd.DataFrame:
    """The ranking table: one row per submission, best Δm first, headline metrics as means."""
    names = display_names(rows)
    headlines = headline_columns(columns)
    records = []
    for rank, row in ranked(rows, convention):
        record: dict[str, Any] = {
            RANK: rank,
            "name": names[row["id"]],
            "role": str(row["role"]),
            "architecture": row["architecture"],
            "backbone": row["backbone"],
            "weighting": row["weighting"],
            DELTA_M: format_mean_std(_mean(row, convention), row.get(f"{convention}_std")),
            "seeds": seeds_text(row["seeds"], row["pending_jobs"]),
        }
        metrics = row.get("metrics", {})
        for c in headlines:
            record[metric_header(c.task, c.metric, c.higher_is_better)] = metrics.get(
                (c.task, c.metric)
            )
        parameters = row.get("parameters")
        record[PARAMETERS] = None if parameters is None else round(parameters)
        wall_time = row.get("wall_time_s")
        record["wall time (s)"] = None if wall_time is None else float(wall_time)
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=_ranking_columns(headlines))
    frame[RANK] = frame[RANK].astype("Int64")
    frame[PARAMETERS] = frame[PARAMETERS].astype("Int64")
    return frame


def _ranking_columns(headlines: Sequence[MetricColumn]) -> list[str]:
    return [
        RANK,
        "name",
        "role",
        "architecture",
        "backbone",
        "weighting",
        DELTA_M,
        "seeds",
        *(metric_header(c.task, c.metric, c.higher_is_better) for c in headlines),
        PARAMETERS,
        "wall time (s)",
    ]


def cost_frame(rows: Sequence[Row], convention: str) -> pd.DataFrame:
    """Δm (mean, std) against mean parameter count, for submissions that have both."""
    names = display_names(rows)
    records = [
        {
            "name": names[row["id"]],
            "role": str(row["role"]),
            DELTA_M: _mean(row, convention),
            "std": row.get(f"{convention}_std"),
            PARAMETERS: float(row["parameters"]),
        }
        for _, row in ranked(rows, convention)
        if _mean(row, convention) is not None and row.get("parameters") is not None
    ]
    return pd.DataFrame.from_records(records, columns=["name", "role", DELTA_M, "std", PARAMETERS])


def task_delta_frame(
    deltas: Iterable[tuple[int, str, float]], rows: Sequence[Row], convention: str
) -> pd.DataFrame:
    """Per-task relative gain (x100) per submission, submissions in ranking order."""
    names = display_names(rows)
    order = {row["id"]: i for i, (_, row) in enumerate(ranked(rows, convention))}
    records = [
        {"submission": names[sid], "task": task, "delta": value, "_order": order[sid]}
        for sid, task, value in deltas
        if sid in names
    ]
    frame = pd.DataFrame.from_records(records, columns=["submission", "task", "delta", "_order"])
    frame = frame.sort_values(["_order", "task"], kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)


PROVENANCE = {
    "parameter_count": PARAMETERS,
    "wall_time_s": "wall time (s)",
    "device": "device",
    "code_version": "code version",
    "protocol_version": "protocol version",
    "torch_version": "torch",
    "ray_version": "ray",
    "python_version": "python",
    "spec_hash": "spec hash",
    "job_id": "job",
    "finished_at": "finished at",
}


def runs_frame(runs: Iterable[Row], columns: Iterable[MetricColumn]) -> pd.DataFrame:
    """One row per run (seed): every metric, then cost and provenance."""
    headers = [(c, metric_header(c.task, c.metric, c.higher_is_better)) for c in columns]
    records = []
    for run in runs:
        record: dict[str, Any] = {"seed": run["seed"]}
        metrics = run.get("metrics", {})
        for c, header in headers:
            record[header] = metrics.get((c.task, c.metric))
        for key, header in PROVENANCE.items():
            record[header] = run.get(key)
        records.append(record)
    return pd.DataFrame.from_records(
        records, columns=["seed", *(h for _, h in headers), *PROVENANCE.values()]
    )


def curves_frame(curves: Iterable[tuple[int, int, str, str, float]]) -> pd.DataFrame:
    """Training curves averaged over seeds: one row per (name, task, epoch).

    `name` is what the curve measures ('loss' or 'weight'); `seeds` how many runs averaged.
    """
    frame = pd.DataFrame.from_records(
        list(curves), columns=["seed", "epoch", "task", "name", "value"]
    )
    grouped = frame.groupby(["name", "task", "epoch"], as_index=False).agg(
        value=("value", "mean"), seeds=("seed", "nunique")
    )
    return grouped.sort_values(["name", "task", "epoch"]).reset_index(drop=True)


def facts_frame(row: Row) -> pd.DataFrame:
    """The submission's identity as two columns (field, value)."""
    fields = {
        "role": str(row["role"]),
        "architecture": row["architecture"],
        "backbone": row["backbone"],
        "weighting": row["weighting"],
        "optimizer": row["optimizer"],
        "seeds": seeds_text(row["seeds"], row["pending_jobs"]),
        "last result": "" if row.get("last_result") is None else str(row["last_result"]),
    }
    return pd.DataFrame({"field": list(fields), "value": [str(v) for v in fields.values()]})
