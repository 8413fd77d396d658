"""Jobs per hour on one device with 1, 2, 4, 8 jobs sharing it.

    python bench/packing.py [--device cuda] [--jobs 1,2,4,8] [--epochs N]
                            [--benchmark synthetic-scenes] [--method equal]

Each job is a plain process (no Ray: what a Ray worker with a fraction of a
GPU runs) that trains the demo's job (hard parameter sharing on small-cnn,
`--method` weighting, Adam, seed = its index) through `runners.train.train`
with one CPU thread, as `mtlb run` would with `--gpus-per-job 1/N`.  For
each N, N processes start, import, load the (cached) data and initialise
the device, then wait; all are released at once, and the time from the
release to the last job's end gives N / time jobs per hour.  A warm Ray
worker has its imports done too; the first job on a fresh worker adds them
(`import time` is printed).  `--epochs` shortens the protocol: then the
jobs-per-hour figure is for the shortened job, and the scaled column
estimates the full job from the measured per-epoch time (say so when you
quote it).  The last line is the results as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def child(args: argparse.Namespace) -> None:
    """One job: get ready, say so, wait for the release, train, report."""
    started = time.time()
    import torch
    from protocols import plan_text, record_steps, shortened

    from runners.benchmarks import BENCHMARKS
    from runners.train import train

    torch.set_num_threads(1)
    benchmark = shortened(args.benchmark, args.epochs)
    protocol = BENCHMARKS.get(benchmark).protocol(1)
    for split in ("train", "test"):  # from the cache the parent filled
        BENCHMARKS.get(benchmark).load(split, protocol)
    if args.device.startswith("cuda"):
        torch.zeros(1, device=args.device)  # the CUDA context, before the release
    imported = time.time() - started
    steps = record_steps()
    print("ready", flush=True)
    go = Path(args.go)
    while not go.exists():
        time.sleep(0.005)
    began = time.time()
    result = train(spec(benchmark, args.method), args.seed, device=args.device)
    ended = time.time()
    report = {
        "seed": args.seed,
        "import_s": imported,
        "began": began,
        "ended": ended,
        "train_wall_s": result.wall_time_s,
        "peak_gpu_memory_bytes": result.peak_gpu_memory_bytes,
        "plan": plan_text(steps[-1]) if steps else "?",
        "epochs": protocol.epochs,
    }
    print("REPORT " + json.dumps(report), flush=True)


def spec(benchmark: str, method: str) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": {"name": method},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }


def round_of(count: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    go = folder / f"go-{count}"
    command = [sys.executable, __file__, "--child", "--go", str(go), "--device", args.device]
    command += ["--benchmark", args.benchmark, "--method", args.method]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    spawned = time.time()
    procs = [
        subprocess.Popen(
            [*command, "--seed", str(i)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(count)
    ]
    for p in procs:  # every job ready: imports done, data loaded, device initialised
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"a job did not start: {line!r} (exit {p.wait()})")
    ready_s = time.time() - spawned
    released = time.time()
    go.touch()
    reports = []
    for p in procs:
        out, _ = p.communicate(timeout=args.timeout)
        if p.returncode != 0:
            raise RuntimeError(f"a job failed (exit {p.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1].removeprefix("REPORT ")))
    elapsed = max(r["ended"] for r in reports) - released
    return {
        "jobs": count,
        "elapsed_s": elapsed,
        "jobs_per_hour": 3600 * count / elapsed,
        "ready_s": ready_s,
        "import_s": statistics.median(r["import_s"] for r in reports),
        "train_wall_s": statistics.median(r["train_wall_s"] for r in reports),
        "peak_gpu_memory_bytes": max((r["peak_gpu_memory_bytes"] or 0) for r in reports),
        "plan": reports[0]["plan"],
        "epochs": reports[0]["epochs"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", default="1,2,4,8")
    parser.add_argument("--benchmark", default="synthetic-scenes")
    parser.add_argument("--method", default="equal")
    parser.add_argument("--epochs", type=int, default=None, help="default: the protocol's")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per round")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--go", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from protocols import shortened

    from runners.benchmarks import BENCHMARKS

    benchmark = BENCHMARKS.get(args.benchmark)
    full_epochs = benchmark.protocol(1).epochs
    protocol = BENCHMARKS.get(shortened(args.benchmark, args.epochs)).protocol(1)
    for split in ("train", "test"):  # render and cache once, before any job
        benchmark.load(split, protocol)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mtlb-packing-") as folder:
        for count in (int(n) for n in args.jobs.split(",")):
            try:
                row = round_of(count, args, Path(folder))
            except Exception as e:  # one round failing (memory, a crash) leaves the others
                print(f"{count} job(s): failed: {type(e).__name__}: {e}", flush=True)
                continue
            rows.append(row)
            print(
                f"{count} job(s): {row['elapsed_s']:.1f} s, {row['jobs_per_hour']:.0f} jobs/h,"
                f" job wall {row['train_wall_s']:.1f} s, peak"
                f" {row['peak_gpu_memory_bytes'] / 2**20:.0f} MiB, step {row['plan']}",
                flush=True,
            )
    if not rows:
        print("JSON {}")
        return
    one = next((r for r in rows if r["jobs"] == 1), rows[0])
    print(
        f"\n{args.benchmark} v1, {args.method}, {protocol.epochs} of {full_epochs} epochs,"
        f" {args.device}; imports + data + device per process: {one['import_s']:.1f} s"
    )
    print(
        f"{'jobs':>5}{'seconds':>9}{'jobs/h':>9}{'x one':>7}{'job wall s':>11}"
        f"{'peak MiB':>9}{'full-job jobs/h (time x epochs)':>32}"
    )
    for row in rows:
        # The full protocol's job: the same fixed part, epochs scaled.
        per_epoch = row["elapsed_s"] / protocol.epochs
        scaled = 3600 * row["jobs"] / (per_epoch * full_epochs)
        print(
            f"{row['jobs']:>5}{row['elapsed_s']:>9.1f}{row['jobs_per_hour']:>9.0f}"
            f"{row['jobs_per_hour'] / one['jobs_per_hour']:>7.2f}{row['train_wall_s']:>11.1f}"
            f"{row['peak_gpu_memory_bytes'] / 2**20:>9.0f}"
            f"{'(measured in full)' if protocol.epochs == full_epochs else f'{scaled:.0f}':>32}"
        )
    print(
        "JSON " + json.dumps({"epochs": protocol.epochs, "full_epochs": full_epochs, "rows": rows})
    )


if __name__ == "__main__":
    main()
