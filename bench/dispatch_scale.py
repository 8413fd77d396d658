"""The dispatcher at scale: 1,000 tiny jobs on a simulated 4-node Ray cluster.

    python bench/dispatch_scale.py [--jobs 1000] [--nodes 4] [--cpus-per-node 1]
                                   [--database URL]

A protocol made for this script only, `dispatch-scale` (registered here, in
the driver and, through Ray's `worker_process_setup_hook`, in every worker):
synthetic-shapes at 32x32 with 16 train and 16 test images, one epoch of one
batch, 10 seeds; each job is a real `runners.train.train`, as short as a job
gets.  `--jobs` jobs are queued (hard sharing with equal weighting under
jobs/10 names) in a fresh SQLite file (or `--database`, e.g. a PostgreSQL
schema of its own) and run through `runners.dispatch.run_jobs`, the entry
point of `mtlb run`, on a `ray.cluster_utils.Cluster`: a head with no CPU and
`--nodes` worker nodes.

It reports jobs per second through the dispatcher (first Ray submission to
last result stored), where the dispatcher's own thread spent its time (claim,
Ray submit, ray.wait, ray.get, record: the result's database transaction,
report: the caller's callback), how busy the job slots were (the jobs' own
training time, `runs.wall_time_s`), and then counts rows: every job succeeded
once, one run per job, none lost or duplicated.  The timings wrap the functions the dispatcher calls
(its module's names are rebound for the run), so they add a few microseconds
per call and change nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/dispatch_scale.py`
    sys.path.insert(0, str(ROOT))

from runners.benchmarks import BENCHMARKS  # noqa: E402
from runners.benchmarks.synthetic_shapes import SyntheticShapes  # noqa: E402

NAME = "dispatch-scale"
SEEDS = 10


def register() -> None:
    """Register `dispatch-scale` (idempotent): in the driver, and in each Ray worker at start."""
    if NAME in BENCHMARKS:
        return
    mini = BENCHMARKS.get("synthetic-shapes-mini").protocol(1)
    protocol = dataclasses.replace(
        mini, train_size=16, test_size=16, epochs=1, batch_size=16, seeds=tuple(range(SEEDS)),
        description="bench/dispatch_scale.py only: one batch of 16, 10 seeds",
    )  # fmt: skip
    BENCHMARKS.register(NAME)(SyntheticShapes(NAME, "dispatch-scale bench", {1: protocol}))


class Clock:
    """Seconds and calls per dispatcher step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()

    def wrap(self, step: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[step] += time.perf_counter() - started
                self.calls[step] += 1

        return timed


class TimedRay:
    """The `ray` module as `runners.dispatch` sees it, with wait, get and task submission timed."""

    def __init__(self, ray: Any, clock: Clock) -> None:
        self._ray, self._clock = ray, clock
        self.wait = clock.wrap("ray.wait", ray.wait)
        self.get = clock.wrap("ray.get", ray.get)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ray, name)

    def remote(self, function: Any) -> Any:
        clock, real = self._clock, self._ray.remote(function)

        class Options:
            def options(self, **kwargs: Any) -> Any:
                submit = real.options(**kwargs)
                return type(
                    "Submit", (), {"remote": staticmethod(clock.wrap("submit", submit.remote))}
                )

        return Options()


