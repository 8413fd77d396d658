"""The site's queries, cached per (database URL, data version, arguments).

Every page run reads the data version uncached (`version`, see
`db.queries.DataVersion`: a handful of counts) and passes the part a query
depends on to the cached function: `results` (submissions, runs, baselines)
to the costly ones, `jobs` (job states) to the job counts.  A result that
lands shows on the next page run, with no TTL to wait for, and a job that is
merely claimed does not rerun the Δm queries.  Entries of older versions age
out (`max_entries`, `ttl`).

Reads go through `db.session.read_only_session_factory`: the site cannot
write, nor even create the schema.  Results are typed rows of `db.queries` (pickled).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from db import queries
from db.models import Role
from db.queries import (
    DataVersion,
    JobRow,
    MetricColumn,
    RankingRow,
    ReportedRow,
    RunDelta,
    RunRow,
    SeedResult,
    StoredSpec,
)
from db.session import read_only_session_factory
from db.tunings import tuning_of
from leaderboard import paired, tables

T = TypeVar("T")
Version = DataVersion
Part = tuple[Any, ...]  # one part of a DataVersion

# Enough for every page of a few benchmark versions; entries of old data versions age out.
cached = st.cache_data(show_spinner=False, max_entries=64, ttl=3600)


def _read(url: str, query: Callable[..., T], *args: Any) -> T:
    # A session that is closed, never committed: the site only reads.
    with read_only_session_factory(url)() as session:
        return query(session, *args)


def version(url: str) -> DataVersion:
    """The data version, read on every page run (never cached)."""
    return _read(url, queries.data_version)


@cached
def benchmark_versions(url: str, results: Part) -> list[tuple[str, int]]:
    return _read(url, queries.benchmark_versions)


@cached
def submission_index(url: str, results: Part) -> list[tuple[int, str, str, int]]:
    return _read(url, queries.submission_index)


@cached
def metric_columns(
    url: str, results: Part, benchmark: str, protocol_version: int
) -> list[MetricColumn]:
    return _read(url, queries.metric_columns, benchmark, protocol_version)


@cached
def ranking_results(
    url: str, results: Part, benchmark: str, protocol_version: int
) -> list[RankingRow]:
    return _read(url, queries.ranking_results, benchmark, protocol_version)


@cached
def job_summary(
    url: str, jobs: Part, benchmark: str, protocol_version: int
) -> dict[int, tuple[int, int]]:
    return _read(url, queries.job_summary, benchmark, protocol_version)


def ranking(url: str, data: DataVersion, benchmark: str, protocol_version: int) -> list[RankingRow]:
    """`db.queries.ranking`, from its two cached parts."""
    return queries.with_jobs(
        ranking_results(url, data.results, benchmark, protocol_version),
        job_summary(url, data.jobs, benchmark, protocol_version),
    )


@cached
def placements(
    url: str, results: Part, benchmark: str, protocol_version: int, convention: str
) -> dict[int, paired.Placement]:
    """`tables.placements` of the ranking: every pair of submissions tested once per data
    version and convention, not on every page run."""
    # The scalarisation front's points are not entries: they are not ranked.
    rows = [
        r for r in ranking_results(url, results, benchmark, protocol_version)
        if r.role != Role.FRONT
    ]  # fmt: skip
    return tables.placements(rows, convention)


@cached
def seed_results(
    url: str, results: Part, benchmark: str, protocol_version: int, submission_ids: tuple[int, ...]
) -> list[SeedResult]:
    """Per-seed Δm and metrics of some submissions' original campaigns, to pair by seed."""
    return _read(url, queries.seed_results, benchmark, protocol_version, submission_ids)


@cached
def reported(url: str, results: Part, benchmark: str, protocol_version: int) -> list[ReportedRow]:
    """Reported (paper) results of a benchmark version, with Δm against the reported baseline."""
    return _read(url, queries.reported_rows, benchmark, protocol_version)


@cached
def tuning(url: str, results: Part, submission_id: int) -> dict[str, Any] | None:
    """A submission's tuning (`db.tunings.tuning_of`), or None if it was not tuned."""
    return _read(url, tuning_of, submission_id)


@cached
def task_deltas(
    url: str, results: Part, benchmark: str, protocol_version: int, submission_ids: tuple[int, ...]
) -> list[tuple[int, str, float]]:
    return _read(url, queries.task_deltas, benchmark, protocol_version, submission_ids)


@cached
def submission_runs(
    url: str, results: Part, submission_id: int, protocol_version: int | None = None
) -> list[RunRow]:
    return _read(url, queries.submission_runs, submission_id, protocol_version)


@cached
def submission_deltas(
    url: str, results: Part, benchmark: str, protocol_version: int, submission_id: int
) -> list[RunDelta]:
    """Δm of every run of one submission under a version, every campaign's."""
    return _read(url, queries.run_deltas, benchmark, protocol_version, submission_id)


@cached
def curves(url: str, results: Part, submission_id: int) -> list[tuple[int, int, str, str, float]]:
    return _read(url, queries.curves, submission_id)


@cached
def jobs(url: str, jobs: Part, submission_id: int | None = None) -> list[JobRow]:
    return _read(url, queries.jobs, submission_id)


@cached
def spec(url: str, results: Part, submission_id: int) -> StoredSpec | None:
    """The normalised spec and the file as submitted; None for an unknown submission."""
    return _read(url, queries.stored_spec, submission_id)
