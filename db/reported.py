"""Reported (paper) results: storing them, and their Δm against the reported baseline.

A reported result is one value per metric from a paper, with its citation
(`ReportedResult`).  It has no runs, so no seeds and no interval.  Its Δm is
`db.delta_m.delta_m` (the one formula, both conventions) of its values
against the reported baseline (`ReportedBaseline`) of the same benchmark,
protocol version and backbone, over the metrics the result reports; the
platform's runs keep their own, run-based baselines.  The two are never
mixed: a paper's values are compared with a paper's baseline.

Validation against a benchmark's tasks and metrics lives with the importer
(`submissions.reported`); this module takes checked entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.delta_m import PER_METRIC, PER_TASK, delta_m
from db.models import ReportedBaseline, ReportedMetricValue, ReportedResult, Role, utcnow

WEB_SCHEMES = ("http", "https")


def web_url(url: str) -> bool:
    r"""True for an absolute http(s) address with a host, and nothing a browser would bend.

    A reported result's link is a paper's page: any other scheme (`javascript:`,
    `data:`, `file:`) would run or open something on the visitor's side.
    Whitespace and control characters are refused outright: browsers drop some
    of them inside a scheme (`java\tscript:`).

    >>> [web_url(u) for u in ("https://arxiv.org/abs/1", "HTTP://x.org", "javascript:alert(1)",
    ...  "java\tscript:x", "//x.org/a", "https:///path", " https://x.org", "")]
    [True, True, False, False, False, False, False, False]
    """
    if not url or any(c.isspace() or not c.isprintable() for c in url):
        return False
    parts = urlsplit(url)
    return parts.scheme.lower() in WEB_SCHEMES and bool(parts.hostname)


@dataclass(frozen=True)
class ReportedValue:
    task: str
    metric: str
    value: float
    higher_is_better: bool
    position: int


@dataclass(frozen=True)
class ReportedEntry:
    """One checked entry of a reported-results file."""

    benchmark: str
    protocol_version: int
    name: str
    architecture: str
    weighting: str
    backbone: str
    role: Role
    citation: str
    url: str = ""
    note: str = ""
    values: tuple[ReportedValue, ...] = field(default_factory=tuple)
    source_file: str = ""

    @property
    def key(self) -> tuple[str, int, str, str]:
        """What makes an entry the same entry on re-import."""
        return (self.benchmark, self.protocol_version, self.name, self.citation)


@dataclass(frozen=True)
class StoredReported:
    reported_id: int
    name: str
    outcome: str  # "stored", "updated" or "unchanged"
    baseline_of: str | None  # "benchmark vN backbone" when designated the reported baseline


def _fields(entry: ReportedEntry) -> dict[str, Any]:
    return {
        "architecture": entry.architecture,
        "weighting": entry.weighting,
        "backbone": entry.backbone,
        "role": entry.role,
        "url": entry.url,
        "note": entry.note,
    }


def _same(row: ReportedResult, entry: ReportedEntry) -> bool:
    values = {(v.task, v.metric, v.value, v.higher_is_better, v.position) for v in entry.values}
    stored = {
        (m.task, m.metric, m.value, m.higher_is_better, m.position) for m in row.metric_values
    }
    return values == stored and all(getattr(row, k) == v for k, v in _fields(entry).items())


def store_reported(session: Session, entries: Sequence[ReportedEntry]) -> list[StoredReported]:
    """Insert or update `entries` (matched on benchmark, version, name, citation).

    An entry equal to the stored one is left alone ("unchanged"), so importing
    a file twice changes nothing.  A `baseline` entry becomes the reported
    baseline of its (benchmark, version, backbone), replacing a former one; a
    stored baseline that comes back as a `method` stops being the baseline.
    The caller's transaction makes it all or nothing.
    """
    out = []
    for entry in entries:
        row = session.scalars(
            select(ReportedResult).where(
                ReportedResult.benchmark == entry.benchmark,
                ReportedResult.protocol_version == entry.protocol_version,
                ReportedResult.name == entry.name,
                ReportedResult.citation == entry.citation,
            )
        ).one_or_none()
        if row is None:
            row = ReportedResult(
                benchmark=entry.benchmark,
                protocol_version=entry.protocol_version,
                name=entry.name,
                citation=entry.citation,
                source_file=entry.source_file,
                **_fields(entry),
            )
            session.add(row)
            outcome = "stored"
        elif _same(row, entry):
            outcome = "unchanged"
        else:
            for key, value in _fields(entry).items():
                setattr(row, key, value)
            row.source_file = entry.source_file
            row.imported_at = utcnow()
            row.metric_values.clear()
            session.flush()  # the old values go before the new ones (same primary keys)
            outcome = "updated"
        if outcome != "unchanged":
            row.metric_values.extend(
                ReportedMetricValue(
                    task=v.task,
                    metric=v.metric,
                    value=v.value,
                    higher_is_better=v.higher_is_better,
                    position=v.position,
                )
                for v in entry.values
            )
        session.flush()
        out.append(StoredReported(row.id, row.name, outcome, _designate(session, row, entry.role)))
    return out


def _designate(session: Session, row: ReportedResult, role: Role) -> str | None:
    key = (row.benchmark, row.protocol_version, row.backbone)
    current = session.get(ReportedBaseline, key)
    if role is Role.BASELINE:
        if current is None:
            session.add(
                ReportedBaseline(
                    benchmark=row.benchmark,
                    protocol_version=row.protocol_version,
                    backbone=row.backbone,
                    reported_id=row.id,
                )
            )
        else:
            current.reported_id = row.id
        session.flush()
        return f"{row.benchmark} v{row.protocol_version} {row.backbone}"
    if current is not None and current.reported_id == row.id:
        session.delete(current)
        session.flush()
    return None


# ---------------------------------------------------------------------------
# Reading


def fingerprint(session: Session) -> tuple[Any, ...]:
    """Moves whenever a reported result is stored, changed or (un)designated (site caching)."""
    counts = session.execute(
        select(
            select(func.count(ReportedResult.id)).scalar_subquery(),
            select(func.max(ReportedResult.id)).scalar_subquery(),
            select(func.max(ReportedResult.imported_at)).scalar_subquery(),
        )
    ).one()
    baselines = session.execute(
        select(
            ReportedBaseline.benchmark,
            ReportedBaseline.protocol_version,
            ReportedBaseline.backbone,
            ReportedBaseline.reported_id,
        ).order_by(
            ReportedBaseline.benchmark, ReportedBaseline.protocol_version, ReportedBaseline.backbone
        )
    ).all()
    return (tuple(str(c) for c in counts), tuple(tuple(b) for b in baselines))


def benchmark_versions(session: Session) -> set[tuple[str, int]]:
    """(benchmark, protocol version) pairs that have reported results."""
    rows = session.execute(
        select(ReportedResult.benchmark, ReportedResult.protocol_version).distinct()
    )
    return {(b, int(v)) for b, v in rows}


Metrics = dict[str, dict[str, float]]
Directions = dict[str, dict[str, bool]]


def reported_delta_m(
    metrics: Mapping[str, Mapping[str, float]],
    directions: Mapping[str, Mapping[str, bool]],
    baseline: Mapping[str, Mapping[str, float]] | None,
) -> tuple[dict[str, float | None], str]:
    """Δm of a reported result against its reported baseline: ({convention: value}, why not).

    Over the metrics the result reports (`directions`), by `db.delta_m.delta_m`.
    Without a baseline, or when it lacks one of those metrics or has a zero
    value, both are None and the second element says why.
    """
    none: dict[str, float | None] = {PER_TASK: None, PER_METRIC: None}
    if baseline is None:
        return none, "no reported baseline for this benchmark version and backbone"
    try:
        d = delta_m(metrics, baseline, directions)
    except ValueError as e:
        return none, str(e)
    return {PER_TASK: d.per_task, PER_METRIC: d.per_metric}, ""


def reported_results(session: Session, benchmark: str, version: int) -> list[dict[str, Any]]:
    """Every reported result of a benchmark version, with Δm in both conventions.

    Keys: `reported_id`, identity (`name`, `architecture`, `weighting`,
    `backbone`, `role`), `citation`, `url`, `note`, `metrics` ({(task, metric):
    value}), `columns` ([(task, metric, higher_is_better, position)]),
    `{convention}` (Δm or None), `delta_m_note` (why there is none),
    `baseline_reported_id` and `baseline_name` (the reported baseline used).
    """
    rows = session.scalars(
        select(ReportedResult)
        .where(ReportedResult.benchmark == benchmark, ReportedResult.protocol_version == version)
        .order_by(ReportedResult.id)
    ).all()
    designated: dict[str, int] = {
        backbone: reported_id
        for backbone, reported_id in session.execute(
            select(ReportedBaseline.backbone, ReportedBaseline.reported_id).where(
                ReportedBaseline.benchmark == benchmark,
                ReportedBaseline.protocol_version == version,
            )
        )
    }
    nested: dict[int, Metrics] = {}
    for row in rows:
        nested[row.id] = {}
        for m in row.metric_values:
            nested[row.id].setdefault(m.task, {})[m.metric] = m.value
    names = {row.id: row.name for row in rows}
    out = []
    for row in rows:
        values = sorted(row.metric_values, key=lambda m: (m.task, m.position))
        directions: Directions = {}
        for m in values:
            directions.setdefault(m.task, {})[m.metric] = m.higher_is_better
        baseline_id = designated.get(row.backbone)
        deltas, why = reported_delta_m(
            nested[row.id], directions, None if baseline_id is None else nested.get(baseline_id)
        )
        out.append(
            {
                "reported_id": row.id,
                "name": row.name,
                "architecture": row.architecture,
                "weighting": row.weighting,
                "backbone": row.backbone,
                "role": row.role,
                "citation": row.citation,
                "url": row.url,
                "note": row.note,
                "metrics": {(m.task, m.metric): m.value for m in values},
                "columns": [(m.task, m.metric, m.higher_is_better, m.position) for m in values],
                **deltas,
                "delta_m_note": why,
                "baseline_reported_id": baseline_id,
                "baseline_name": None if baseline_id is None else names.get(baseline_id),
            }
        )
    return out


__all__ = [
    "ReportedEntry",
    "ReportedValue",
    "StoredReported",
    "benchmark_versions",
    "fingerprint",
    "reported_delta_m",
    "reported_results",
    "store_reported",
    "web_url",
]
