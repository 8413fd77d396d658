"""How stable a protocol's ranking is: the demo set trained under two disjoint seed sets.

Trains the single-task baseline and the demo's multi-task specs under one
protocol version for the given seeds (one process per job, `--workers` at a
time, one thread each), then prints per submission: Δm per task (mean and
sample standard deviation over seeds, against the baseline's mean over the
same seeds), each task's convergence figure (the largest, over seeds, of the
change of its mean training loss over the last fifth of the epochs, as a
fraction of its first-epoch loss: the protocol is converged where it is under
0.05) and, for each seed set, the paired comparison of every pair of
submissions, the number of pairs it separates and the tie groups it makes
(walking best first, a submission joins its group's leader when the paired
95% t interval of their difference includes 0); then Kendall's τ between the
two seed sets' rankings by mean Δm.  Runs are kept out of every database, so
no ranking is touched.

    python bench/rank_stability.py --version 2 --seeds 0,1,2 --other-seeds 3,4,5 --workers 2
    python bench/rank_stability.py --version 1 --device cuda --workers 12 --json out.json

What-ifs, for choosing a protocol: `--scheduler cosine` (or `none`) and `--lr
3e-3` give every multi-task spec that schedule or learning rate, `--epochs N`
trains every job N epochs; `--only a,b` trains only those submissions.  The
v1 demo as it shipped (its examples at Adam 1e-3, no schedule):
`--version 1 --lr 1e-3 --scheduler none`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEMO = ("hps-equal", "hps-uncertainty", "hps-dwa", "hps-pcgrad", "hps-mgda")


def demo_specs(
    benchmark: str, version: int, scheduler: str | None, lr: float | None = None
) -> dict[str, dict[str, Any]]:
    """{name: normalised spec}: the baseline first, then the demo's examples under `version`."""
    from submissions.loader import read
    from submissions.spec import validate
    from submissions.submit import baseline_document

    documents = {"stl-small-cnn": baseline_document(benchmark, version, "small-cnn")}
    for name in DEMO:
        document, _ = read(ROOT / "submissions" / "examples" / f"{name}.yaml")
        document = {**document, "benchmark": benchmark, "protocol_version": version}
        if scheduler == "none":
            document.pop("scheduler", None)
        elif scheduler is not None:
            document["scheduler"] = {"name": scheduler}
        if lr is not None:
            document["optimizer"] = {**document["optimizer"], "lr": lr}
        documents[name] = document
    specs = {}
    for name, document in documents.items():
        valid, problems = validate(document)
        if valid is None:
            raise SystemExit(f"{name}: " + "; ".join(str(p) for p in problems))
        specs[name] = valid.normalised
    return specs


def train_one(
    spec: dict[str, Any], seed: int, device: str, epochs: int | None = None
) -> dict[str, Any]:
    import dataclasses

    import torch

    from runners.benchmarks import BENCHMARKS
    from runners.train import train

    if epochs is not None:  # a what-if, in this worker process only
        benchmark = BENCHMARKS.get(spec["benchmark"])
        version = int(spec["protocol_version"])
        replaced = dataclasses.replace(benchmark.protocol(version), epochs=epochs)
        benchmark.protocols[version] = replaced
    torch.set_num_threads(1)
    started = time.perf_counter()
    result = train(spec, seed, device=device)
    return {
        "metrics": result.metrics,
        "losses": [(c.epoch, c.task, c.value) for c in result.curves if c.name == "loss"],
        "seconds": time.perf_counter() - started,
    }


def convergence(losses: list[tuple[int, str, float]]) -> dict[str, float]:
    """{task: |loss(last epoch) - loss(start of the last fifth)| / loss(first epoch)}."""
    epochs = 1 + max(e for e, _, _ in losses)
    start = max(0, epochs - max(1, round(epochs / 5)) - 1)
    by = {(e, t): v for e, t, v in losses}
    tasks = sorted({t for _, t, _ in losses})
    return {
        t: abs(by[(epochs - 1, t)] - by[(start, t)]) / by[(0, t)] if by[(0, t)] else 0.0
        for t in tasks
    }


def paired_half(differences: list[float]) -> float:
    """Half-width of the 95% t interval of the mean of paired differences."""
    n = len(differences)
    return float(stats.t.ppf(0.975, n - 1)) * statistics.stdev(differences) / math.sqrt(n)


