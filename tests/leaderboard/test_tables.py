"""The DataFrames of the site, from hand-made query rows with hand-computed results."""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from datetime import datetime
from typing import Any

import pandas as pd
import pytest

from db.delta_m import PER_METRIC, PER_TASK
from db.models import JobState, Role
from db.queries import JobRow, MetricColumn, RankingRow, ReportedRow, RunDelta, RunRow, SeedResult
from leaderboard.tables import (
    CI,
    FLOPS,
    HOURS,
    PARAMETERS,
    Filters,
    by_delta_m,
    comparison_frames,
    cost_frame,
    curves_frame,
    default_columns,
    directions,
    display_names,
    facts_frame,
    failure_reasons,
    filter_frame,
    headline_columns,
    hours_label,
    jobs_frame,
    matches,
    placements,
    provenance_frame,
    rank_test_text,
    ranking_columns,
    ranking_frame,
    runs_frame,
    seed_samples,
    seeds_frame,
    sort_frame,
    spec_frame,
    state_counts,
    status_of,
    submission_link,
    task_delta_frame,
    tie_notice,
    timeline_frame,
)

COLUMNS = [
    MetricColumn("segmentation", "miou", True, 0),
    MetricColumn("segmentation", "pixel_acc", True, 1),
    MetricColumn("depth", "abs_err", False, 0),
]
T2 = 4.302652729749464  # t(0.975, 2)


def row(
    id: int,
    name: str,
    per_task: list[float],
    per_metric: list[float],
    *,
    role: Role = Role.METHOD,
    weighting: str = "equal",
    pending_jobs: int = 0,
    failed_jobs: int = 0,
    parameters: float | None = 100.0,
    miou: float = 0.5,
    landed: datetime | None = None,
) -> RankingRow:
    """A row as db.queries.ranking gives it, its Δm statistics from the runs' values."""
    seeds = len(per_task)

    def stat(values: list[float]) -> tuple[float | None, float | None]:
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None

    return RankingRow(
        id=id,
        name=name,
        description=f"{name} does things",
        authors=("Ada Lovelace",),
        architecture="single-task" if role is Role.BASELINE else "hard-sharing",
        backbone="small-cnn",
        weighting=weighting,
        optimizer="adam",
        role=role,
        spec_hash=f"{id:064d}",
        benchmark="bench",
        protocol_version=1,
        submitted_at=datetime(2026, 1, id),
        seeds=seeds,
        pending_jobs=pending_jobs,
        failed_jobs=failed_jobs,
        parameters=parameters,
        flops=None if parameters is None else 10 * parameters,
        wall_time_s=None if parameters is None else 7200.0,
        peak_gpu_memory_bytes=None if parameters != 50 else 96 * 1024**2,
        device="cpu (x86_64, 1 threads)",
        last_result=landed,
        per_task_mean=stat(per_task)[0],
        per_task_std=stat(per_task)[1],
        per_metric_mean=stat(per_metric)[0],
        per_metric_std=stat(per_metric)[1],
        baseline_submission_id=1 if seeds else None,
        run_deltas=tuple(
            RunDelta(10 * id + s, id, 1, s, landed, t, m, 1)
            for s, (t, m) in enumerate(zip(per_task, per_metric, strict=True))
        ),
        metrics={} if not seeds else {("segmentation", "miou"): miou, ("depth", "abs_err"): 0.4},
        original_campaign_id=1 if seeds else None,
        rerun_campaign=None,
        rerun_seeds=0,
        rerun_per_task_mean=None,
        rerun_per_metric_mean=None,
        per_task_reproduced=None,
        per_metric_reproduced=None,
        tuned_values=None,
    )


