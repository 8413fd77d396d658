"""The DataFrames of the site, from hand-made query rows with hand-computed results."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import pytest

from db.delta_m import PER_METRIC, PER_TASK
from db.models import Role
from db.queries import MetricColumn
from leaderboard.tables import (
    cost_frame,
    curves_frame,
    display_names,
    facts_frame,
    headline_columns,
    ranked,
    ranking_frame,
    ranks,
    runs_frame,
    task_delta_frame,
)

COLUMNS = [
    MetricColumn("segmentation", "miou", True, 0),
    MetricColumn("segmentation", "pixel_acc", True, 1),
    MetricColumn("depth", "abs_err", False, 0),
]


def row(
    id: int,
    name: str,
    per_task: tuple[float | None, float | None],
    per_metric: tuple[float | None, float | None],
    *,
    role: Role = Role.METHOD,
    seeds: int = 3,
    pending_jobs: int = 0,
    parameters: float | None = 100.0,
    miou: float = 0.5,
) -> dict[str, Any]:
    """A row shaped like db.queries.ranking's."""
    return {
        "id": id,
        "name": name,
        "description": "",
        "authors": [],
        "architecture": "single-task" if role is Role.BASELINE else "hard-sharing",
        "backbone": "small-cnn",
        "weighting": "equal",
        "optimizer": "adam",
        "role": role,
        "spec_hash": f"{id:064d}",
        "seeds": seeds,
        "pending_jobs": pending_jobs,
        "parameters": parameters,
        "wall_time_s": None if parameters is None else 2.5,
        "last_result": None,
        "per_task_mean": per_task[0],
        "per_task_std": per_task[1],
        "per_metric_mean": per_metric[0],
        "per_metric_std": per_metric[1],
        "baseline_submission_id": None if per_task[0] is None else 1,
        "metrics": {}
        if seeds == 0
        else {("segmentation", "miou"): miou, ("depth", "abs_err"): 0.4},
    }


# Per task (higher is better): m1 5.0 > m2 2.0 > stl 0.0, m3 none.
# Per metric (lower is better): m2 -3.0 < m1 -2.0 < stl 0.0, m3 none.  The orders differ.
ROWS = [
    row(1, "stl", (0.0, 1.0), (0.0, 2.0), role=Role.BASELINE, parameters=300.0, miou=0.25),
    row(2, "m1", (5.0, 0.5), (-2.0, 0.25)),
    row(3, "m2", (2.0, None), (-3.0, None), seeds=1, pending_jobs=2, miou=0.75),
    row(4, "m3", (None, None), (None, None), seeds=0, pending_jobs=3, parameters=None),
]


@pytest.mark.parametrize(
    ("means", "higher_is_better", "expected"),
    [
        ([1.0, None, 3.0, 1.0], True, [2, None, 1, 2]),
        ([1.0, None, 3.0, 1.0], False, [1, None, 3, 1]),
        ([-0.5, 2.0, 0.0], True, [3, 1, 2]),
        ([-0.5, 2.0, 0.0], False, [1, 3, 2]),
        ([None, None], True, [None, None]),
        ([], False, []),
    ],
)
def test_ranks(
    means: list[float | None], higher_is_better: bool, expected: list[int | None]
) -> None:
    assert ranks(means, higher_is_better) == expected


def test_ranked_puts_rows_without_delta_m_last() -> None:
    assert [(r, row["name"]) for r, row in ranked(ROWS, PER_TASK)] == [
        (1, "m1"), (2, "m2"), (3, "stl"), (None, "m3"),
    ]  # fmt: skip
    assert [(r, row["name"]) for r, row in ranked(ROWS, PER_METRIC)] == [
        (1, "m2"), (2, "m1"), (3, "stl"), (None, "m3"),
    ]  # fmt: skip


def test_display_names_disambiguate_repeated_names() -> None:
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "a"}]
    assert display_names(rows) == {1: "a #1", 2: "b", 3: "a #3"}


def test_headline_columns_keep_task_order() -> None:
    assert headline_columns(COLUMNS) == [COLUMNS[0], COLUMNS[2]]


def test_ranking_frame_per_task() -> None:
    frame = ranking_frame(ROWS, COLUMNS, PER_TASK)
    assert list(frame.columns) == [
        "rank", "name", "role", "architecture", "backbone", "weighting", "Δm", "seeds",
        "segmentation miou ↑", "depth abs_err ↓", "parameters", "wall time (s)",
    ]  # fmt: skip
    assert frame["rank"].tolist() == [1, 2, 3, pd.NA]
    assert frame["name"].tolist() == ["m1", "m2", "stl", "m3"]
    assert frame["role"].tolist() == ["method", "method", "baseline", "method"]
    assert frame["Δm"].tolist() == ["+5.00 ± 0.50", "+2.00", "+0.00 ± 1.00", ""]
    assert frame["seeds"].tolist() == ["3", "1 (+2 pending)", "3", "0 (+3 pending)"]
    assert frame["segmentation miou ↑"].tolist()[:3] == [0.5, 0.75, 0.25]
    assert pd.isna(frame["segmentation miou ↑"].iloc[3])
    assert frame["parameters"].tolist() == [100, 100, 300, pd.NA]
    assert str(frame["rank"].dtype) == str(frame["parameters"].dtype) == "Int64"


