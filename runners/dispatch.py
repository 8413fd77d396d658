"""Ray dispatch: queued jobs -> Ray tasks -> results in the database.

Each job is one Ray task asking for its protocol's resources, so jobs run in
parallel up to the cluster's capacity and Ray places them.  The dispatcher
(the driver) is the only writer: it records each result in its own
transaction as soon as that job finishes.  A job that raises is recorded as
failed with its error, one whose loss stops being finite as diverged; the
others go on.

Fault tolerance: the dispatcher holds a lease on each job it claimed, renewed
while it runs (`LeaseKeeper`); a dead dispatcher's jobs are requeued once their
leases expire, and a result is recorded only under a lease still held.  A
node's death is Ray's business: the task is retried (max_retries=1) and resumes
from the job's checkpoint on shared storage (`storage_root`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import ray
import torch
from sqlalchemy.exc import IntegrityError

from db.models import Job, JobState
from db.queue import (
    DEFAULT_LEASE,
    Outcome,
    claim_jobs,
    held_job,
    job_version,
    record_failure,
    record_success,
    release_jobs,
    renew_leases,
    requeue_expired,
    trained_spec,
)
from db.session import session_factory
from runners import provenance, tuning
from runners.benchmarks import BENCHMARKS
from runners.benchmarks.base import Resources, data_root, gpu_share
from runners.train import Diverged, RunResult, train

# Locally we start a small Ray: no dashboard, a modest object store (jobs
# exchange specs and metrics, not tensors).
LOCAL_RAY = {"include_dashboard": False, "object_store_memory": 256 * 1024**2}
STORAGE_VARIABLE = "MTLB_STORAGE"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class JobReport:
    """What the dispatcher tells its caller after each job."""

    job_id: int
    submission: str
    seed: int
    state: JobState
    error: str | None = None
    # False when the outcome was not stored: the job's lease had passed to another attempt.
    recorded: bool = True


@dataclass
class RunSummary:
    reports: list[JobReport] = field(default_factory=list)
    data_s: float = 0.0  # rendering/caching benchmark data
    ray_start_s: float = 0.0  # starting or attaching to Ray
    tuning_s: float = 0.0  # tuning submissions with a search space (`runners.tuning`)
    training_s: float = 0.0  # first job submitted -> last result stored
    requeued: int = 0  # jobs of dead dispatchers put back in the queue on start


def job_spec(payload: object) -> dict[str, Any]:
    """The spec of a job from its JSON text; TypeError for anything but a JSON object in a str."""
    if not isinstance(payload, str):
        raise TypeError(f"a job's spec travels as a JSON string, got {type(payload).__name__}")
    spec = json.loads(payload)
    if not isinstance(spec, dict):
        raise TypeError(f"a job's spec is a JSON object, got {type(spec).__name__}")
    return spec


def execute(
    spec_json: str, seed: int, cpus: float, gpus: float, checkpoint: str | None = None
) -> dict[str, Any]:
    """Run one job in a Ray worker; never raises, reports the outcome as data.

    Ray pickles a task's arguments.  So that nothing that came from a submitter
    is ever pickled, the spec travels as JSON text, parsed here with json.loads;
    the other arguments are numbers and a path of our own.  `checkpoint`: the
    job's checkpoint file on shared storage; Ray's retry of the job (its node
    died) finds it there, on whichever node it lands, and resumes.
    """
    try:
        spec = job_spec(spec_json)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if any(isinstance(n, bool) or not isinstance(n, int | float) for n in (cpus, gpus)):
            raise TypeError("cpus and gpus must be numbers")
        torch.set_num_threads(max(1, int(cpus)))
        device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
        path = None if checkpoint is None else Path(checkpoint)
        result = train(spec, seed, device=device, checkpoint=path)
    except Diverged as e:
        return {"state": JobState.DIVERGED.value, "error": str(e)}
    except Exception as e:
        detail = traceback.format_exc(limit=-3)
        return {"state": JobState.FAILED.value, "error": f"{type(e).__name__}: {e}\n{detail}"}
    return {"state": JobState.SUCCEEDED.value, "result": result}


def job_resources(protocol: Resources, gpus_per_job: float | None = None) -> Resources:
    """A job's resources: its protocol's, with the operator's GPU share if one was given.

    `gpus_per_job` (`mtlb run --gpus-per-job 0.25`): each job (each worker of
    a data-parallel job) asks for that many GPUs instead, 0 for none.
    """
    if gpus_per_job is None:
        return protocol
    return dataclasses.replace(protocol, gpus=gpus_per_job)


def task_options(resources: Resources) -> dict[str, Any]:
    """The Ray options of a single-worker job's task.

    A fractional `num_gpus` is a share of one device: Ray packs tasks onto a
    GPU until their shares sum to 1 and sets CUDA_VISIBLE_DEVICES to that
    one device for each (tests/runners/test_gpu_share.py).
    """
    return {"num_cpus": resources.cpus, "num_gpus": resources.gpus, "max_retries": 1}


def ensure_ray(address: str | None) -> None:
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(**LOCAL_RAY, log_to_driver=False)  # type: ignore[arg-type]


def prepare_data(jobs: list[Job]) -> None:
    """Render/cache each benchmark's data once here rather than in every worker at once."""
    for name, version in {(j.submission.benchmark, job_version(j)) for j in jobs}:
        benchmark = BENCHMARKS.get(name)
        protocol = benchmark.protocol(version)
        for split in ("train", "test"):
            benchmark.load(split, protocol)