def seed_set_report(
    runs: dict[tuple[str, int], dict[str, Any]],
    names: list[str],
    seeds: list[int],
    directions: dict[str, dict[str, bool]],
) -> dict[str, Any]:
    """Δm per seed against the baseline's mean over `seeds`, the pairs and the tie groups."""
    from db.delta_m import delta_m

    baseline = {
        task: {
            metric: statistics.fmean(
                runs[("stl-small-cnn", s)]["metrics"][task][metric] for s in seeds
            )
            for metric in metrics
        }
        for task, metrics in directions.items()
    }
    delta = {
        name: [delta_m(runs[(name, s)]["metrics"], baseline, directions).per_task for s in seeds]
        for name in names
    }
    means = {name: statistics.fmean(values) for name, values in delta.items()}
    order = sorted(names, key=lambda n: -means[n])
    separated = 0
    for a, b in itertools.combinations(names, 2):
        differences = [x - y for x, y in zip(delta[a], delta[b], strict=True)]
        separated += abs(statistics.fmean(differences)) > paired_half(differences)
    groups, leader = 0, None
    for name in order:
        if leader is not None:
            differences = [x - y for x, y in zip(delta[leader], delta[name], strict=True)]
            if statistics.fmean(differences) <= paired_half(differences):
                continue
        leader, groups = name, groups + 1
    return {
        "delta": delta,
        "means": means,
        "order": order,
        "separated": separated,
        "groups": groups,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", default="synthetic-scenes")
    parser.add_argument("--version", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--other-seeds", default="3,4,5")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler", default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="what-if: other epochs")
    parser.add_argument("--only", default=None, help="comma-separated submission names")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = parser.parse_args()
    seed_sets = [
        [int(s) for s in text.split(",")] for text in (args.seeds, args.other_seeds) if text
    ]

    from runners.benchmarks import BENCHMARKS

    benchmark = BENCHMARKS.get(args.benchmark)
    specs = demo_specs(args.benchmark, args.version, args.scheduler, args.lr)
    if args.only:
        specs = {n: s for n, s in specs.items() if n in args.only.split(",")}
    names = list(specs)
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        futures = {
            (name, seed): pool.submit(train_one, spec, seed, args.device, args.epochs)
            for seed in itertools.chain(*seed_sets)
            for name, spec in specs.items()
        }
        runs = {key: f.result() for key, f in futures.items()}
    elapsed = time.perf_counter() - started
    job_seconds = statistics.fmean(r["seconds"] for r in runs.values())

    directions = benchmark.metric_directions
    reports = [seed_set_report(runs, names, seeds, directions) for seeds in seed_sets]
    print(
        f"{args.benchmark} v{args.version} on {args.device}: {len(runs)} jobs in {elapsed:.0f} s"
        f" ({job_seconds:.1f} s per job, {args.workers} at a time)"
    )
    header = " ".join(f"{'Δm ' + ','.join(map(str, s)):>14} {'std':>5}" for s in seed_sets)
    print(f"{'submission':16} {header}  worst convergence per task (< 0.05 converged)")
    for name in names:
        cells = " ".join(
            f"{r['means'][name]:14.2f} {statistics.stdev(r['delta'][name]):5.2f}" for r in reports
        )
        worst: dict[str, float] = {}
        for seed in itertools.chain(*seed_sets):
            for task, value in convergence(runs[(name, seed)]["losses"]).items():
                worst[task] = max(worst.get(task, 0.0), value)
        shown = " ".join(f"{t}={v:.3f}" for t, v in sorted(worst.items()))
        print(f"{name:16} {cells}  {shown}")
    pairs = len(names) * (len(names) - 1) // 2
    for seeds, report in zip(seed_sets, reports, strict=True):
        print(
            f"seeds {seeds}: pairs separated by the paired t interval {report['separated']}"
            f" of {pairs}; tie groups {report['groups']}; order {' > '.join(report['order'])}"
        )
    if len(reports) == 2:
        tau = stats.kendalltau(
            [reports[0]["means"][n] for n in names], [reports[1]["means"][n] for n in names]
        )
        print(f"Kendall's τ between the two seed sets' rankings: {tau.statistic:.2f}")
    if args.json is not None:
        raw = {f"{name}/{seed}": run for (name, seed), run in runs.items()}
        args.json.write_text(json.dumps({"runs": raw, "reports": reports}))


if __name__ == "__main__":
    main()
