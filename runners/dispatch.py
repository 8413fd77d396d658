"""Ray dispatch: queued jobs -> Ray tasks -> results in the database.

Each job is one Ray task asking for its protocol's resources, so jobs run in
parallel up to the cluster's capacity and Ray places them.  The dispatcher
(the driver) is the only writer: it records each result in its own
transaction as soon as that job finishes.  A job that raises is recorded as
failed with its error, one whose loss stops being finite as diverged; the
others go on.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
import torch

from db.models import Job, JobState
from db.queue import Outcome, claim_jobs, record_failure, record_success
from db.session import session_factory
from runners import provenance
from runners.benchmarks import BENCHMARKS
from runners.train import Diverged, RunResult, train

# Locally we start a small Ray: no dashboard, a modest object store (jobs
# exchange specs and metrics, not tensors).
LOCAL_RAY = {"include_dashboard": False, "object_store_memory": 256 * 1024**2}


@dataclass(frozen=True)
class JobReport:
    """What the dispatcher tells its caller after each job."""

    job_id: int
    submission: str
    seed: int
    state: JobState
    error: str | None = None


@dataclass
class RunSummary:
    reports: list[JobReport] = field(default_factory=list)
    data_s: float = 0.0  # rendering/caching benchmark data
    ray_start_s: float = 0.0  # starting or attaching to Ray
    training_s: float = 0.0  # first job submitted -> last result stored


def job_spec(payload: object) -> dict[str, Any]:
    """The spec of a job from its JSON text; TypeError for anything but a JSON object in a str."""
    if not isinstance(payload, str):
        raise TypeError(f"a job's spec travels as a JSON string, got {type(payload).__name__}")
    spec = json.loads(payload)
    if not isinstance(spec, dict):
        raise TypeError(f"a job's spec is a JSON object, got {type(spec).__name__}")
    return spec


def execute(spec_json: str, seed: int, cpus: float, gpus: float) -> dict[str, Any]:
    """Run one job in a Ray worker; never raises, reports the outcome as data.

    Ray pickles a task's arguments.  So that nothing that came from a submitter
    is ever pickled, the spec travels as JSON text, parsed here with json.loads;
    the other arguments are numbers of our own.
    """
    try:
        spec = job_spec(spec_json)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if any(isinstance(n, bool) or not isinstance(n, int | float) for n in (cpus, gpus)):
            raise TypeError("cpus and gpus must be numbers")
        torch.set_num_threads(max(1, int(cpus)))
        device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
        result = train(spec, seed, device=device)
    except Diverged as e:
        return {"state": JobState.DIVERGED.value, "error": str(e)}
    except Exception as e:
        detail = traceback.format_exc(limit=-3)
        return {"state": JobState.FAILED.value, "error": f"{type(e).__name__}: {e}\n{detail}"}
    return {"state": JobState.SUCCEEDED.value, "result": result}


def ensure_ray(address: str | None) -> None:
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(**LOCAL_RAY, log_to_driver=False)  # type: ignore[arg-type]


def prepare_data(jobs: list[Job]) -> None:
    """Render/cache each benchmark's data once here rather than in every worker at once."""
    for name, version in {(j.submission.benchmark, j.submission.protocol_version) for j in jobs}:
        benchmark = BENCHMARKS.get(name)
        protocol = benchmark.protocol(version)
        for split in ("train", "test"):
            benchmark.load(split, protocol)


def run_jobs(
    url: str | None = None,
    address: str | None = None,
    max_jobs: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_report: Callable[[JobReport], None] | None = None,
) -> RunSummary:
    """Claim queued jobs, run them on Ray, record every outcome as it arrives."""
    summary = RunSummary()
    factory = session_factory(url)
    with factory.begin() as session:
        jobs = claim_jobs(session, max_jobs)
        work = [(job.id, job.submission.name, job.seed, dict(job.submission.spec)) for job in jobs]
        started = time.perf_counter()
        if jobs:
            prepare_data(jobs)
        summary.data_s = time.perf_counter() - started
    if on_start is not None:
        on_start(len(work))
    if not work:
        return summary
    started = time.perf_counter()
    ensure_ray(address)
    summary.ray_start_s = time.perf_counter() - started
    started = time.perf_counter()
    code_version = provenance.code_version()
    remote = ray.remote(execute)
    pending: dict[Any, tuple[int, str, int, dict[str, Any]]] = {}
    for item in work:
        spec = item[3]
        protocol = BENCHMARKS.get(spec["benchmark"]).protocol(spec["protocol_version"])
        res = protocol.resources
        ref = remote.options(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=1).remote(
            json.dumps(spec), item[2], res.cpus, res.gpus
        )
        pending[ref] = item
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job_id, name, seed, spec = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker itself died
                    outcome = {"state": JobState.FAILED.value, "error": f"{type(e).__name__}: {e}"}
                report = record(factory, job_id, name, seed, spec, outcome, code_version)
                summary.reports.append(report)
                if on_report is not None:
                    on_report(report)
    finally:
        # Interrupted: unfinished jobs go back to the queue, none is lost.
        if pending:
            with factory.begin() as session:
                for job_id, *_ in pending.values():
                    job = session.get(Job, job_id)
                    if job is not None and job.state == JobState.RUNNING:
                        job.state = JobState.QUEUED
            for ref in pending:
                ray.cancel(ref, force=True)
    summary.training_s = time.perf_counter() - started
    return summary


def record(
    factory: Any,
    job_id: int,
    name: str,
    seed: int,
    spec: dict[str, Any],
    outcome: dict[str, Any],
    code_version: str,
) -> JobReport:
    state = JobState(outcome["state"])
    with factory.begin() as session:
        job = session.get(Job, job_id)
        if state == JobState.SUCCEEDED:
            result: RunResult = outcome["result"]
            benchmark = BENCHMARKS.get(spec["benchmark"])
            record_success(
                session,
                job,
                Outcome(
                    metrics=result.metrics,
                    directions=benchmark.metric_directions,
                    curves=[(c.epoch, c.task, c.name, c.value) for c in result.curves],
                    provenance={
                        "code_version": code_version,
                        "torch_version": result.library_versions.get("torch", ""),
                        "python_version": result.library_versions.get("python", ""),
                        "ray_version": ray.__version__,
                        "device": result.device,
                        "wall_time_s": result.wall_time_s,
                        "parameter_count": result.parameter_count,
                        "flops": result.flops,
                    },
                ),
            )
        else:
            record_failure(session, job, state, outcome.get("error") or "unknown error")
    return JobReport(job_id, name, seed, state, outcome.get("error"))


__all__ = ["JobReport", "RunSummary", "execute", "run_jobs"]