LEASE_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_lease(text: str) -> timedelta:
    """'90s', '10m', '1h' -> a timedelta of at least one second; ValueError otherwise.

    >>> parse_lease("10m"), parse_lease("90s")
    (datetime.timedelta(seconds=600), datetime.timedelta(seconds=90))
    """
    value = text.strip()
    number, unit = value[:-1], value[-1:]
    if unit not in LEASE_UNITS or not (number.isascii() and number.isdigit()) or int(number) == 0:
        raise ValueError(
            f"--lease: expected a positive duration such as 90s, 10m or 1h, got {text!r}"
        )
    return timedelta(seconds=int(number) * LEASE_UNITS[unit])


def dispatcher_id() -> str:
    """This dispatcher's name in job leases: host:pid:random (unique even across pid reuse)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def storage_root(storage: Path | None = None) -> Path:
    """Where jobs checkpoint: `storage`, else $MTLB_STORAGE, else <data root>/checkpoints.

    On a cluster it must be a path every node reaches (a shared file system).
    """
    chosen = storage or os.environ.get(STORAGE_VARIABLE) or data_root() / "checkpoints"
    return Path(chosen).resolve()


def job_key(spec_hash: str, seed: int, protocol_version: int, campaign: str) -> str:
    """The folder of a job's checkpoint: the same for every attempt of the job, on any node."""
    text = json.dumps([spec_hash, seed, protocol_version, campaign])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class LeaseKeeper:
    """Renews this dispatcher's leases of its in-flight jobs every lease/3, in short transactions.

    A thread, so that leases stay alive through data preparation, Ray's start,
    tuning and long jobs alike; it dies with the dispatcher, and then the
    leases expire and another dispatcher requeues the jobs (`requeue_expired`).
    """

    def __init__(self, factory: Any, owner: str, lease: timedelta, job_ids: Iterable[int]) -> None:
        self.factory, self.owner, self.lease = factory, owner, lease
        self.in_flight = set(job_ids)
        self.lost: set[int] = set()  # requeued behind our back: their results are not ours
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mtlb-leases", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def done(self, job_id: int) -> None:
        with self._lock:
            self.in_flight.discard(job_id)

    def renew(self) -> None:
        with self._lock:
            ids = set(self.in_flight)
        with self.factory.begin() as session:
            held = renew_leases(session, self.owner, ids, self.lease)
        with self._lock:
            self.lost |= ids - held

    def _loop(self) -> None:
        while not self._stop.wait(self.lease.total_seconds() / 3):
            try:
                self.renew()
            except Exception as e:  # the database is away: try again next time
                print(f"mtlb: renewing job leases failed: {type(e).__name__}: {e}", file=sys.stderr)


