"""DataFrames for the site, built from the typed rows of `db.queries`.

Pure functions, no Streamlit and no database: the pages query, these shape; pandas starts here.
Submitter strings stay raw here; a DataFrame shown by `st.dataframe` renders them as text.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import pandas as pd  # no pandas-stubs in dev deps

from db.delta_m import PER_METRIC, PER_TASK
from db.models import FINISHED_STATES, JobState
from db.queries import PLATFORM as PLATFORM  # re-exported: the sources are tables' words too
from db.queries import (
    REPORTED,
    JobRow,
    MetricColumn,
    RankingRow,
    ReportedRow,
    RunDelta,
    RunRow,
    SeedResult,
)
from db.reported import web_url
from db.reruns import reproduced as _reproduced
from leaderboard import paired, stats
from leaderboard.front import FrontVerdict
from leaderboard.text import (
    HIGHER_IS_BETTER,
    first_line,
    format_mean_std,
    format_time,
    metric_header,
)

ID = "id"
RANK = "rank"
RANK_RANGE = "possible ranks"
TIE_GROUP = "tie group"
RANK_TEST = "rank test"
NAME = "name"
ROLE = "role"
DELTA_M = "Δm"
CI = "± 95% CI"
SEEDS = "seeds"
# A column of the ranking and a status of the filter alike: jobs queued or running, failed.
PENDING = "pending"
FAILED = "failed"
RERUN_DELTA_M = "latest rerun Δm"
REPRODUCED = "reproduced"
SOURCE = "source"
TUNING = "tuning"
CITATION = "citation"
PARAMETERS = "parameters"
FLOPS = "FLOPs"
WALL_TIME = "wall time (s)"
GPU_MEMORY = "peak GPU memory (MiB)"
LAST_RESULT = "last result"
PAGE = "page"

IDENTITY = ["architecture", "backbone", "weighting", "optimizer"]
COSTS = [PARAMETERS, FLOPS, WALL_TIME, GPU_MEMORY]

# What the status filter offers; a submission can be in several.  The source of a ranking
# row (`db.queries.PLATFORM` or `REPORTED`) doubles as the status of a paper's row.
HAS_RESULTS = "has results"
STATUSES = (HAS_RESULTS, PENDING, FAILED, REPORTED)

# A row of the ranking table: a submission's, or a paper's (unranked).
Row = RankingRow | ReportedRow
R = TypeVar("R", bound=RankingRow | ReportedRow)


class Named(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...


def display_names(rows: Iterable[Named]) -> dict[int, str]:
    """Row id -> the name shown; names are not unique, so a repeated one gets its id.

    >>> from types import SimpleNamespace as R
    >>> display_names([R(id=1, name="a"), R(id=2, name="b"), R(id=3, name="a")])
    {1: 'a #1', 2: 'b', 3: 'a #3'}
    """
    rows = list(rows)
    counts = Counter(row.name for row in rows)
    return {row.id: row.name if counts[row.name] == 1 else f"{row.name} #{row.id}" for row in rows}


def headline_columns(columns: Iterable[MetricColumn]) -> list[MetricColumn]:
    """Each task's headline metric (position 0), in task order."""
    return [c for c in columns if c.position == 0]


def mean(row: Row, convention: str) -> float | None:
    """The row's mean Δm in `convention` (a paper's one value), None without one."""
    return row.mean(convention)


def half_width(row: Row, convention: str) -> float | None:
    """Half-width of the 95% confidence interval of the row's mean Δm, over its seeds; None
    for a paper's result (one value)."""
    if isinstance(row, ReportedRow):
        return None
    return stats.half_width(row.std(convention), len(row.run_deltas))


def seed_values(row: Row, convention: str) -> dict[int, float]:
    """{seed: Δm in `convention`} of the row's runs (its original campaign's, `run_deltas`)."""
    if isinstance(row, ReportedRow):
        return {}
    return {
        run.seed: value for run in row.run_deltas if (value := run.value(convention)) is not None
    }


def placements(rows: Sequence[Row], convention: str) -> dict[int, paired.Placement]:
    """{row id: where it stands}: `paired.rank` of the rows' per-seed Δm.

    Each row's seeds are paired with the other rows' seeds of the same number
    (common random numbers).  Reported (paper) rows are not ranked.  Here a
    placement's `reference` is the id of the row it was compared with, not
    an index.
    """
    ranked_rows = [row for row in rows if isinstance(row, RankingRow)]
    found = paired.rank(
        [seed_values(row, convention) for row in ranked_rows], HIGHER_IS_BETTER[convention]
    )
    out = {}
    for row, placement in zip(ranked_rows, found, strict=True):
        if placement is not None:
            reference = None if placement.reference is None else ranked_rows[placement.reference]
            out[row.id] = replace(placement, reference=None if reference is None else reference.id)
    return out


