"""Ray dispatch: queued jobs -> Ray tasks -> results in the database.

Each job is one Ray task asking for its protocol's resources, so jobs run in
parallel up to the cluster's capacity and Ray places them.  The dispatcher
(the driver) is the only writer: it records each result in its own
transaction as soon as that job finishes.  A job that raises is recorded as
failed with its error, one whose loss stops being finite as diverged, one
past its protocol's time limit as failed; the others go on.  So do they when
a job's data cannot be loaded, when a submission's tuning fails, or when a
result cannot be written (it is kept, and its job goes back to the queue).

Tunings (`runners.tuning`) run in threads of the dispatcher, their trials on
Ray beside the jobs of other submissions; a submission's seeds are sent once
its values are chosen.

Fault tolerance: the dispatcher holds a lease on each job it claimed, renewed
while it runs (`runners.leases`); a dead dispatcher's jobs are requeued once
their leases expire, and a result is recorded only under a lease still held.
A node's death is Ray's business: the task is retried (max_retries=1) and
resumes from the job's checkpoint on shared storage (`storage_root`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import ray
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

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
    requeue_expired,
    trained_spec,
)
from db.session import session_factory
from db.tunings import tuning_of
from runners import provenance, tuning
from runners.benchmarks import BENCHMARKS
from runners.benchmarks.base import Protocol, Resources, gpu_share
from runners.jobs import JobOutcome, execute
from runners.leases import LeaseKeeper, dispatcher_id
from runners.paths import data_root
from runners.reach import cluster_problem

# Locally we start a small private Ray: no dashboard, a modest object store (jobs
# exchange specs and metrics, not tensors).
LOCAL_RAY = {"include_dashboard": False, "object_store_memory": 256 * 1024**2}
STORAGE_VARIABLE = "MTLB_STORAGE"
CHECKPOINT_FILE = "checkpoint.pt"
# A finished job's outcome that could not be recorded, kept beside its checkpoint: the
# job's next attempt records it without training again.
OUTCOME_FILE = "outcome.json"
# How long the dispatcher waits for a result before it looks at its clocks again.
POLL_S = 5.0
# A job not finished this long after the serial bound of its batch (`Sent.deadline`)
# is taken for lost: no node can take it, or Ray lost it.
LOST_GRACE_S = 300.0
# Writing a result: attempts and the first back-off (doubled each time: 0.5+1+2+4 s).
RECORD_ATTEMPTS = 5
RECORD_BACKOFF_S = 0.5


class ClusterUnreachable(RuntimeError):
    """`--address` names a Ray cluster that does not answer (one line)."""


@dataclass(frozen=True)
class JobReport:
    """What the dispatcher tells its caller after each job."""

    job_id: int
    submission: str
    seed: int
    state: JobState
    error: str | None = None
    # False when the outcome was not stored: the job's lease had passed to another
    # attempt, or the database could not be written (the job went back to the queue).
    recorded: bool = True


@dataclass
class RunSummary:
    reports: list[JobReport] = field(default_factory=list)
    data_s: float = 0.0  # rendering/caching benchmark data
    ray_start_s: float = 0.0  # starting or attaching to Ray
    training_s: float = 0.0  # first job sent -> last result stored (tunings included)
    requeued: int = 0  # jobs of dead dispatchers put back in the queue on start


@dataclass(frozen=True)
class WorkItem:
    """A claimed job as the dispatcher sends it: the spec its worker trains, and where."""

    job_id: int
    submission_id: int
    submission: str  # the submission's name
    seed: int
    spec: dict[str, Any]  # under the job's protocol version (`db.queue.trained_spec`)
    key: str  # its checkpoint folder under the storage root (`job_key`)

    @property
    def protocol(self) -> Protocol:
        return BENCHMARKS.get(self.spec["benchmark"]).protocol(self.spec["protocol_version"])

    def report(self, state: JobState, error: str | None, recorded: bool = True) -> JobReport:
        return JobReport(self.job_id, self.submission, self.seed, state, error, recorded)


@dataclass(frozen=True)
class Sent:
    """A job in flight on Ray, and when it is taken for lost."""

    item: WorkItem
    deadline: float  # time.monotonic()


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


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """ClusterUnreachable (one line) unless the Ray cluster at `address` answers.

    `ray.init` would wait on an address that does not answer with no message
    (`runners.reach.cluster_problem`).
    """
    problem = cluster_problem(address, timeout_s)
    if problem is not None:
        raise ClusterUnreachable(problem)


def ray_errors_to_log() -> None:
    """Send the error messages Ray's driver prints to the "ray" logger instead.

    The driver's `listen_error_messages` thread prints other processes' errors
    (a dead raylet's last 20 log lines, a retried task, a node marked dead:
    36 lines after one node died) to the terminal through the module-level
    `ray._private.worker.print_to_stdstream`, whatever `log_to_driver` says.
    They are in the nodes' log files already; `mtlb run` prints one line per
    job.  A private name of Ray's: tests/runners/test_dispatch_faults.py pins it.
    """
    import ray._private.worker as ray_worker

    def to_log(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        logging.getLogger("ray").info("%s", "\n".join(data.get("lines", [])))

    ray_worker.print_to_stdstream = to_log


def ensure_ray(address: str | None) -> None:
    """Attach to the cluster at `address`, or start a private local one.

    Without an address Ray would follow its current-cluster file to a cluster
    started on this machine with `ray start`, even one that has died since;
    `address="local"` always starts a new one of our own.
    """
    if ray.is_initialized():
        return
    ray_errors_to_log()
    # WARNING: not the "Connecting to / Connected to Ray cluster" lines.
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        ray.init(address="local", **LOCAL_RAY, log_to_driver=False, logging_level=logging.WARNING)  # type: ignore[arg-type]


def prepare_data(items: list[WorkItem]) -> dict[int, str]:
    """Render/cache each benchmark's data once here rather than in every worker at once.

    Returns {job id: why} for the jobs whose data cannot be loaded (a missing
    dataset, in one line); the other jobs are not held back by them.
    """
    problems: dict[tuple[str, int], str] = {}
    for name, version in sorted({(i.spec["benchmark"], i.spec["protocol_version"]) for i in items}):
        benchmark = BENCHMARKS.get(name)
        protocol = benchmark.protocol(version)
        try:
            for split in ("train", "test"):
                benchmark.load(split, protocol)
        except Exception as e:
            problems[(name, version)] = f"{type(e).__name__}: {e}".splitlines()[0]
    return {
        i.job_id: problems[key]
        for i in items
        if (key := (i.spec["benchmark"], i.spec["protocol_version"])) in problems
    }


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


def execute_job(
    spec_json: str,
    seed: int,
    cpus: float,
    gpus: float,
    checkpoint: str,
    time_limit_s: float | None = None,
) -> JobOutcome:
    """A Ray task: the outcome an earlier attempt kept (`OUTCOME_FILE`), else `execute`'s.

    Ray titles its worker `ray::execute_job` meanwhile (the fault tests find it so).
    """
    kept = Path(checkpoint).with_name(OUTCOME_FILE)
    if kept.exists():
        try:
            return JobOutcome.from_json(kept.read_text())
        except (OSError, ValueError, TypeError, KeyError):
            pass  # unreadable: train again
    return execute(spec_json, seed, cpus, gpus, checkpoint, time_limit_s)


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
    if address:
        check_reachable(address)  # before claiming: an unreachable cluster claims nothing
    summary = RunSummary()
    factory = session_factory(url)
    owner = dispatcher_id()
    with factory.begin() as session:
        summary.requeued = requeue_expired(session)
    with factory.begin() as session:
        items = [work_item(job) for job in claim_jobs(session, max_jobs, owner=owner, lease=lease)]
    if not items:
        if on_start is not None:
            on_start(0)
        return summary
    with LeaseKeeper(factory, owner, lease, (i.job_id for i in items)) as keeper:
        dispatch = Dispatch(factory, keeper, summary, storage_root(storage), on_report)
        try:
            dispatch.run(items, address, on_start, gpus_per_job)
        except BaseException:
            # Interrupted: its unfinished jobs go back to the queue at once, none is lost.
            with factory.begin() as session:
                release_jobs(session, owner, keeper.in_flight)
            raise
    return summary


def work_item(job: Job) -> WorkItem:
    """What the dispatcher sends for a claimed job (read inside the claim's transaction)."""
    version = job_version(job)
    return WorkItem(
        job_id=job.id,
        submission_id=job.submission_id,
        submission=job.submission.name,
        seed=job.seed,
        # Under the job's protocol version: a rerun may name another than the submission's.
        spec=trained_spec(job),
        key=job_key(job.submission.spec_hash, job.seed, version, job.campaign.name),
    )


@dataclass
class Dispatch:
    """One `run_jobs`: the claimed jobs from data preparation to their recorded outcomes."""

    factory: Any
    keeper: LeaseKeeper
    summary: RunSummary
    storage: Path
    on_report: Callable[[JobReport], None] | None
    code_version: str = field(default_factory=provenance.code_version)
    in_flight: dict[Any, Sent] = field(default_factory=dict)  # Ray ref -> job
    # Finished tunings, from their threads: (submission id, chosen values or why it failed).
    tuned: queue.Queue[tuple[int, dict[str, Any] | str]] = field(default_factory=queue.Queue)
    waiting: dict[int, list[WorkItem]] = field(default_factory=dict)  # on their tuning
    serial_bound: float = 0.0  # the sum of the time limits of the jobs sent so far
    gpus_per_job: float | None = None

    def run(
        self,
        items: list[WorkItem],
        address: str | None,
        on_start: Callable[[int], None] | None,
        gpus_per_job: float | None,
    ) -> None:
        self.gpus_per_job = gpus_per_job
        started = time.perf_counter()
        unloadable = prepare_data(items)
        self.summary.data_s = time.perf_counter() - started
        if on_start is not None:
            on_start(len(items))
        for item in items:
            if item.job_id in unloadable:
                self.finish(item, JobOutcome.failed(unloadable[item.job_id]))
        items = [i for i in items if i.job_id not in unloadable]
        if not items:
            return
        started = time.perf_counter()
        ensure_ray(address)
        self.summary.ray_start_s = time.perf_counter() - started
        started = time.perf_counter()
        try:
            for item in self.tune_first(items):
                self.send(item)
            self.wait_all()
        finally:
            # Interrupted: stop the unfinished jobs (run_jobs puts them back in the queue).
            for ref in self.in_flight:
                ray.cancel(ref, force=True)
        self.summary.training_s = time.perf_counter() - started

    def tune_first(self, items: list[WorkItem]) -> list[WorkItem]:
        """The jobs to send now; those of submissions still to tune wait for their tuning.

        Each submission with a search space and no stored tuning is tuned once,
        in a thread (`runners.tuning.chosen_values`), its trials on Ray.
        """
        ready = []
        for item in items:
            if not item.spec.get("search"):
                ready.append(item)
                continue
            with self.factory() as session:
                stored = tuning_of(session, item.submission_id)
            if stored is not None:
                ready.append(with_chosen(item, stored["chosen"]))
                continue
            if item.submission_id not in self.waiting:
                self.waiting[item.submission_id] = []
                self.start_tuning(item)
            self.waiting[item.submission_id].append(item)
        return ready

    def start_tuning(self, item: WorkItem) -> None:
        def tune() -> None:
            try:
                chosen: dict[str, Any] | str = tuning.chosen_values(
                    self.factory, item.submission_id, item.spec
                )
            except Exception as e:
                chosen = f"tuning failed: {type(e).__name__}: {e}".splitlines()[0]
            self.tuned.put((item.submission_id, chosen))

        # A daemon: an interrupted dispatcher does not wait for its tunings to end.
        threading.Thread(target=tune, name=f"mtlb-tuning-{item.submission_id}", daemon=True).start()

    def send(self, item: WorkItem) -> None:
        protocol = item.protocol
        res = job_resources(protocol.resources, self.gpus_per_job)
        checkpoint = str(self.storage / item.key / CHECKPOINT_FILE)
        spec_json = json.dumps(item.spec)
        if res.workers > 1:
            # Data-parallel (Ray Train); imported here: ordinary jobs never load Ray Train.
            from runners.distributed import execute_data_parallel

            # The launching task holds no resources: the job's workers ask for them.
            # (Any: Ray's stubs type remote functions of up to five arguments.)
            parallel: Any = ray.remote(execute_data_parallel)
            ref = parallel.options(num_cpus=0, max_retries=1).remote(
                spec_json, item.seed, res.cpus, res.gpus, res.workers, checkpoint,
                protocol.time_limit_s,
            )  # fmt: skip
        else:
            single: Any = ray.remote(execute_job)
            ref = single.options(**task_options(res)).remote(
                spec_json, item.seed, res.cpus, res.gpus, checkpoint, protocol.time_limit_s
            )
        # Were the jobs run one after another, this one would be done by then.
        self.serial_bound += protocol.time_limit_s
        self.in_flight[ref] = Sent(item, time.monotonic() + self.serial_bound + LOST_GRACE_S)

    def wait_all(self) -> None:
        while self.in_flight or self.waiting:
            self.take_tunings(block=not self.in_flight)
            if not self.in_flight:
                continue
            # Short waits while tunings run, so that their seeds are sent soon after.
            timeout = 0.5 if self.waiting else POLL_S
            ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=timeout)
            for ref in ready:
                sent = self.in_flight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker itself died
                    outcome = JobOutcome.failed(f"{type(e).__name__}: {e}")
                self.finish(sent.item, outcome)
            self.stop_lost()

    def take_tunings(self, block: bool) -> None:
        try:
            while True:
                submission_id, chosen = self.tuned.get(block=block, timeout=POLL_S)
                block = False
                for item in self.waiting.pop(submission_id, []):
                    if isinstance(chosen, str):
                        self.finish(item, JobOutcome.failed(chosen))
                    else:
                        self.send(with_chosen(item, chosen))
        except queue.Empty:
            return

    def stop_lost(self) -> None:
        """Fail the jobs out past their deadline: no node could take them, or Ray lost them."""
        now = time.monotonic()
        for ref, sent in list(self.in_flight.items()):
            if now > sent.deadline:
                del self.in_flight[ref]
                ray.cancel(ref, force=True)
                res = job_resources(sent.item.protocol.resources, self.gpus_per_job)
                self.finish(
                    sent.item,
                    JobOutcome.failed(
                        "stopped: not finished long after the time limits of every job sent"
                        f" before it had passed; no node may have {res.cpus:g} CPU(s) and"
                        f" {res.gpus:g} GPU(s) free, or Ray lost it"
                    ),
                )

    def finish(self, item: WorkItem, outcome: JobOutcome) -> None:
        """Record `outcome`; if the database cannot take it, keep it and requeue the job."""
        folder = self.storage / item.key
        try:
            report = record(self.factory, item, outcome, self.code_version, owner=self.keeper.owner)
        except DBAPIError as e:
            report = self.keep(item, outcome, e)
        else:
            if report.recorded:
                # Finished for good: its checkpoint is no longer needed.  Not recorded
                # (requeued behind our back): another attempt may be resuming from it.
                shutil.rmtree(folder, ignore_errors=True)
        self.keeper.done(item.job_id)
        self.summary.reports.append(report)
        if self.on_report is not None:
            self.on_report(report)

    def keep(self, item: WorkItem, outcome: JobOutcome, error: DBAPIError) -> JobReport:
        """Keep the outcome beside the job's checkpoint; put the job back in the queue."""
        folder = self.storage / item.key
        reason = f"{type(error).__name__}: {str(error.orig or error).splitlines()[0]}"
        # A result is kept; a failure is not: the next attempt tries again.
        if outcome.state == JobState.SUCCEEDED:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / OUTCOME_FILE).write_text(outcome.to_json())
            except OSError as e:
                print(f"mtlb: keeping job {item.job_id}'s outcome failed: {e}", file=sys.stderr)
        try:
            with self.factory.begin() as session:
                release_jobs(session, self.keeper.owner, [item.job_id])
        except DBAPIError:
            pass  # its lease expires and the next dispatcher requeues it
        return item.report(
            JobState.QUEUED,
            f"not recorded: the database could not be written ({reason}); the job goes back"
            " to the queue"
            + (", and its next attempt records the kept result" if outcome.result else ""),
            recorded=False,
        )