def run_jobs(
    url: str | None = None,
    address: str | None = None,
    max_jobs: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_report: Callable[[JobReport], None] | None = None,
    *,
    lease: timedelta = DEFAULT_LEASE,
    storage: Path | None = None,
    gpus_per_job: float | None = None,
) -> RunSummary:
    """Claim queued jobs, run them on Ray, record every outcome as it arrives.

    Jobs whose lease expired (their dispatcher died) are requeued first.  The
    jobs claimed are leased to this dispatcher and renewed while it runs; a
    result is recorded only while its job is still leased to it.
    `gpus_per_job`: the GPUs each job asks for, instead of its protocol's
    (`job_resources`): a fraction packs several jobs on one device.
    """
    if gpus_per_job is not None:
        gpu_share(gpus_per_job, "--gpus-per-job")
    summary = RunSummary()
    factory = session_factory(url)
    owner = dispatcher_id()
    with factory.begin() as session:
        summary.requeued = requeue_expired(session)
    with factory.begin() as session:
        jobs = claim_jobs(session, max_jobs, owner=owner, lease=lease)
        # Under the job's protocol version: a rerun may name another than the submission's.
        work = [(job.id, job.submission.name, job.seed, trained_spec(job)) for job in jobs]
        keys = {
            job.id: job_key(job.submission.spec_hash, job.seed, job_version(job), job.campaign.name)
            for job in jobs
        }
    if not work:
        if on_start is not None:
            on_start(0)
        return summary
    with LeaseKeeper(factory, owner, lease, keys) as keeper:
        try:
            return _run_claimed(
                factory, keeper, jobs, work, keys, summary, storage_root(storage),
                address, on_start, on_report, gpus_per_job,
            )  # fmt: skip
        except BaseException:
            # Interrupted: its unfinished jobs go back to the queue at once, none is lost.
            with factory.begin() as session:
                release_jobs(session, owner, keeper.in_flight)
            raise