# Per task (higher is better), paired by seed: m1 (4, 5, 6) leads; m2 has one seed (2 at
# seed 0): no test against anyone, so it ties with m1 at rank 1; stl (-1, 0, 1) − m1 is -5 at
# every seed: an exact difference, significant: rank 3.
# Per metric (lower is better): m2 -3 (one seed) leads; m1 and stl cannot be tested against
# it: everyone ties at rank 1.
ROWS = [
    row(1, "stl", [-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], role=Role.BASELINE, parameters=300.0,
        miou=0.25, landed=datetime(2026, 2, 1)),
    row(2, "m1", [4.0, 5.0, 6.0], [-1.0, -2.0, -3.0], weighting="dwa", landed=datetime(2026, 2, 3)),
    row(3, "m2", [2.0], [-3.0], pending_jobs=2, miou=0.75, parameters=50.0,
        landed=datetime(2026, 2, 2)),
    row(4, "m3", [], [], pending_jobs=1, failed_jobs=2, parameters=None),
]  # fmt: skip


def reported_row(reported_id: int, name: str, per_task: float | None) -> ReportedRow:
    """A paper's result as db.queries.reported_rows gives it."""
    return ReportedRow(
        reported_id=reported_id, name=name, architecture="hard-sharing", weighting="dwa",
        backbone="small-cnn", role=Role.METHOD, citation=f"{name} et al. 2024", url="",
        note="", metrics={("segmentation", "miou"): 0.6}, columns=(COLUMNS[0],),
        per_task=per_task, per_metric=None if per_task is None else -per_task, delta_m_note="",
        baseline_reported_id=None, baseline_name=None,
    )  # fmt: skip


def run_row(run_id: int, **fields: Any) -> RunRow:
    """A run as db.queries.submission_runs gives it; `fields` replace the defaults."""
    defaults: dict[str, Any] = dict(
        id=run_id, job_id=9, seed=0, campaign_id=1, campaign="initial", campaign_reason="",
        metrics={}, parameter_count=1234, flops=5678, wall_time_s=1.5,
        peak_gpu_memory_bytes=512 * 1024**2, device="cpu", code_version="git:abc",
        protocol_version=1, torch_version="2.13.0", ray_version="2.60.0",
        python_version="3.11.7", spec_hash="h" * 64, finished_at=None,
    )  # fmt: skip
    return RunRow(**{**defaults, **fields})


def test_by_delta_m_orders_by_mean_and_puts_rows_without_delta_m_last() -> None:
    assert [row.name for row in by_delta_m(ROWS, PER_TASK)] == ["m1", "m2", "stl", "m3"]
    assert [row.name for row in by_delta_m(ROWS, PER_METRIC)] == ["m2", "m1", "stl", "m3"]


def test_placements_pair_the_rows_by_seed() -> None:
    placed = placements(ROWS, PER_TASK)
    assert sorted(placed) == [1, 2, 3]  # m3 has no Δm
    assert [(placed[i].rank, placed[i].group, placed[i].best, placed[i].worst)
            for i in (2, 3, 1)] == [(1, 1, 1, 2), (1, 1, 1, 3), (3, 2, 2, 3)]  # fmt: skip
    # References are row ids: m2 and stl were both compared with m1, their group's leader.
    assert placed[2].reference is None and placed[3].reference == placed[1].reference == 2
    names = {1: "stl", 2: "m1", 3: "m2"}
    assert rank_test_text(placed[2], names) == ""
    assert rank_test_text(placed[3], names) == "vs m1: not testable (1 seed)"
    assert rank_test_text(placed[1], names) == "vs m1: paired t, 3 seeds, p = 0"
    assert tie_notice(placed) is None
    # Reported (paper) rows are never ranked.
    paper = reported_row(1, "m1-paper", 5.0)
    assert -1 not in placements([*ROWS, paper], PER_TASK)


def test_every_entry_tied_is_announced() -> None:
    placed = placements(ROWS, PER_METRIC)
    assert {p.rank for p in placed.values()} == {1}
    notice = tie_notice(placed)
    assert notice is not None and notice.startswith("All 3 entries tie at rank 1")
    assert "more seeds or a quieter protocol" in notice