RANKS_EXPLAINED = (
    "Ranks come from paired comparisons: runs at the same seed share data order and "
    "initialisation, so each entry is compared with its tie group's leader over the seeds "
    "both ran (paired t test; Welch's test when they share fewer than 2 seeds, as the rank "
    "test column says), and shares the leader's rank unless the 95% interval of the "
    "difference excludes 0."
)


def by_delta_m(rows: Sequence[R], convention: str) -> list[R]:
    """The rows best mean Δm first (the ranking's order); rows without Δm last, by id."""
    sign = -1.0 if HIGHER_IS_BETTER[convention] else 1.0
    return sorted(
        rows,
        key=lambda row: (mean(row, convention) is None, sign * (mean(row, convention) or 0.0),
                         row.id),
    )  # fmt: skip


def rank_test_text(placement: paired.Placement | None, names: Mapping[int, str]) -> str:
    """The ranking's `rank test` cell: the comparison that placed the entry; '' for the first.

    >>> a, b = {0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.5, 1: 1.0, 2: 2.9}
    >>> placed = paired.rank([a, b], True)
    >>> rank_test_text(placed[1], {0: "A"})
    'vs A: paired t, 3 seeds, p = 0.18'
    >>> rank_test_text(paired.rank([a, {5: 9.0}], True)[0], {1: "B"})  # B: one seed, best
    'vs B: not testable (1 seed)'
    """
    if placement is None or placement.difference is None or placement.reference is None:
        return ""
    difference = placement.difference
    text = f"vs {names.get(placement.reference, f'#{placement.reference}')}: "
    text += difference.describe()
    if difference.test == paired.NO_TEST:
        return text
    if math.isnan(difference.p):
        return text + ", identical"
    return text + f", p = {difference.p:.2g}"


def tie_notice(placed: Mapping[int, paired.Placement]) -> str | None:
    """What to say above the ranking when every entry ties (`paired.all_tied`), else None.

    >>> placed = paired.rank([{0: 1.0, 1: 3.0}, {0: 2.0, 1: 2.5}], True)
    >>> tie_notice(dict(enumerate(placed)))[:27]
    'All 2 entries tie at rank 1'
    >>> tie_notice({}) is None
    True
    """
    if not paired.all_tied(list(placed.values())):
        return None
    return (
        f"All {len(placed)} entries tie at rank 1: the 95% interval of each one's difference "
        "from the leader includes 0. Separating them needs more seeds or a quieter protocol "
        "(longer training, a larger test split), not other statistics."
    )


def status_of(row: Row) -> set[str]:
    """The statuses a submission is in: has results, pending (jobs queued or running), failed.

    A reported (paper) result is only 'reported'.
    """
    if isinstance(row, ReportedRow):
        return {REPORTED}
    found = set()
    if row.seeds:
        found.add(HAS_RESULTS)
    if row.pending_jobs:
        found.add(PENDING)
    if row.failed_jobs:
        found.add(FAILED)
    return found


def submission_link(submission_id: int, params: Mapping[str, str] | None = None) -> str:
    """Relative URL of a submission's page, with the query parameters that select it.

    >>> submission_link(3, {"convention": "per metric"})
    'submission?submission=3&convention=per+metric'
    """
    return "submission?" + urlencode({"submission": str(submission_id), **(params or {})})


def paper_link(url: str) -> str | None:
    """A reported result's link, only if it is a web address (`db.reported.web_url`); a
    `javascript:` or `data:` one stored before the importer refused them is not linked.

    >>> paper_link("https://arxiv.org/abs/1"), paper_link("javascript:alert(1)"), paper_link("")
    ('https://arxiv.org/abs/1', None, None)
    """
    return url if web_url(url) else None


def _int(value: Any) -> int | None:
    return None if value is None else round(float(value))


def _clean(value: float | None) -> float | None:
    """Float noise around zero made zero: the baseline's own Δm is -4e-15, shown as 0, not -0.00.

    >>> _clean(-4.1e-15), _clean(-0.004), _clean(None)
    (0.0, -0.004, None)
    """
    return 0.0 if value is not None and abs(value) < 1e-9 else value


def _rank_range(bounds: tuple[int, int]) -> str:
    best, worst = bounds
    return str(best) if best == worst else f"{best}–{worst}"


def _platform_cells(
    row: RankingRow,
    convention: str,
    placement: paired.Placement | None,
    names: Mapping[int, str],
    link_params: Mapping[str, str] | None,
) -> dict[str, Any]:
    """A submission's cells of the ranking besides its identity, Δm and metrics."""
    return {
        RANK: None if placement is None else placement.rank,
        RANK_RANGE: "" if placement is None else _rank_range((placement.best, placement.worst)),
        TIE_GROUP: None if placement is None else placement.group,
        SEEDS: row.seeds,
        RANK_TEST: rank_test_text(placement, names),
        PENDING: row.pending_jobs,
        FAILED: row.failed_jobs,
        RERUN_DELTA_M: _clean(row.rerun_mean(convention)),
        REPRODUCED: reproduced_text(row.reproduced(convention)),
        TUNING: tuning_text(row),
        PARAMETERS: _int(row.parameters),
        FLOPS: _int(row.flops),
        WALL_TIME: row.wall_time_s,
        GPU_MEMORY: mebibytes(row.peak_gpu_memory_bytes),
        LAST_RESULT: row.last_result,
        CITATION: "",
        PAGE: submission_link(row.id, link_params),
    }