def test_ranking_frame_per_metric_reorders_and_shows_the_drop() -> None:
    frame = ranking_frame(ROWS, COLUMNS, PER_METRIC)
    assert frame["name"].tolist() == ["m2", "m1", "stl", "m3"]
    assert frame["rank"].tolist() == [1, 2, 3, pd.NA]
    assert frame["Δm"].tolist() == ["-3.00", "-2.00 ± 0.25", "+0.00 ± 2.00", ""]


def test_ranking_frame_of_no_rows_has_the_columns() -> None:
    frame = ranking_frame([], [], PER_TASK)
    assert frame.empty and "Δm" in frame.columns and "rank" in frame.columns


def test_cost_frame_keeps_rows_with_delta_m_and_parameters() -> None:
    frame = cost_frame(ROWS, PER_METRIC)
    assert frame.fillna({"std": -1.0}).to_dict("records") == [
        {"name": "m2", "role": "method", "Δm": -3.0, "std": -1.0, "parameters": 100.0},
        {"name": "m1", "role": "method", "Δm": -2.0, "std": 0.25, "parameters": 100.0},
        {"name": "stl", "role": "baseline", "Δm": 0.0, "std": 2.0, "parameters": 300.0},
    ]  # m2 has one seed: no std (NaN, here -1)


def test_task_delta_frame_is_in_ranking_order() -> None:
    deltas = [
        (1, "seg", 0.0),
        (2, "seg", 4.0),
        (2, "depth", 6.0),
        (3, "depth", 1.0),
        (99, "x", 1.0),
    ]
    frame = task_delta_frame(deltas, ROWS, PER_TASK)
    assert list(frame.itertuples(index=False, name=None)) == [
        ("m1", "depth", 6.0), ("m1", "seg", 4.0), ("m2", "depth", 1.0), ("stl", "seg", 0.0),
    ]  # fmt: skip
    frame = task_delta_frame(deltas, ROWS, PER_METRIC)
    assert frame["submission"].tolist() == ["m2", "m1", "m1", "stl"]
    assert task_delta_frame([], ROWS, PER_TASK).empty


def test_curves_frame_averages_over_seeds() -> None:
    points = [
        (0, 0, "seg", "loss", 1.0),
        (1, 0, "seg", "loss", 3.0),
        (0, 1, "seg", "loss", 0.5),
        (0, 0, "seg", "weight", 1.0),
        (1, 0, "seg", "weight", 2.0),
    ]
    assert curves_frame(points).to_dict("records") == [
        {"name": "loss", "task": "seg", "epoch": 0, "value": 2.0, "seeds": 2},
        {"name": "loss", "task": "seg", "epoch": 1, "value": 0.5, "seeds": 1},
        {"name": "weight", "task": "seg", "epoch": 0, "value": 1.5, "seeds": 2},
    ]


def test_runs_frame_has_every_metric_then_provenance() -> None:
    finished = datetime(2026, 1, 2, 3, 4, 5)
    run = {
        "seed": 7,
        "metrics": {("segmentation", "miou"): 0.5, ("depth", "abs_err"): 0.25},
        "parameter_count": 1234,
        "wall_time_s": 1.5,
        "device": "cpu",
        "code_version": "git:abc",
        "protocol_version": 1,
        "torch_version": "2.13.0",
        "ray_version": "2.60.0",
        "python_version": "3.11.7",
        "spec_hash": "h" * 64,
        "job_id": 9,
        "finished_at": finished,
    }
    [record] = runs_frame([run], COLUMNS).to_dict("records")
    assert list(record) == [
        "seed", "segmentation miou ↑", "segmentation pixel_acc ↑", "depth abs_err ↓",
        "parameters", "wall time (s)", "device", "code version", "protocol version",
        "torch", "ray", "python", "spec hash", "job", "finished at",
    ]  # fmt: skip
    assert record["seed"] == 7 and record["segmentation miou ↑"] == 0.5
    assert record["segmentation pixel_acc ↑"] is None and record["depth abs_err ↓"] == 0.25
    assert record["finished at"] == finished and record["job"] == 9


def test_facts_frame() -> None:
    frame = facts_frame(ROWS[2])
    assert dict(zip(frame["field"], frame["value"], strict=True)) == {
        "role": "method",
        "architecture": "hard-sharing",
        "backbone": "small-cnn",
        "weighting": "equal",
        "optimizer": "adam",
        "seeds": "1 (+2 pending)",
        "last result": "",
    }
