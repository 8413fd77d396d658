"""Validating and storing spec files; submitters and their quota; the single-task baselines."""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Role, Submission, utcnow
from db.queue import (
    campaign,
    designate_baseline,
    queue_jobs,
    store_submission,
    submissions_since,
)
from runners.benchmarks import BENCHMARKS
from runners.models import ARCHITECTURES
from submissions import loader
from submissions.spec import SPEC_VERSION, ValidSpec, validate
from submissions.structure import problem_lines


@dataclass(frozen=True)
class Checked:
    """A spec file after validation: either `spec` or `problems`."""

    path: Path
    source: str
    spec: ValidSpec | None
    problems: list[loader.SpecError]

    def lines(self) -> list[str]:
        """One line per problem, naming the file and the field."""
        return problem_lines(self.path, self.problems)


def check_file(path: Path) -> Checked:
    try:
        document, source = loader.read(path)
    except loader.SpecError as e:
        return Checked(path, "", None, [e])
    spec, problems = validate(document)
    return Checked(path, source, spec, problems)


SUBMITTER_VARIABLE = "MTLB_SUBMITTER"
QUOTA_VARIABLE = "MTLB_SUBMISSIONS_PER_DAY"
QUOTA_WINDOW = timedelta(hours=24)


class SubmitError(Exception):
    """A problem with a submit command as a whole (its submitter, the quota): one line."""


class QuotaExceeded(SubmitError):
    def __init__(self, submitter: str, quota: int) -> None:
        super().__init__(
            f"submitter {loader.shown(submitter)} has reached the limit of {quota} new"
            f" submission(s) per 24 hours (set by the operator: {QUOTA_VARIABLE})"
        )


def resolve_submitter(option: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """--submitter, else $MTLB_SUBMITTER, else the OS user name (else `uid-N`).

    A submitter is 1 to 100 printable characters; SubmitError otherwise.
    """
    if option is not None:
        name, source = option, "--submitter"
    elif environ.get(SUBMITTER_VARIABLE):
        name, source = environ[SUBMITTER_VARIABLE], f"${SUBMITTER_VARIABLE}"
    else:
        try:
            name, source = getpass.getuser(), "the user name"
        except (OSError, KeyError):  # no user name (a container run with an arbitrary uid)
            if not hasattr(os, "getuid"):
                raise SubmitError(
                    f"cannot tell who submits: pass --submitter NAME or set {SUBMITTER_VARIABLE}"
                ) from None
            name, source = f"uid-{os.getuid()}", "the user id"
    if not (1 <= len(name) <= 100 and name.isprintable() and name.strip()):
        raise SubmitError(
            f"{source}: a submitter is 1 to 100 printable characters, got {loader.shown(name)}"
        )
    return name


def quota_from_env(environ: Mapping[str, str] = os.environ) -> int | None:
    """New submissions allowed per submitter per 24 hours; None (unset or 0) = unlimited."""
    raw = environ.get(QUOTA_VARIABLE, "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise SubmitError(
            f"{QUOTA_VARIABLE} must be a whole number of submissions per day"
            f" (0 or unset: unlimited), got {loader.shown(raw)}"
        )
    return int(raw) or None


@dataclass(frozen=True)
class Stored:
    """What `store` did: `created` a submission, or found it already submitted
    (same spec), or found one with an `identical_setup` (same training set-up
    under another name, description or authors), which is returned instead."""

    submission: Submission
    submission_id: int
    name: str
    spec_hash: str
    created: bool
    jobs_queued: int
    identical_setup: bool = False

    def describe(self) -> str:
        """One line for the submitter."""
        if self.identical_setup:
            return (
                f"identical training set-up to submission #{self.submission_id}"
                f" ({loader.printable(self.name)}); not stored, not trained again"
            )
        what = "stored" if self.created else "already submitted"
        return (
            f"{what} as #{self.submission_id} {loader.printable(self.name)}"
            f" ({self.spec_hash[:12]}); {self.jobs_queued} job(s) queued"
        )


def store(
    session: Session,
    spec: ValidSpec,
    source: str,
    submitter: str = "",
    quota: int | None = None,
    role: Role | None = None,
) -> Stored:
    """Store a valid spec and queue one job per protocol seed (idempotent).

    `role`: by default a baseline for a single-task architecture, else a method.

    A spec whose training set-up is already stored under another name,
    description or authors is not stored: the stored submission is returned
    (`identical_setup`), and nothing is queued.  A new submission over
    `submitter`'s quota raises QuotaExceeded; the caller's transaction then
    stores nothing.  A duplicate never counts.
    """
    normalised = spec.normalised
    if session.scalar(select(Submission.id).where(Submission.spec_hash == spec.spec_hash)) is None:
        same = session.scalar(
            select(Submission)
            .where(Submission.setup_hash == spec.setup_hash)
            .order_by(Submission.id)
            .limit(1)
        )
        if same is not None:
            return Stored(same, same.id, same.name, same.spec_hash, False, 0, identical_setup=True)
    benchmark = BENCHMARKS.get(normalised["benchmark"])
    protocol = benchmark.protocol(normalised["protocol_version"])
    single_task = ARCHITECTURES.get(normalised["architecture"]["name"]).single_task
    submission, created = store_submission(
        session,
        spec=normalised,
        spec_hash=spec.spec_hash,
        source=source,
        role=role or (Role.BASELINE if single_task else Role.METHOD),
        submitter=submitter,
    )
    if created:
        submission.setup_hash = spec.setup_hash
    # The new submission is flushed, so it counts itself.
    if (
        created
        and quota is not None
        and submissions_since(session, submitter, utcnow() - QUOTA_WINDOW) > quota
    ):
        raise QuotaExceeded(submitter, quota)
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
        # The protocol's schedule (NYUv2: StepLR(100, 0.5)), when it has one.
        **(
            {"scheduler": dict(protocol.baseline_scheduler)}
            if protocol.baseline_scheduler is not None
            else {}
        ),
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