def _reported_cells(row: ReportedRow) -> dict[str, Any]:
    """A paper's cells of the ranking: unranked, no seeds nor costs; its citation and link."""
    return {
        RANK: None, RANK_RANGE: "", TIE_GROUP: None, SEEDS: 0, RANK_TEST: "", PENDING: 0,
        FAILED: 0, RERUN_DELTA_M: None, REPRODUCED: "", TUNING: tuning_text(row),
        PARAMETERS: None, FLOPS: None, WALL_TIME: None, GPU_MEMORY: None, LAST_RESULT: None,
        CITATION: row.citation, PAGE: paper_link(row.url),
    }  # fmt: skip


def ranking_frame(
    rows: Sequence[Row],
    columns: Iterable[MetricColumn],
    convention: str,
    link_params: Mapping[str, str] | None = None,
    placed: Mapping[int, paired.Placement] | None = None,
) -> pd.DataFrame:
    """The ranking table: one row per submission, best Δm first, every metric as a mean.

    `rank`, `tie group`, `possible ranks` and `rank test` come from paired
    comparisons over shared seeds (`placements`, `paired.rank`: an entry shares
    its tie group leader's rank unless the 95% interval of their difference
    excludes 0); `rank test` names the comparison that placed the entry.
    `Δm` is the mean over seeds and `± 95% CI` the half-width of its t
    interval.  `placed` is `placements(rows, convention)`, computed when not
    given.
    """
    columns = list(columns)
    higher = HIGHER_IS_BETTER[convention]
    means = [mean(r, convention) for r in rows]
    halves = [half_width(r, convention) for r in rows]
    # Reported (paper) results are not ranked: one value against a paper's baseline, no interval.
    if placed is None:
        placed = placements(rows, convention)
    names = display_names(r for r in rows if isinstance(r, RankingRow))
    records = []
    for i, row in enumerate(rows):
        record: dict[str, Any] = {
            ID: row.id,
            NAME: names.get(row.id, row.name),
            ROLE: str(row.role),
            "architecture": row.architecture,
            "backbone": row.backbone,
            "weighting": row.weighting,
            "optimizer": row.optimizer,
            DELTA_M: _clean(means[i]),
            CI: halves[i],
            SOURCE: row.source,
        }
        for c in columns:
            header = metric_header(c.task, c.metric, c.higher_is_better)
            record[header] = row.metrics.get((c.task, c.metric))
        if isinstance(row, ReportedRow):
            record.update(_reported_cells(row))
        else:
            record.update(_platform_cells(row, convention, placed.get(row.id), names, link_params))
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=ranking_columns(columns))
    for column in (RANK, TIE_GROUP, PARAMETERS, FLOPS):
        frame[column] = frame[column].astype("Int64")
    for column in (DELTA_M, CI, RERUN_DELTA_M, WALL_TIME, GPU_MEMORY):
        frame[column] = frame[column].astype("float64")
    frame[LAST_RESULT] = pd.to_datetime(frame[LAST_RESULT])
    sign = -1.0 if higher else 1.0
    frame["_order"] = [(m is None, sign * (m or 0.0)) for m in means]
    frame = frame.sort_values(["_order", ID], kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)


SUMMARY_COLUMNS = [RANK, TIE_GROUP, RANK_RANGE, ID, NAME, ROLE, DELTA_M, CI, SEEDS, RANK_TEST]
PER_SEED = "Δm per seed"


def ranking_summary(
    rows: Sequence[Row], convention: str, placed: Mapping[int, paired.Placement] | None = None
) -> pd.DataFrame:
    """The ranking as `mtlb ranking` prints it: `ranking_frame`'s rows and order, its rank,
    tie group, possible ranks, identity, Δm with its interval, seeds and rank test, and
    `Δm per seed` ({seed: Δm} of the original campaign)."""
    frame = ranking_frame(rows, [], convention, placed=placed)[SUMMARY_COLUMNS]
    by_id = {row.id: row for row in rows}
    frame[PER_SEED] = [dict(sorted(seed_values(by_id[i], convention).items())) for i in frame[ID]]
    return frame


def tuning_text(row: Row) -> str:
    """The ranking's tuning cell: 'tuned' when the seeds trained with values chosen by
    equal-budget tuning (`runners.tuning`), else 'untuned'; '' for a reported result.

    >>> from types import SimpleNamespace as R
    >>> [tuning_text(R(tuned_values=v)) for v in ({"optimizer.lr": 0.01}, None)]
    ['tuned', 'untuned']
    """
    if isinstance(row, ReportedRow):
        return ""
    return "tuned" if row.tuned_values else "untuned"