def test_display_names_disambiguate_repeated_names() -> None:
    rows = [row(1, "a", [], []), row(2, "b", [], []), row(3, "a", [], [])]
    assert display_names(rows) == {1: "a #1", 2: "b", 3: "a #3"}


def test_headline_columns_keep_task_order() -> None:
    assert headline_columns(COLUMNS) == [COLUMNS[0], COLUMNS[2]]


def test_ranking_frame_per_task() -> None:
    frame = ranking_frame(ROWS, COLUMNS, PER_TASK)
    assert list(frame.columns) == ranking_columns(COLUMNS)
    assert list(frame.columns) == [
        "id", "rank", "possible ranks", "tie group", "name", "role", "architecture", "backbone",
        "weighting", "optimizer", "Δm", "± 95% CI", "seeds", "rank test", "pending", "failed",
        "latest rerun Δm",
        "reproduced", "source", "tuning", "segmentation miou ↑",
        "segmentation pixel_acc ↑", "depth abs_err ↓", "parameters", "FLOPs", "wall time (s)",
        "peak GPU memory (MiB)", "last result", "citation", "page",
    ]  # fmt: skip
    assert frame["name"].tolist() == ["m1", "m2", "stl", "m3"]
    assert frame["rank"].tolist() == [1, 1, 3, pd.NA]
    assert frame["tie group"].tolist() == [1, 1, 2, pd.NA]
    # m1 is significantly better than stl (paired); m2, one seed, is tested against nothing.
    assert frame["possible ranks"].tolist() == ["1–2", "1–3", "2–3", ""]
    assert frame["rank test"].tolist() == [
        "", "vs m1: not testable (1 seed)", "vs m1: paired t, 3 seeds, p = 0", "",
    ]  # fmt: skip
    assert frame["role"].tolist() == ["method", "method", "baseline", "method"]
    assert frame["Δm"].tolist()[:3] == [5.0, 2.0, 0.0] and math.isnan(frame["Δm"].iloc[3])
    half = T2 * 1.0 / math.sqrt(3)  # s = 1, n = 3
    assert math.isclose(frame[CI].iloc[0], half, rel_tol=1e-9)
    assert math.isnan(frame[CI].iloc[1])  # one seed: no interval
    assert frame["seeds"].tolist() == [3, 1, 3, 0]
    assert frame["pending"].tolist() == [0, 2, 0, 1] and frame["failed"].tolist() == [0, 0, 0, 2]
    assert frame["segmentation miou ↑"].tolist()[:3] == [0.5, 0.75, 0.25]
    assert pd.isna(frame["segmentation pixel_acc ↑"]).all()
    assert frame[PARAMETERS].tolist() == [100, 50, 300, pd.NA]
    assert frame[FLOPS].tolist() == [1000, 500, 3000, pd.NA]
    # Next to wall time: the peak GPU memory of a GPU run; blank for CPU runs.
    memory = frame["peak GPU memory (MiB)"].tolist()
    assert memory[1] == 96.0 and all(math.isnan(m) for m in memory[::2] + memory[3:])
    assert str(frame["rank"].dtype) == str(frame[PARAMETERS].dtype) == "Int64"
    assert frame["page"].tolist()[0] == "submission?submission=2"


def test_ranking_frame_per_metric_reorders_and_ties() -> None:
    frame = ranking_frame(ROWS, COLUMNS, PER_METRIC, {"convention": "x y"})
    assert frame["name"].tolist() == ["m2", "m1", "stl", "m3"]
    assert frame["rank"].tolist() == [1, 1, 1, pd.NA]
    assert frame["Δm"].tolist()[:3] == [-3.0, -2.0, 0.0]
    assert math.isclose(frame[CI].iloc[2], T2 * 2.0 / math.sqrt(3), rel_tol=1e-9)
    assert frame["page"].iloc[0] == "submission?submission=3&convention=x+y"


def test_ranking_frame_of_no_rows_has_the_columns() -> None:
    frame = ranking_frame([], [], PER_TASK)
    assert frame.empty and "Δm" in frame.columns and "rank" in frame.columns