def _run_claimed(
    factory: Any,
    keeper: LeaseKeeper,
    jobs: list[Job],
    work: list[WorkItem],
    keys: dict[int, str],
    summary: RunSummary,
    storage: Path,
    address: str | None,
    on_start: Callable[[int], None] | None,
    on_report: Callable[[JobReport], None] | None,
    gpus_per_job: float | None = None,
) -> RunSummary:
    started = time.perf_counter()
    prepare_data(jobs)
    summary.data_s = time.perf_counter() - started
    if on_start is not None:
        on_start(len(work))
    started = time.perf_counter()
    ensure_ray(address)
    summary.ray_start_s = time.perf_counter() - started
    started = time.perf_counter()
    work, untrainable = tune_submissions(factory, work)
    summary.tuning_s = time.perf_counter() - started
    for report in untrainable:
        keeper.done(report.job_id)
        summary.reports.append(report)
        if on_report is not None:
            on_report(report)
    started = time.perf_counter()
    code_version = provenance.code_version()
    remote = ray.remote(execute)
    pending: dict[Any, tuple[int, str, int, dict[str, Any]]] = {}
    for item in work:
        spec = item[3]
        protocol = BENCHMARKS.get(spec["benchmark"]).protocol(spec["protocol_version"])
        res = job_resources(protocol.resources, gpus_per_job)
        checkpoint = storage / keys[item[0]] / CHECKPOINT_FILE
        if res.workers > 1:
            # Data-parallel (Ray Train); imported here: ordinary jobs never load Ray Train.
            from runners.distributed import execute_data_parallel

            # The launching task holds no resources: the job's workers ask for them.
            ref = (
                ray.remote(execute_data_parallel)
                .options(num_cpus=0, max_retries=1)
                .remote(json.dumps(spec), item[2], res.cpus, res.gpus, res.workers, str(checkpoint))
            )
        else:
            ref = remote.options(**task_options(res)).remote(
                json.dumps(spec), item[2], res.cpus, res.gpus, str(checkpoint)
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
                report = record(
                    factory, job_id, name, seed, spec, outcome, code_version, owner=keeper.owner
                )
                keeper.done(job_id)
                if report.recorded:
                    # Finished for good: its checkpoint is no longer needed.  Not recorded
                    # (requeued behind our back): another attempt may be resuming from it.
                    shutil.rmtree(storage / keys[job_id], ignore_errors=True)
                summary.reports.append(report)
                if on_report is not None:
                    on_report(report)
    finally:
        # Interrupted: stop the unfinished jobs (run_jobs puts them back in the queue).
        for ref in pending:
            ray.cancel(ref, force=True)
    summary.training_s = time.perf_counter() - started
    return summary


WorkItem = tuple[int, str, int, dict[str, Any]]  # job id, submission name, seed, spec


def tune_submissions(factory: Any, work: list[WorkItem]) -> tuple[list[WorkItem], list[JobReport]]:
    """Tune, once, each submission with a search space and no tuning yet (`runners.tuning`).

    Returns the work with the chosen values merged into each such job's spec,
    and the reports of the jobs failed because their submission's tuning failed.
    (Interrupted, the caller puts the claimed jobs back in the queue.)
    """
    searched = [item for item in work if item[3].get("search")]
    if not searched:
        return work, []
    with factory() as session:
        submission_of = {i[0]: session.get(Job, i[0]).submission_id for i in searched}
    chosen: dict[int, dict[str, Any] | str] = {}
    for job_id, _, _, spec in searched:
        sid = submission_of[job_id]
        if sid not in chosen:
            try:
                chosen[sid] = tuning.chosen_values(factory, sid, spec)
            except Exception as e:
                chosen[sid] = f"tuning failed: {type(e).__name__}: {e}"
    kept, failed = [], []
    for job_id, name, seed, spec in work:
        values = chosen.get(submission_of.get(job_id, -1), {})
        if isinstance(values, str):
            with factory.begin() as session:
                record_failure(session, session.get(Job, job_id), JobState.FAILED, values)
            failed.append(JobReport(job_id, name, seed, JobState.FAILED, values))
        elif values:
            kept.append((job_id, name, seed, tuning.with_values(spec, values)))
        else:
            kept.append((job_id, name, seed, spec))
    return kept, failed


def record(
    factory: Any,
    job_id: int,
    name: str,
    seed: int,
    spec: dict[str, Any],
    outcome: dict[str, Any],
    code_version: str,
    *,
    owner: str | None = None,
) -> JobReport:
    """Store a job's outcome if the job is still running under `owner`'s lease.

    A late result of a job that was requeued (its lease expired) and maybe run
    again elsewhere is reported as not recorded; `runs.job_id` being unique is
    the last guard against a run stored twice.
    """
    state = JobState(outcome["state"])
    try:
        with factory.begin() as session:
            job = held_job(session, job_id, owner)
            if job is None:
                return JobReport(
                    job_id, name, seed, state,
                    f"not recorded: job {job_id} is no longer running under this"
                    " dispatcher's lease (it was requeued after the lease expired)",
                    recorded=False,
                )  # fmt: skip
            _store(session, job, spec, state, outcome, code_version)
    except IntegrityError:
        return JobReport(
            job_id, name, seed, state, f"not recorded: job {job_id}'s run is already recorded",
            recorded=False,
        )  # fmt: skip
    return JobReport(job_id, name, seed, state, outcome.get("error"))


def _store(
    session: Any,
    job: Job,
    spec: dict[str, Any],
    state: JobState,
    outcome: dict[str, Any],
    code_version: str,
) -> None:
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
                    "peak_gpu_memory_bytes": result.peak_gpu_memory_bytes,
                    "tuned_values": spec.get(tuning.TUNED_KEY),
                    "resumed_from_epoch": result.resumed_from_epoch,
                },
            ),
        )
    else:
        record_failure(session, job, state, outcome.get("error") or "unknown error")


__all__ = [
    "JobReport",
    "LeaseKeeper",
    "RunSummary",
    "execute",
    "job_resources",
    "parse_lease",
    "run_jobs",
    "task_options",
]