def tuning_frames(tuning: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A tuning (`db.tunings.tuning_of`) as two tables: the values chosen, and every trial.

    Trials in the order they were created (the first is the spec's own values), with
    each searched parameter's value, the state, the objective and why a trial failed.
    """
    chosen = tuning["chosen"]
    chosen_frame = pd.DataFrame(
        {"parameter": list(chosen), "value": [_text(v) for v in chosen.values()]}
    )
    records = []
    for i, trial in enumerate(tuning["trials"]):
        record: dict[str, Any] = {"trial": i}
        for path in chosen:
            record[path] = _text(trial.get("values", {}).get(path))
        record["state"] = trial.get("state")
        record["objective"] = trial.get("objective")
        record["chosen"] = trial.get("values") == chosen and trial.get("objective") is not None
        record["error"] = (trial.get("error") or "").split("\n")[0]
        records.append(record)
    trials = pd.DataFrame.from_records(
        records, columns=["trial", *chosen, "state", "objective", "chosen", "error"]
    )
    trials["objective"] = trials["objective"].astype("float64")
    return chosen_frame, trials


def reproduced_text(flag: bool | None) -> str:
    """The ranking's reproduction cell: '' when not judged (`db.reruns.reproduced`).

    >>> [reproduced_text(f) for f in (True, False, None)]
    ['yes', 'not reproduced', '']
    """
    return "" if flag is None else "yes" if flag else "not reproduced"


def ranking_columns(columns: Iterable[MetricColumn]) -> list[str]:
    """Every column of `ranking_frame`, in order."""
    return [
        ID, RANK, RANK_RANGE, TIE_GROUP, NAME, ROLE, *IDENTITY, DELTA_M, CI, SEEDS, RANK_TEST,
        PENDING, FAILED,
        RERUN_DELTA_M, REPRODUCED, SOURCE, TUNING,
        *(metric_header(c.task, c.metric, c.higher_is_better) for c in columns),
        *COSTS, LAST_RESULT, CITATION, PAGE,
    ]  # fmt: skip


def default_columns(columns: Iterable[MetricColumn]) -> list[str]:
    """The columns shown until the visitor chooses: every metric, not the bookkeeping."""
    hidden = {ID, RANK_RANGE, TIE_GROUP, "backbone", "optimizer", PENDING, FAILED, LAST_RESULT}
    return [c for c in ranking_columns(columns) if c not in hidden]


def directions(columns: Iterable[MetricColumn], convention: str) -> dict[str, bool]:
    """Column -> higher is better, for the columns where one value beats another."""
    out = {metric_header(c.task, c.metric, c.higher_is_better): c.higher_is_better for c in columns}
    out.update({DELTA_M: HIGHER_IS_BETTER[convention], **dict.fromkeys(COSTS, False)})
    return out


@dataclass(frozen=True)
class Filters:
    """What the visitor narrowed the table to; an empty choice means every value."""

    architectures: frozenset[str] = frozenset()
    weightings: frozenset[str] = frozenset()
    backbones: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    search: str = ""


def matches(row: Row, filters: Filters) -> bool:
    """Whether a submission passes the filters.

    The search is case-insensitive and looks for every word of it in the name,
    description, authors, architecture, backbone, weighting and optimizer.
    """
    for wanted, value in (
        (filters.architectures, row.architecture),
        (filters.weightings, row.weighting),
        (filters.backbones, row.backbone),
        (filters.roles, str(row.role)),
    ):
        if wanted and value not in wanted:
            return False
    if filters.statuses and not filters.statuses & status_of(row):
        return False
    words = filters.search.casefold().split()
    if words:
        haystack = " ".join(
            [
                row.name,
                row.description,
                *row.authors,
                row.architecture,
                row.backbone,
                row.weighting,
                row.optimizer,
            ]
        ).casefold()
        return all(word in haystack for word in words)
    return True


def filter_frame(frame: pd.DataFrame, rows: Sequence[Row], filters: Filters) -> pd.DataFrame:
    """The rows of `frame` (by id) whose submissions pass `filters`; ranks stay global."""
    keep = {row.id for row in rows if matches(row, filters)}
    return frame[frame[ID].isin(keep)].reset_index(drop=True)


def sort_frame(
    frame: pd.DataFrame, column: str, best_first: bool, better: Mapping[str, bool]
) -> pd.DataFrame:
    """`frame` sorted by `column`; blanks always last.

    "Best first" follows the column's direction (`better`: higher is better?):
    Δm by its convention, metrics by their arrows, costs and rank low first,
    seeds and the last result high first, text A to Z.
    """
    if column == RANK:
        ascending = True
    elif column in better:
        ascending = not better[column]
    elif column in (SEEDS, LAST_RESULT):
        ascending = False
    else:
        ascending = True
    if not best_first:
        ascending = not ascending
    key = None
    if pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(frame[column]):
        key = lambda s: s.astype(str).str.casefold()  # noqa: E731
    return frame.sort_values(
        column, ascending=ascending, na_position="last", kind="stable", key=key
    ).reset_index(drop=True)


def cost_frame(rows: Sequence[RankingRow], convention: str, cost: str) -> pd.DataFrame:
    """Δm (mean, CI half-width) against a cost, for submissions that have both.

    `cost` is a ranking column (parameters, FLOPs) or `hours`: mean wall time per run / 3600.
    `front` marks the Pareto front (`stats.pareto_front`: cheaper and better wins).
    """
    names = display_names(rows)
    records = []
    for row in by_delta_m(rows, convention):
        value = mean(row, convention)
        x = cost_of(row, cost)
        if value is None or x is None:
            continue
        records.append(
            {
                NAME: names[row.id],
                ROLE: str(row.role),
                DELTA_M: value,
                CI: half_width(row, convention),
                "cost": x,
            }
        )
    frame = pd.DataFrame.from_records(records, columns=[NAME, ROLE, DELTA_M, CI, "cost"])
    frame["front"] = stats.pareto_front(
        list(frame["cost"]), list(frame[DELTA_M]), HIGHER_IS_BETTER[convention]
    )
    return frame


HOURS = "hours"


def cost_of(row: RankingRow, cost: str) -> float | None:
    """A submission's cost: mean parameters, FLOPs, or hours (mean wall time per run / 3600)."""
    if cost == HOURS:
        return None if row.wall_time_s is None else row.wall_time_s / 3600.0
    value = {PARAMETERS: row.parameters, FLOPS: row.flops}[cost]
    return None if value is None else float(value)


def hours_label(rows: Iterable[RankingRow]) -> str:
    """'GPU-hours' when any run used a GPU, else 'CPU-hours' (runs record their device).

    >>> from types import SimpleNamespace as R
    >>> hours_label([R(device="cpu (x86_64, 1 threads)"), R(device=None)])
    'CPU-hours'
    >>> hours_label([R(device="NVIDIA H100 80GB HBM3")])
    'GPU-hours'
    """
    devices = [row.device for row in rows if row.device]
    return "GPU-hours" if any(not d.startswith("cpu") for d in devices) else "CPU-hours"


def front_frame(
    deltas: Iterable[tuple[int, str, float]],
    entries: Sequence[RankingRow],
    front: Sequence[RankingRow],
    verdicts: Mapping[int, FrontVerdict],
) -> pd.DataFrame:
    """One row per entry and front point with a gain for every task: id, submission, kind
    ("front", "beats the front" or "dominated"), then a column per task (x100, higher is better).
    """
    names = display_names([*entries, *front])
    front_ids = {r.id for r in front}
    gains: dict[int, dict[str, float]] = {}
    for sid, task, value in deltas:
        gains.setdefault(sid, {})[task] = value
    tasks = sorted({t for values in gains.values() for t in values})
    records = []
    for sid, values in gains.items():
        if sid not in names or len(values) != len(tasks):
            continue
        if sid in front_ids:
            kind = "front"
        elif sid in verdicts:
            kind = "beats the front" if verdicts[sid].beats_front else "dominated"
        else:
            continue
        records.append({"id": sid, "submission": names[sid], "kind": kind, **values})
    return pd.DataFrame.from_records(records, columns=["id", "submission", "kind", *tasks])


def task_delta_frame(
    deltas: Iterable[tuple[int, str, float]], rows: Sequence[RankingRow], convention: str
) -> pd.DataFrame:
    """Per-task relative gain (x100) per submission, submissions in ranking order."""
    names = display_names(rows)
    order = {row.id: i for i, row in enumerate(by_delta_m(rows, convention))}
    records = [
        {"submission": names[sid], "task": task, "delta": value, "_order": order[sid]}
        for sid, task, value in deltas
        if sid in names
    ]
    frame = pd.DataFrame.from_records(records, columns=["submission", "task", "delta", "_order"])
    frame = frame.sort_values(["_order", "task"], kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)


def seeds_frame(rows: Sequence[RankingRow], convention: str) -> pd.DataFrame:
    """Δm of every run (seed), one row each, submissions in ranking order."""
    names = display_names(rows)
    records = [
        {"submission": names[row.id], ROLE: str(row.role), "seed": seed, DELTA_M: value}
        for row in by_delta_m(rows, convention)
        for seed, value in seed_values(row, convention).items()
    ]
    return pd.DataFrame.from_records(records, columns=["submission", ROLE, "seed", DELTA_M])


def timeline_frame(rows: Sequence[RankingRow], convention: str) -> pd.DataFrame:
    """When each submission's results landed (its last run) and its Δm, oldest first.

    `best` is the best Δm of the methods landed so far (the state of the art over time).
    """
    names = display_names(rows)
    higher = HIGHER_IS_BETTER[convention]
    records = [
        {
            NAME: names[row.id],
            ROLE: str(row.role),
            LAST_RESULT: row.last_result,
            DELTA_M: mean(row, convention),
            CI: half_width(row, convention),
        }
        for row in rows
        if mean(row, convention) is not None and row.last_result is not None
    ]
    frame = pd.DataFrame.from_records(records, columns=[NAME, ROLE, LAST_RESULT, DELTA_M, CI])
    frame = frame.sort_values([LAST_RESULT, NAME], kind="stable").reset_index(drop=True)
    methods = frame[DELTA_M].where(frame[ROLE] == "method")
    frame["best"] = methods.cummax() if higher else methods.cummin()
    return frame


def _provenance(run: RunRow) -> dict[str, Any]:
    """A run's cost and provenance cells, by header."""
    return {
        PARAMETERS: run.parameter_count,
        FLOPS: run.flops,
        WALL_TIME: run.wall_time_s,
        GPU_MEMORY: mebibytes(run.peak_gpu_memory_bytes),
        "device": run.device,
        "code version": run.code_version,
        "protocol version": run.protocol_version,
        "torch": run.torch_version,
        "ray": run.ray_version,
        "python": run.python_version,
        "spec hash": run.spec_hash,
        "job": run.job_id,
        "finished at": run.finished_at,
    }


PROVENANCE = [PARAMETERS, FLOPS, WALL_TIME, GPU_MEMORY, "device", "code version",
              "protocol version", "torch", "ray", "python", "spec hash", "job",
              "finished at"]  # fmt: skip
DELTA_M_HEADERS = {PER_TASK: "Δm per task ↑", PER_METRIC: "Δm per metric ↓"}


def runs_frame(
    runs: Iterable[RunRow], columns: Iterable[MetricColumn], deltas: Iterable[RunDelta] = ()
) -> pd.DataFrame:
    """One row per run (seed): Δm in both conventions, every metric, then cost and provenance."""
    headers = [(c, metric_header(c.task, c.metric, c.higher_is_better)) for c in columns]
    by_run = {d.run_id: d for d in deltas}
    records = []
    for run in runs:
        record: dict[str, Any] = {"seed": run.seed, "campaign": run.campaign}
        delta = by_run.get(run.id)
        for convention, header in DELTA_M_HEADERS.items():
            record[header] = None if delta is None else delta.value(convention)
        for c, header in headers:
            record[header] = run.metrics.get((c.task, c.metric))
        record.update(_provenance(run))
        records.append(record)
    names = ["seed", "campaign", *DELTA_M_HEADERS.values(), *(h for _, h in headers)]
    frame = pd.DataFrame.from_records(records, columns=[*names, *PROVENANCE])
    for header in DELTA_M_HEADERS.values():
        frame[header] = frame[header].astype("float64")
    frame[FLOPS] = frame[FLOPS].astype("Int64")
    frame[GPU_MEMORY] = frame[GPU_MEMORY].astype("float64")
    return frame


def mebibytes(count: Any) -> float | None:
    """Bytes as MiB; None stays None (a CPU run has no GPU memory).

    >>> mebibytes(3 * 1024**2), mebibytes(None)
    (3.0, None)
    """
    return None if count is None else float(count) / 1024**2


def campaigns_frame(
    runs: Sequence[RunRow],
    deltas: Sequence[RunDelta],
    columns: Iterable[MetricColumn],
    original_campaign_id: int | None,
    convention: str,
) -> pd.DataFrame:
    """One row per campaign of a submission (one protocol version): the original, then reruns.

    Δm in both conventions as 'mean ± half-width of the 95% t interval' over
    the campaign's seeds, the seeds, every metric's mean, and whether a rerun
    reproduced the original in `convention` (`db.reruns.reproduced`: its mean
    Δm within the original's seed standard deviation; '' when not judged).
    """
    columns = list(columns)
    headers = [(c, metric_header(c.task, c.metric, c.higher_is_better)) for c in columns]
    by_campaign: dict[int, list[RunRow]] = {}
    for run in runs:
        by_campaign.setdefault(run.campaign_id, []).append(run)
    deltas_of: dict[int, list[RunDelta]] = {}
    for delta in deltas:
        deltas_of.setdefault(delta.campaign_id, []).append(delta)

    def values(found: Sequence[RunDelta], convention: str) -> tuple[float, ...]:
        return tuple(v for d in found if (v := d.value(convention)) is not None)

    original = list(values(deltas_of.get(original_campaign_id or -1, []), convention))
    order = sorted(by_campaign, key=lambda c: (c != original_campaign_id, c))
    records = []
    for campaign_id in order:
        found = by_campaign[campaign_id]
        record: dict[str, Any] = {
            "campaign": found[0].campaign,
            "kind": "original" if campaign_id == original_campaign_id else "rerun",
            "reason": found[0].campaign_reason,
            "seeds": ", ".join(str(run.seed) for run in found),
        }
        these = deltas_of.get(campaign_id, [])
        for key, header in DELTA_M_HEADERS.items():
            sample = Sample(values(these, key))
            record[header] = format_mean_std(_clean(sample.mean), sample.half_width)
        if campaign_id == original_campaign_id:
            record[REPRODUCED] = ""
        else:
            record[REPRODUCED] = reproduced_text(
                _reproduced(original, list(values(these, convention)))
            )
        for c, header in headers:
            sample = Sample(
                tuple(
                    run.metrics[(c.task, c.metric)]
                    for run in found
                    if (c.task, c.metric) in run.metrics
                )
            )
            record[header] = sample.mean
        records.append(record)
    names = ["campaign", "kind", "reason", "seeds", *DELTA_M_HEADERS.values(), REPRODUCED]
    return pd.DataFrame.from_records(records, columns=[*names, *(h for _, h in headers)])


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


def facts_frame(row: RankingRow) -> pd.DataFrame:
    """The submission's identity as two columns (field, value)."""
    fields = {
        "role": str(row.role),
        "benchmark": f"{row.benchmark} v{row.protocol_version}",
        "architecture": row.architecture,
        "backbone": row.backbone,
        "weighting": row.weighting,
        "optimizer": row.optimizer,
        "seeds": seeds_text(row),
        "submitted at": _text(row.submitted_at),
        "last result": _text(row.last_result),
        "spec hash": row.spec_hash,
    }
    return pd.DataFrame({"field": list(fields), "value": [str(v) for v in fields.values()]})


def provenance_frame(
    row: RankingRow, runs: Sequence[RunRow], names: Mapping[int, str]
) -> pd.DataFrame:
    """Where the results came from: the baseline Δm used, then each provenance field's values.

    A field whose runs disagree (say, two code versions) lists every value.
    """
    baseline = row.baseline_submission_id
    fields: dict[str, str] = {
        "Δm baseline": "none trained yet"
        if baseline is None
        else f"{names.get(baseline, '')} (#{baseline})",
        "runs": str(len(runs)),
    }
    for label, found in (
        ("code version", [run.code_version for run in runs]),
        ("protocol version", [run.protocol_version for run in runs]),
        ("torch", [run.torch_version for run in runs]),
        ("ray", [run.ray_version for run in runs]),
        ("python", [run.python_version for run in runs]),
        ("device", [run.device for run in runs]),
    ):
        fields[label] = ", ".join(sorted({str(value) for value in found if value}))
    finished = sorted(run.finished_at for run in runs if run.finished_at)
    fields["first result"] = _text(finished[0]) if finished else ""
    fields["last result"] = _text(finished[-1]) if finished else ""
    return pd.DataFrame({"field": list(fields), "value": list(fields.values())})


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return format_time(value)
    return "" if value is None else str(value)


def seeds_text(row: RankingRow) -> str:
    """Seeds done, with the jobs pending or failed when there are any.

    >>> from types import SimpleNamespace as R
    >>> seeds_text(R(seeds=1, pending_jobs=2, failed_jobs=1))
    '1 (+2 pending, 1 failed)'
    >>> seeds_text(R(seeds=3, pending_jobs=0, failed_jobs=0))
    '3'
    """
    extra = []
    if row.pending_jobs:
        extra.append(f"+{row.pending_jobs} pending")
    if row.failed_jobs:
        extra.append(f"{row.failed_jobs} failed")
    return f"{row.seeds} ({', '.join(extra)})" if extra else str(row.seeds)


def spec_frame(spec: Mapping[str, Any]) -> pd.DataFrame:
    """The normalised spec flattened to (field, value) rows: `architecture.backbone`, ...

    >>> spec_frame({"name": "x", "optimizer": {"name": "adam", "lr": 0.001}}).values.tolist()
    [['name', 'x'], ['optimizer.name', 'adam'], ['optimizer.lr', '0.001']]
    """
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list):
            rows.append((prefix, ", ".join(str(v) for v in value)))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            rows.append((prefix, "" if value is None else text))

    walk("", dict(spec))
    return pd.DataFrame(rows, columns=["field", "value"])


def jobs_frame(jobs: Iterable[JobRow], states: Iterable[str] | None = None) -> pd.DataFrame:
    """The queue as a table, newest job first; `states` keeps only those states.

    `reason` is the first line of a failed job's error; the page shows its last line.
    """
    wanted = None if states is None else {str(s) for s in states}
    records = [
        {
            "job": job.id,
            "submission": job.name,
            "benchmark": job.benchmark,
            "campaign": job.campaign,
            "seed": job.seed,
            "state": str(job.state),
            "attempts": job.attempts,
            "created": job.created_at,
            "started": job.started_at,
            "finished": job.finished_at,
            "reason": first_line(job.error or ""),
        }
        for job in jobs
        if wanted is None or str(job.state) in wanted
    ]
    columns = ["job", "submission", "benchmark", "campaign", "seed", "state", "attempts",
               "created", "started", "finished", "reason"]  # fmt: skip
    frame = pd.DataFrame.from_records(records, columns=columns)
    return frame.sort_values("job", ascending=False).reset_index(drop=True)


def state_counts(jobs: Iterable[JobRow]) -> dict[str, int]:
    """Jobs per state, every state listed (zero when none), in lifecycle order."""
    counts = Counter(str(job.state) for job in jobs)
    return {state.value: counts.get(state.value, 0) for state in JobState}


def failure_reasons(jobs: Iterable[JobRow]) -> pd.DataFrame:
    """Failed and diverged jobs grouped by the first line of their error, most frequent first."""
    failed = {JobState.FAILED.value, JobState.DIVERGED.value}
    counts = Counter(
        (str(job.state), first_line(job.error or "")) for job in jobs if str(job.state) in failed
    )
    frame = pd.DataFrame(
        [(state, reason, n) for (state, reason), n in counts.items()],
        columns=["state", "reason", "jobs"],
    )
    return frame.sort_values(["jobs", "reason"], ascending=[False, True]).reset_index(drop=True)


FINISHED = frozenset(s.value for s in FINISHED_STATES)


@dataclass(frozen=True)
class Sample:
    """Values of one quantity over a submission's seeds."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / self.n if self.values else None

    @property
    def half_width(self) -> float | None:
        if self.n < 2:
            return None
        m = sum(self.values) / self.n
        std = math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))
        return stats.half_width(std, self.n)


DELTA_M_QUANTITIES = DELTA_M_HEADERS


def seed_samples(
    results: Iterable[SeedResult], columns: Iterable[MetricColumn]
) -> dict[str, dict[int, float]]:
    """Per quantity (Δm in each convention, then every metric): {seed: value} over one
    submission's seeds (`db.queries.seed_results`), to be paired by seed."""
    results = list(results)
    out: dict[str, dict[int, float]] = {
        DELTA_M_QUANTITIES[PER_TASK]: {
            r.seed: r.per_task for r in results if r.per_task is not None
        },
        DELTA_M_QUANTITIES[PER_METRIC]: {
            r.seed: r.per_metric for r in results if r.per_metric is not None
        },
    }
    for c in columns:
        out[metric_header(c.task, c.metric, c.higher_is_better)] = {
            r.seed: r.metrics[(c.task, c.metric)]
            for r in results
            if (c.task, c.metric) in r.metrics
        }
    return out


IMPROVEMENT = "P(improvement)"
SIGNIFICANT = "significant"


def comparison_frames(
    names: Sequence[str],
    values_by_submission: Sequence[Mapping[str, Mapping[int, float]]],
    better: Mapping[str, bool],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Submissions side by side, and each one's paired differences from the first.

    The first table has one row per quantity and, per submission,
    'mean ± half-width of the 95% t interval (n seeds)'.  The second has one
    row per (quantity, submission other than the first), from `paired.compare`
    of the first's values with the other's, matched by seed: the mean
    difference (other − first; paired over the shared seeds, else Welch's
    difference of means), the half-width of its 95% interval, the test, its
    two-sided p, the probability of improvement (the share of matched seeds
    on which the other is better, ties counting 1/2), whether the difference
    is significant (its interval excludes 0), and the verdict by the
    quantity's direction (`better`: higher is better?).  A quantity without a
    direction is compared as higher-is-better, its verdict 'different' or not.
    """
    quantities = list(dict.fromkeys(q for v in values_by_submission for q in v))
    side = pd.DataFrame({"quantity": quantities})
    for name, found in zip(names, values_by_submission, strict=True):
        side[name] = [_summary(q, found.get(q, {})) for q in quantities]
    reference = names[0]
    columns = ["quantity", "submission", f"difference vs {reference}", CI, "test", "p",
               IMPROVEMENT, SIGNIFICANT, f"verdict vs {reference}"]  # fmt: skip
    records = []
    first = values_by_submission[0]
    for name, found in zip(names[1:], values_by_submission[1:], strict=True):
        for q in quantities:
            a, b = first.get(q, {}), found.get(q, {})
            if not a or not b:
                continue
            difference = paired.compare(a, b, better.get(q, True))
            verdict = difference.verdict()
            if q not in better and difference.significant:
                verdict = "significantly different"
            records.append(
                dict(zip(columns, [
                    q, name, difference.difference,
                    None if math.isnan(difference.half_width) else difference.half_width,
                    difference.describe(), None if math.isnan(difference.p) else difference.p,
                    difference.improvement, difference.significant, verdict,
                ], strict=True))
            )  # fmt: skip
    frame = pd.DataFrame.from_records(records, columns=columns)
    for column in (f"difference vs {reference}", CI, "p", IMPROVEMENT):
        frame[column] = frame[column].astype("float64")
    frame[SIGNIFICANT] = frame[SIGNIFICANT].astype(bool)
    return side, frame


def _summary(quantity: str, values: Mapping[int, float]) -> str:
    """'mean ± half-width (n=…)': Δm in signed percent, metrics to 4 significant digits."""
    sample = Sample(tuple(values.values()))
    if sample.mean is None:
        return ""
    half = sample.half_width
    if quantity.startswith(DELTA_M):
        text = format_mean_std(sample.mean, half)
    else:
        text = f"{sample.mean:.4g}" + ("" if half is None else f" ± {half:.2g}")
    return f"{text} (n={sample.n})"