def test_default_columns_and_directions() -> None:
    shown = default_columns(COLUMNS)
    assert shown[:3] == ["rank", "name", "role"]
    assert "id" not in shown and "depth abs_err ↓" in shown and "page" in shown
    assert directions(COLUMNS, PER_METRIC) == {
        "segmentation miou ↑": True, "segmentation pixel_acc ↑": True, "depth abs_err ↓": False,
        "Δm": False, "parameters": False, "FLOPs": False, "wall time (s)": False,
        "peak GPU memory (MiB)": False,
    }  # fmt: skip


def test_status_and_links() -> None:
    assert [sorted(status_of(r)) for r in ROWS] == [
        ["has results"], ["has results"], ["has results", "pending"], ["failed", "pending"],
    ]  # fmt: skip
    assert submission_link(7) == "submission?submission=7"


@pytest.mark.parametrize(
    ("filters", "names"),
    [
        (Filters(), ["stl", "m1", "m2", "m3"]),
        (Filters(weightings=frozenset({"dwa"})), ["m1"]),
        (Filters(roles=frozenset({"baseline"})), ["stl"]),
        (Filters(architectures=frozenset({"hard-sharing"}), statuses=frozenset({"pending"})),
         ["m2", "m3"]),
        (Filters(statuses=frozenset({"failed", "has results"})), ["stl", "m1", "m2", "m3"]),
        (Filters(statuses=frozenset({"failed"})), ["m3"]),
        (Filters(search="LOVELACE m2"), ["m2"]),  # every word, any field, any case
        (Filters(search="does dwa"), ["m1"]),
        (Filters(search="nothing-like-this"), []),
    ],
)  # fmt: skip
def test_filters(filters: Filters, names: list[str]) -> None:
    assert [r.name for r in ROWS if matches(r, filters)] == names
    frame = filter_frame(ranking_frame(ROWS, COLUMNS, PER_TASK), ROWS, filters)
    assert sorted(frame["name"]) == sorted(names)
    if "stl" in names:  # ranks stay those of the whole table
        assert frame.set_index("name").loc["stl", "rank"] == 3


def test_sort_frame_best_first_follows_each_direction() -> None:
    frame = ranking_frame(ROWS, COLUMNS, PER_TASK)
    better = directions(COLUMNS, PER_TASK)
    by = lambda column, best=True: sort_frame(frame, column, best, better)["name"].tolist()  # noqa: E731
    assert by("rank") == ["m1", "m2", "stl", "m3"]
    assert by("Δm") == ["m1", "m2", "stl", "m3"]
    assert by("Δm", best=False) == ["stl", "m2", "m1", "m3"]  # blanks stay last
    assert by("segmentation miou ↑") == ["m2", "m1", "stl", "m3"]
    assert by("parameters") == ["m2", "m1", "stl", "m3"]  # a cost: low first
    assert by("name") == ["m1", "m2", "m3", "stl"]
    assert by("seeds") == ["m1", "stl", "m2", "m3"]


def test_cost_frame_marks_the_pareto_front() -> None:
    frame = cost_frame(ROWS, PER_TASK, PARAMETERS)
    # m1 (100, 5), m2 (50, 2), stl (300, 0): stl is dominated by both.
    assert frame[["name", "Δm", "cost", "front"]].values.tolist() == [
        ["m1", 5.0, 100.0, True], ["m2", 2.0, 50.0, True], ["stl", 0.0, 300.0, False],
    ]  # fmt: skip
    assert math.isnan(frame[CI].iloc[1])
    hours = cost_frame(ROWS, PER_METRIC, HOURS)
    assert hours["cost"].tolist() == [2.0, 2.0, 2.0]  # 7200 s per run
    # Per metric (lower is better) at equal cost, only the best is on the front.
    assert hours["front"].tolist() == [True, False, False]
    assert cost_frame(ROWS, PER_TASK, FLOPS)["cost"].tolist() == [1000.0, 500.0, 3000.0]
    assert cost_frame([ROWS[3]], PER_TASK, PARAMETERS).empty


