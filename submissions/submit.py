"""Validating and storing spec files; the single-task baselines of a benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from db.models import Role, Submission
from db.queue import campaign, designate_baseline, queue_jobs, store_submission
from runners.benchmarks import BENCHMARKS
from runners.models import ARCHITECTURES
from submissions import loader
from submissions.spec import SPEC_VERSION, ValidSpec, validate


@dataclass(frozen=True)
class Checked:
    """A spec file after validation: either `spec` or `problems`."""

    path: Path
    source: str
    spec: ValidSpec | None
    problems: list[loader.SpecError]

    def lines(self) -> list[str]:
        """One line per problem, naming the file and the field."""
        return [
            f"{self.path}: {p.field}: {p.message}" if p.field else f"{self.path}: {p.message}"
            for p in self.problems
        ]


def check_file(path: Path) -> Checked:
    try:
        document, source = loader.read(path)
    except loader.SpecError as e:
        return Checked(path, "", None, [e])
    spec, problems = validate(document)
    return Checked(path, source, spec, problems)


@dataclass(frozen=True)
class Stored:
    submission: Submission
    submission_id: int
    name: str
    spec_hash: str
    created: bool
    jobs_queued: int


def store(session: Session, spec: ValidSpec, source: str) -> Stored:
    """Store a valid spec and queue one job per protocol seed (idempotent)."""
    normalised = spec.normalised
    benchmark = BENCHMARKS.get(normalised["benchmark"])
    protocol = benchmark.protocol(normalised["protocol_version"])
    single_task = ARCHITECTURES.get(normalised["architecture"]["name"]).single_task
    submission, created = store_submission(
        session,
        spec=normalised,
        spec_hash=spec.spec_hash,
        source=source,
        role=Role.BASELINE if single_task else Role.METHOD,
    )
    jobs = queue_jobs(session, submission, protocol.seeds, campaign(session))
    return Stored(
        submission, submission.id, submission.name, submission.spec_hash, created, len(jobs)
    )


def baseline_document(benchmark_name: str, version: int, backbone: str) -> dict[str, Any]:
    """The single-task baseline spec of a benchmark version and backbone.

    One network per task (architecture `single-task`), trained with the
    protocol's baseline optimiser.  `submissions/examples/` carries the same
    spec as a file; a test keeps the two identical.
    """
    protocol = BENCHMARKS.get(benchmark_name).protocol(version)
    return {
        "spec_version": SPEC_VERSION,
        "name": f"stl-{backbone}",
        "description": f"Single-task baseline: one {backbone} network per task.",
        "authors": ["MTL Leaderboard"],
        "benchmark": benchmark_name,
        "protocol_version": version,
        "architecture": {"name": "single-task", "backbone": backbone},
        "weighting": {"name": "equal"},
        "optimizer": dict(protocol.baseline_optimizer),
    }


def queue_baselines(session: Session, benchmark_name: str, version: int | None) -> list[Stored]:
    """Store, designate and queue the baseline of every backbone the protocol allows."""
    benchmark = BENCHMARKS.get(benchmark_name)
    version = version or benchmark.latest_version
    stored = []
    for backbone in benchmark.protocol(version).backbones:
        document = baseline_document(benchmark_name, version, backbone)
        spec, problems = validate(document)
        if spec is None:  # a protocol whose own baseline is invalid is a bug of ours
            raise RuntimeError("; ".join(str(p) for p in problems))
        result = store(session, spec, yaml.safe_dump(document, sort_keys=False))
        designate_baseline(session, result.submission)
        stored.append(result)
    return stored
