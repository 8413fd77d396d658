"""The dispatcher's overhead per job, and its parallel efficiency with 1 and 2 workers.

    python bench/dispatch_overhead.py [--jobs 4] [--repeats 1] [--benchmark synthetic-scenes]
                                      [--spec submissions/examples/hps-equal.yaml]

The same N jobs (the spec under N names, seeds 0, 1, 2 of each; the demo's
job size by default) run three ways, repeat after repeat, interleaved so
that the machine's noise hits them alike:

- plain: a Python loop calling `runners.train.train` on one thread, results
  discarded (no Ray, no database);
- ray x1: `mtlb run`'s path (`runners.dispatch.run_jobs`) on a fresh local
  Ray with num_cpus=1, so jobs run one at a time as in the plain loop, each
  result written to a fresh SQLite file;
- ray x2: the same with num_cpus=2.

Overhead = (ray x1 total - plain total) / plain total, where a ray total is
Ray's start plus `run_jobs` (claiming, Ray scheduling, workers, checkpoints,
result writes).  Parallel efficiency with 2 workers = T1 / (2 T2) on the
ray totals.  The data are rendered/cached before anything is timed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import torch
import yaml

from db.models import Job
from db.queue import trained_spec
from db.session import session_factory, transaction
from runners import dispatch
from runners.benchmarks import BENCHMARKS
from runners.train import train
from submissions.spec import validate
from submissions.submit import store

ROOT = Path(__file__).resolve().parent.parent


def queue(url: str, document: dict[str, Any], jobs: int) -> None:
    """Store ceil(jobs / seeds) copies of the spec under distinct names (one job per seed)."""
    benchmark = BENCHMARKS.get(document["benchmark"])
    seeds = len(benchmark.protocol(benchmark.latest_version).seeds)
    with transaction(url) as session:
        for k in range(-(-jobs // seeds)):
            spec, problems = validate({**document, "name": f"{document['name']}-{k}"})
            if spec is None:
                raise SystemExit("; ".join(str(p) for p in problems))
            store(session, spec, yaml.safe_dump(document), submitter="bench")


def job_specs(url: str, jobs: int) -> list[tuple[dict[str, Any], int]]:
    """The (spec, seed) of the first `jobs` queued jobs, in the order the dispatcher claims them."""
    with session_factory(url)() as session:
        queued = session.query(Job).order_by(Job.id).limit(jobs).all()
        return [(trained_spec(job), job.seed) for job in queued]


def plain(url: str, jobs: int) -> dict[str, float]:
    torch.set_num_threads(1)  # as `dispatch.execute` does for a one-CPU job
    started = time.perf_counter()
    for spec, seed in job_specs(url, jobs):
        train(spec, seed)
    total = time.perf_counter() - started
    return {"total": total, "jobs": total}


def dispatched(url: str, jobs: int, cpus: int) -> dict[str, float]:
    writes = 0.0
    record = dispatch.record

    def timed_record(*args: Any, **kwargs: Any) -> dispatch.JobReport:
        nonlocal writes
        started = time.perf_counter()
        try:
            return record(*args, **kwargs)
        finally:
            writes += time.perf_counter() - started

    started = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, **dispatch.LOCAL_RAY, log_to_driver=False)  # type: ignore[arg-type]
    ray_start = time.perf_counter() - started
    dispatch.record = timed_record
    try:
        with tempfile.TemporaryDirectory(prefix="mtlb-bench-ckpt-") as storage:
            summary = dispatch.run_jobs(url, max_jobs=jobs, storage=Path(storage))
    finally:
        dispatch.record = record
        ray.shutdown()
    failed = [r for r in summary.reports if r.state.value != "succeeded"]
    if len(summary.reports) != jobs or failed:
        raise SystemExit(f"dispatcher run went wrong: {summary.reports}")
    rest = summary.data_s
    total = ray_start + rest + summary.training_s
    return {"total": total, "ray_start": ray_start, "jobs": summary.training_s, "writes": writes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=4, help="jobs per configuration (default 4)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds (median)")
    parser.add_argument("--benchmark", default="synthetic-scenes")
    parser.add_argument("--spec", type=Path, default=ROOT / "submissions/examples/hps-equal.yaml")
    args = parser.parse_args()
    if args.jobs < 1 or args.repeats < 1:
        raise SystemExit("--jobs and --repeats must be at least 1")
    document = yaml.safe_load(args.spec.read_text())
    document["benchmark"] = args.benchmark
    document.pop("protocol_version", None)
    benchmark = BENCHMARKS.get(args.benchmark)
    protocol = benchmark.protocol(benchmark.latest_version)
    for split in ("train", "test"):
        benchmark.load(split, protocol)  # render/cache once, outside every timing

    runs: dict[str, list[dict[str, float]]] = {"plain": [], "ray x1": [], "ray x2": []}
    configurations: dict[str, Callable[[str], dict[str, float]]] = {
        "plain": lambda url: plain(url, args.jobs),
        "ray x1": lambda url: dispatched(url, args.jobs, 1),
        "ray x2": lambda url: dispatched(url, args.jobs, 2),
    }
    with tempfile.TemporaryDirectory(prefix="mtlb-bench-") as directory:
        for repeat in range(args.repeats):
            for name, run in configurations.items():
                url = f"sqlite:///{directory}/{repeat}-{name.replace(' ', '')}.sqlite"
                queue(url, document, args.jobs)
                runs[name].append(run(url))
                print(f"round {repeat + 1}: {name:<7} {runs[name][-1]['total']:7.1f} s", flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in runs[name])

    n = args.jobs
    print(f"\n{n} jobs of {args.spec.stem} on {args.benchmark} v{protocol.version},"
          f" median of {args.repeats} round(s)")  # fmt: skip
    print(f"{'run':<8}{'total s':>9}{'per job s':>11}{'Ray start':>11}{'jobs':>9}{'writes':>9}")
    for name in runs:
        print(
            f"{name:<8}{median(name, 'total'):>9.1f}{median(name, 'total') / n:>11.2f}"
            f"{median(name, 'ray_start'):>11.2f}{median(name, 'jobs'):>9.1f}"
            f"{median(name, 'writes'):>9.2f}"
        )
    t_plain, t1, t2 = (median(name, "total") for name in runs)
    print(f"overhead of the dispatcher (ray x1 vs plain): {100 * (t1 - t_plain) / t_plain:+.1f}%")
    print(f"parallel efficiency with 2 workers, T1 / (2 T2): {100 * t1 / (2 * t2):.1f}%")


if __name__ == "__main__":
    main()