def test_hours_label_follows_the_device() -> None:
    assert hours_label(ROWS) == "CPU-hours"
    assert hours_label([*ROWS, replace(ROWS[0], device="NVIDIA H100")]) == "GPU-hours"


def test_task_delta_frame_is_in_ranking_order() -> None:
    deltas = [(1, "seg", 0.0), (2, "seg", 4.0), (2, "depth", 6.0), (3, "depth", 1.0),
              (99, "x", 1.0)]  # fmt: skip
    frame = task_delta_frame(deltas, ROWS, PER_TASK)
    assert list(frame.itertuples(index=False, name=None)) == [
        ("m1", "depth", 6.0), ("m1", "seg", 4.0), ("m2", "depth", 1.0), ("stl", "seg", 0.0),
    ]  # fmt: skip
    assert task_delta_frame([], ROWS, PER_TASK).empty


def test_seeds_frame_has_every_run() -> None:
    frame = seeds_frame(ROWS, PER_METRIC)
    assert frame.values.tolist() == [
        ["m2", "method", 0, -3.0],
        ["m1", "method", 0, -1.0], ["m1", "method", 1, -2.0], ["m1", "method", 2, -3.0],
        ["stl", "baseline", 0, -2.0], ["stl", "baseline", 1, 0.0], ["stl", "baseline", 2, 2.0],
    ]  # fmt: skip


def test_timeline_frame_tracks_the_best_method_so_far() -> None:
    frame = timeline_frame(ROWS, PER_TASK)
    assert frame["name"].tolist() == ["stl", "m2", "m1"]  # by landing time
    # The baseline is no method: the best so far starts with m2.
    assert frame["best"].tolist()[1:] == [2.0, 5.0] and math.isnan(frame["best"].iloc[0])
    assert timeline_frame(ROWS, PER_METRIC)["best"].tolist()[1:] == [-3.0, -3.0]


def test_curves_frame_averages_over_seeds() -> None:
    points = [(0, 0, "seg", "loss", 1.0), (1, 0, "seg", "loss", 3.0), (0, 1, "seg", "loss", 0.5),
              (0, 0, "seg", "weight", 1.0), (1, 0, "seg", "weight", 2.0)]  # fmt: skip
    assert curves_frame(points).to_dict("records") == [
        {"name": "loss", "task": "seg", "epoch": 0, "value": 2.0, "seeds": 2},
        {"name": "loss", "task": "seg", "epoch": 1, "value": 0.5, "seeds": 1},
        {"name": "weight", "task": "seg", "epoch": 0, "value": 1.5, "seeds": 2},
    ]


def test_runs_frame_has_delta_m_every_metric_then_provenance() -> None:
    finished = datetime(2026, 1, 2, 3, 4, 5)
    run = run_row(21, seed=7, finished_at=finished, code_version="git:abc",
                  metrics={("segmentation", "miou"): 0.5, ("depth", "abs_err"): 0.25})  # fmt: skip
    deltas = [RunDelta(21, 2, 1, 7, finished, 1.5, -2.5, 1)]
    [record] = runs_frame([run], COLUMNS, deltas).to_dict("records")
    assert list(record) == [
        "seed", "campaign", "Δm per task ↑", "Δm per metric ↓", "segmentation miou ↑",
        "segmentation pixel_acc ↑", "depth abs_err ↓", "parameters", "FLOPs", "wall time (s)",
        "peak GPU memory (MiB)", "device", "code version", "protocol version", "torch", "ray",
        "python", "spec hash", "job", "finished at",
    ]  # fmt: skip
    assert record["Δm per task ↑"] == 1.5 and record["Δm per metric ↓"] == -2.5
    assert record["seed"] == 7 and record["segmentation miou ↑"] == 0.5
    assert record["segmentation pixel_acc ↑"] is None and record["depth abs_err ↓"] == 0.25
    assert record["FLOPs"] == 5678 and record["finished at"] == finished
    assert record["peak GPU memory (MiB)"] == 512.0