def queue(url: str, jobs: int) -> None:
    import yaml

    from db.models import Job, JobState
    from db.session import transaction
    from submissions.spec import validate
    from submissions.submit import store

    document = yaml.safe_load((ROOT / "submissions/examples/shapes-hps-equal.yaml").read_text())
    document.update(benchmark=NAME)
    document.pop("protocol_version", None)
    with transaction(url) as session:
        for k in range(-(-jobs // SEEDS)):
            spec, problems = validate({**document, "name": f"scale-{k}"})
            if spec is None:
                raise SystemExit("; ".join(str(p) for p in problems))
            store(session, spec, yaml.safe_dump(document), submitter="bench")
        extra = session.query(Job).order_by(Job.id.desc()).limit(-jobs % SEEDS).all()
        for job in extra:  # exactly `jobs` queued
            job.state = JobState.CANCELLED


def count_rows(url: str) -> dict[str, float]:
    from sqlalchemy import func, select

    from db.models import Job, JobState, Run
    from db.session import transaction

    with transaction(url) as session:
        states = Counter(session.scalars(select(Job.state)))
        runs = session.scalar(select(func.count(Run.id))) or 0
        distinct = session.scalar(select(func.count(func.distinct(Run.job_id)))) or 0
        training = session.scalar(select(func.sum(Run.wall_time_s))) or 0.0
    return {"succeeded": states[JobState.SUCCEEDED], "queued": states[JobState.QUEUED],
            "running": states[JobState.RUNNING], "failed": states[JobState.FAILED],
            "runs": runs, "jobs with a run": distinct, "training_s": training}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=4, help="worker nodes (default 4)")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--database", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    if args.jobs < 1 or args.nodes < 1 or args.cpus_per_node < 1:
        raise SystemExit("--jobs, --nodes and --cpus-per-node must be at least 1")

    import ray
    from ray.cluster_utils import Cluster

    from runners import dispatch

    register()
    # Ray's workers import this module's `register` (the hook) and this checkout's packages.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    # Ray's processes compile their imports once into a cache rather than each from source
    # where PYTHONDONTWRITEBYTECODE is set; a loaded machine starts nodes slowly.
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        os.environ["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "mtlb-test-pycache")
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
    with tempfile.TemporaryDirectory(prefix="mtlb-scale-") as directory:
        url = args.database or f"sqlite:///{directory}/scale.sqlite"
        started = time.perf_counter()
        queue(url, args.jobs)
        queue_s = time.perf_counter() - started
        head = {"num_cpus": 0, "include_dashboard": False}
        cluster = Cluster(initialize_head=True, head_node_args=head)
        try:
            for _ in range(args.nodes):
                cluster.add_node(num_cpus=args.cpus_per_node)
            cluster.wait_for_nodes()
            ray.init(
                address=cluster.address, log_to_driver=False,
                runtime_env={"worker_process_setup_hook": "bench.dispatch_scale.register"},
            )  # fmt: skip
            clock = Clock()
            real = {n: getattr(dispatch, n) for n in ("claim_jobs", "record", "ray")}
            dispatch.claim_jobs = clock.wrap("claim", real["claim_jobs"])
            dispatch.record = clock.wrap("record", real["record"])
            dispatch.ray = TimedRay(ray, clock)  # type: ignore[assignment]
            reports = clock.wrap("report", lambda report: None)
            try:
                summary = dispatch.run_jobs(
                    url, storage=Path(directory) / "storage", on_report=reports
                )
            finally:
                for name, value in real.items():
                    setattr(dispatch, name, value)
        finally:
            ray.shutdown()
            cluster.shutdown()
        rows = count_rows(url)

    n = len(summary.reports)
    rate = n / summary.training_s
    kind = url.split(":")[0]
    print(f"{n} jobs of {NAME} (1 batch of 16, 32x32) on {args.nodes} worker nodes x"
          f" {args.cpus_per_node} CPU (ray.cluster_utils.Cluster), {kind}")  # fmt: skip
    print(f"queueing {queue_s:.1f} s; data {summary.data_s:.1f} s; submit to last record"
          f" {summary.training_s:.1f} s: {rate:.1f} jobs/s")  # fmt: skip
    print(f"\n{'dispatcher step':<16}{'calls':>7}{'total s':>9}{'ms/job':>8}{'share':>7}")
    busy = sum(clock.seconds.values())
    for step in ("claim", "submit", "ray.wait", "ray.get", "record", "report"):
        s = clock.seconds[step]
        print(f"{step:<16}{clock.calls[step]:>7}{s:>9.2f}{1000 * s / n:>8.2f}"
              f"{100 * s / summary.training_s:>6.0f}%")  # fmt: skip
    print(f"{'all steps':<16}{'':>7}{busy:>9.2f}{1000 * busy / n:>8.2f}"
          f"{100 * busy / summary.training_s:>6.0f}%")  # fmt: skip
    print("(share: of submit-to-last-record time; ray.wait includes waiting for workers)")
    own = busy - clock.seconds["ray.wait"]
    print(f"the dispatcher's own work (all but ray.wait): {1000 * own / n:.2f} ms/job,"
          f" so at most {n / own:.0f} jobs/s from one dispatcher")  # fmt: skip
    # The jobs' own time (`train`'s wall time, recorded in each run) against the slots:
    # near 100%, the workers limit the rate, not the dispatcher.
    training = rows.pop("training_s")
    slots = args.nodes * args.cpus_per_node
    print(f"the jobs' own training time (runs.wall_time_s): {1000 * training / n:.0f} ms/job;"
          f" {slots} slots busy {100 * training / (slots * summary.training_s):.0f}% of"
          f" submit-to-last-record")  # fmt: skip
    print("\nrows afterwards: " + ", ".join(f"{k} {v}" for k, v in rows.items()))
    ok = rows["succeeded"] == rows["runs"] == rows["jobs with a run"] == args.jobs
    print("none lost or duplicated" if ok else "ROWS DO NOT ADD UP")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