def with_chosen(item: WorkItem, chosen: dict[str, Any]) -> WorkItem:
    """The job with its submission's tuned values merged into its spec."""
    return dataclasses.replace(item, spec=tuning.with_values(item.spec, chosen))


def transient(error: DBAPIError) -> bool:
    """A write worth trying again: the server went away, the file was busy, the link broke."""
    return error.connection_invalidated or isinstance(error, OperationalError | InterfaceError)


def retried(attempts: int, backoff_s: float) -> Iterator[int]:
    """Attempt numbers, sleeping backoff_s, 2 backoff_s, ... between them."""
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        yield attempt


def record(
    factory: Any,
    item: WorkItem,
    outcome: JobOutcome,
    code_version: str,
    *,
    owner: str | None = None,
    attempts: int = RECORD_ATTEMPTS,
    backoff_s: float = RECORD_BACKOFF_S,
) -> JobReport:
    """Store a job's outcome if the job is still running under `owner`'s lease.

    A late result of a job that was requeued (its lease expired) and maybe run
    again elsewhere is reported as not recorded; `runs.job_id` being unique is
    the last guard against a run stored twice.  A transient database error
    (`transient`) is retried `attempts` times with back-off, each time in a
    new transaction; the last one is raised.
    """
    for attempt in retried(attempts, backoff_s):
        try:
            return _record_once(factory, item, outcome, code_version, owner)
        except IntegrityError:
            return item.report(
                outcome.state, f"not recorded: job {item.job_id}'s run is already recorded",
                recorded=False,
            )  # fmt: skip
        except DBAPIError as e:
            if not transient(e) or attempt == attempts - 1:
                raise
            print(f"mtlb: recording job {item.job_id} failed, retrying: {e.orig}", file=sys.stderr)
    raise AssertionError("unreachable")  # pragma: no cover


def _record_once(
    factory: Any, item: WorkItem, outcome: JobOutcome, code_version: str, owner: str | None
) -> JobReport:
    with factory.begin() as session:
        job = held_job(session, item.job_id, owner)
        if job is None:
            return item.report(
                outcome.state,
                f"not recorded: job {item.job_id} is no longer running under this"
                " dispatcher's lease (it was requeued after the lease expired)",
                recorded=False,
            )
        _store(session, job, item.spec, outcome, code_version)
    return item.report(outcome.state, outcome.error)


def _store(
    session: Any,
    job: Job,
    spec: dict[str, Any],
    outcome: JobOutcome,
    code_version: str,
) -> None:
    if outcome.result is not None:
        result = outcome.result
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
        record_failure(session, job, outcome.state, outcome.error or "unknown error")


__all__ = [
    "ClusterUnreachable",
    "JobReport",
    "RunSummary",
    "WorkItem",
    "job_resources",
    "record",
    "run_jobs",
    "task_options",
]