def test_facts_and_provenance() -> None:
    facts = facts_frame(ROWS[2])
    assert dict(zip(facts["field"], facts["value"], strict=True)) == {
        "role": "method", "benchmark": "bench v1", "architecture": "hard-sharing",
        "backbone": "small-cnn", "weighting": "equal", "optimizer": "adam",
        "seeds": "1 (+2 pending)", "submitted at": "2026-01-03 00:00:00 UTC", "last result":
        "2026-02-02 00:00:00 UTC", "spec hash": "0" * 63 + "3",
    }  # fmt: skip
    runs = [
        run_row(1, seed=0, code_version="git:b", finished_at=datetime(2026, 1, 2)),
        run_row(2, seed=1, code_version="git:a", finished_at=datetime(2026, 1, 1)),
    ]
    provenance = provenance_frame(ROWS[1], runs, display_names(ROWS))
    fields = dict(zip(provenance["field"], provenance["value"], strict=True))
    assert fields["Δm baseline"] == "stl (#1)" and fields["runs"] == "2"
    assert fields["code version"] == "git:a, git:b"  # runs that disagree list every value
    assert fields["first result"] == "2026-01-01 00:00:00 UTC"
    assert provenance_frame(ROWS[3], [], {})["value"].tolist()[0] == "none trained yet"


def test_spec_frame_flattens_the_normalised_spec() -> None:
    spec = {"name": "x", "description": "two\nlines", "authors": ["a", "b"],
            "architecture": {"name": "hard-sharing", "head_width": 16}, "scheduler": None,
            "optimizer": {"lr": 0.001, "nesterov": False}}  # fmt: skip
    assert spec_frame(spec).values.tolist() == [
        ["name", "x"], ["description", "two\nlines"], ["authors", "a, b"],
        ["architecture.name", "hard-sharing"], ["architecture.head_width", "16"],
        ["scheduler", ""], ["optimizer.lr", "0.001"], ["optimizer.nesterov", "false"],
    ]  # fmt: skip


JOBS = [
    JobRow(1, 1, "a", "b", "initial", 0, JobState.SUCCEEDED, 1, None, None, None, None),
    JobRow(2, 1, "a", "b", "initial", 1, JobState.FAILED, 1, "\nValueError: bad\nTraceback ...",
           None, None, None),
    JobRow(3, 2, "c", "b", "nightly", 0, JobState.FAILED, 2, "ValueError: bad", None, None, None),
    JobRow(4, 2, "c", "b", "nightly", 1, JobState.QUEUED, 0, None, None, None, None),
]  # fmt: skip


def test_queue_frames() -> None:
    frame = jobs_frame(JOBS, ["queued", "failed"])
    assert frame["job"].tolist() == [4, 3, 2]  # newest first
    assert frame["reason"].tolist() == ["", "ValueError: bad", "ValueError: bad"]
    assert frame["campaign"].tolist() == ["nightly", "nightly", "initial"]
    assert len(jobs_frame(JOBS)) == 4
    assert state_counts(JOBS) == {"queued": 1, "running": 0, "succeeded": 1, "failed": 2,
                                  "diverged": 0, "cancelled": 0}  # fmt: skip
    assert failure_reasons(JOBS).values.tolist() == [["failed", "ValueError: bad", 2]]


def seed_result(sid: int, seed: int, per_task: float | None, abs_err: float) -> SeedResult:
    per_metric = None if per_task is None else -per_task
    return SeedResult(sid, seed, 10 * sid + seed, per_task, per_metric,
                      {("depth", "abs_err"): abs_err})  # fmt: skip


def test_seed_samples_and_the_paired_comparison() -> None:
    columns = [MetricColumn("depth", "abs_err", False, 0)]
    # A ran seeds 0-2; B seeds 1-3 (seeds 1 and 2 shared), and has no Δm at seed 3.
    a = seed_samples([seed_result(1, s, v, v) for s, v in enumerate((1.0, 2.0, 3.0))], columns)
    b = seed_samples(
        [seed_result(2, 1, 4.0, 2.5), seed_result(2, 2, 5.5, 3.0), seed_result(2, 3, None, 9.0)],
        columns,
    )
    assert list(a) == ["Δm per task ↑", "Δm per metric ↓", "depth abs_err ↓"]
    assert a["depth abs_err ↓"] == {0: 1.0, 1: 2.0, 2: 3.0}
    assert b["Δm per task ↑"] == {1: 4.0, 2: 5.5} and b["depth abs_err ↓"][3] == 9.0

    better = {"depth abs_err ↓": False, "Δm per task ↑": True, "Δm per metric ↓": False}
    side, differences = comparison_frames(["A", "B"], [a, b], better)
    assert side.columns.tolist() == ["quantity", "A", "B"]
    assert side["A"].tolist() == ["+2.00 ± 2.48 (n=3)", "-2.00 ± 2.48 (n=3)", "2 ± 2.5 (n=3)"]
    assert side["B"].tolist()[0] == "+4.75 ± 9.53 (n=2)"
    assert differences.columns.tolist() == [
        "quantity", "submission", "difference vs A", "± 95% CI", "test", "p",
        "P(improvement)", "significant", "verdict vs A",
    ]  # fmt: skip
    rows = differences.set_index("quantity")
    # Δm per task, seeds 1 and 2: d = (4 - 2, 5.5 - 3) = (2, 2.5): mean 2.25, s_d = 0.353553,
    # se = 0.25, t = 9 on 1 df: p = 0.070447, half = 12.706205 · 0.25 = 3.176551.
    delta = rows.loc["Δm per task ↑"]
    assert delta["test"] == "paired t, 2 seeds" and delta["difference vs A"] == 2.25
    assert math.isclose(delta["± 95% CI"], 12.706204736 * 0.25, rel_tol=1e-9)
    assert math.isclose(delta["p"], 0.070447, abs_tol=1e-6)
    assert delta["P(improvement)"] == 1.0
    assert not delta["significant"] and delta["verdict vs A"] == "not significant"
    # abs_err, seeds 1-3 of B against 0-2 of A: seeds 1, 2 shared: d = (0.5, 0): lower is
    # better, so B is worse on seed 1 and ties on seed 2: PoI = (0 + 1/2) / 2.
    error = rows.loc["depth abs_err ↓"]
    assert error["difference vs A"] == 0.25 and error["P(improvement)"] == 0.25
    assert error["test"] == "paired t, 2 seeds"


def test_the_comparison_falls_back_to_welch_without_shared_seeds() -> None:
    columns = [MetricColumn("depth", "abs_err", False, 0)]
    a = seed_samples([seed_result(1, s, v, v) for s, v in enumerate((1.0, 2.0, 3.0))], columns)
    unshared = zip((3, 4, 5), (4.0, 5.0, 6.0), strict=True)
    b = seed_samples([seed_result(2, s, v, v) for s, v in unshared], columns)
    _, differences = comparison_frames(["A", "B"], [a, b], {"depth abs_err ↓": False})
    rows = differences.set_index("quantity")
    # R: t.test(4:6, 1:3): p-value = 0.02131, 95% CI 0.733 to 5.267.
    error = rows.loc["depth abs_err ↓"]
    assert error["test"] == "Welch, no shared seeds" and error["difference vs A"] == 3.0
    assert math.isclose(error["p"], 0.021312, abs_tol=1e-6)
    assert math.isclose(error["± 95% CI"], 5.266958 - 3.0, abs_tol=1e-6)
    assert math.isnan(error["P(improvement)"])  # no matched seed
    assert error["significant"] and error["verdict vs A"] == "significantly worse"
    # Δm has no direction given: a significant difference is only 'different'.
    assert rows.loc["Δm per task ↑", "verdict vs A"] == "significantly different"
