"""The cost of many tasks: step time, bound, solver time and memory of each method at T = 4, 16, 40.

    python bench/many_tasks.py [--quick] [--tasks 4,16,40] [--steps 15] [--threads 1]
                               [--device cpu|cuda] [--methods a,b]

At T tasks an exact gradient method needs the T x P Jacobian J of the task
losses with respect to the P shared parameters: each task's loss is
differentiated once with respect to the shared representation, and the T
cotangents are then pushed through the encoder.  Its step therefore costs at
least 1 + (T-1)e equal-weighting steps, where e is the share of an
equal-weighting step spent in the encoder's backward pass (design.md,
"Performance notes"; `bench/step_time.py` measures e the same way).  The
bound grows with T; a method that weights the losses (FAMO among them) needs
one backward pass whatever T is, and stays near 1.

On `synthetic-attributes-4`, `-16` and `synthetic-attributes` (the embedded
many-task benchmark: the same images, the first T of 40 image-level
attributes) with hard parameter sharing on small-cnn at the protocol's
batch, for each T and method it reports:

- the median step time over interleaved rounds and its ratio to equal weighting
  at the same T, and for exact gradient methods the ratio to the bound;
- for exact gradient methods, the time per step of everything after J is built
  (`update`: the Gram matrix, the solver, the combination w @ J) and, for a
  `GramAggregation`, of its solver alone (`weights_from_gram`, on the CPU);
- the peak memory a method's first step allocates above what is held before it
  (the parameters and the batch; Adam's state, two floats per parameter, is
  allocated in that step, alike for every method): on the CPU from the torch
  profiler's memory events (`profile_memory=True`, allocations and frees in
  time order, at the granularity of one operator), on CUDA
  `torch.cuda.max_memory_allocated`.

Each step is the training loop's (`runners.step.TrainingStep`): on the CPU
eager, with one encoder backward pass per task; on CUDA as `train` runs it
(CUDA graphs where the method's plan allows them); memory is measured on an
eager step everywhere (a CUDA graph's memory is allocated when it is captured).

The summary checks two claims for every exact gradient method: its ratio
stays within 1.15x its bound at every T; its memory grows linearly in T (the
slope of its peak between successive T, in bytes per task and shared
parameter, stays constant).  One float32 copy of J is 4 bytes per task and
shared parameter; `runners.weighting.base.task_jacobian` also holds every
task's cotangent at the shared representation (the batch's B x |z| floats)
until the last one has gone through the encoder, and the summary prints
what the two together predict.  The last line is the results as JSON.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from step_time import encoder_backward_share
from torch.profiler import ProfilerActivity, profile

from runners.benchmarks import BENCHMARKS
from runners.models import ARCHITECTURES
from runners.step import TrainingStep
from runners.weighting import WEIGHTINGS
from runners.weighting.base import GradientMethod, GramAggregation

BENCHMARK_OF = {
    4: "synthetic-attributes-4",
    16: "synthetic-attributes-16",
    40: "synthetic-attributes",
}
# --quick: every method, fewer rounds and warm-up steps.
QUICK_STEPS, QUICK_WARMUP = 3, 1
WARMUP = 3
BOUND_SLACK = 1.15
MB = 1024**2


class Timer:
    """Wraps a method of one object and adds up the wall time of its calls."""

    def __init__(self, owner: Any, name: str, sync: Callable[[], None]) -> None:
        self.total, self.calls = 0.0, 0
        inner = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            sync()
            started = time.perf_counter()
            out = inner(*args, **kwargs)
            sync()
            self.total += time.perf_counter() - started
            self.calls += 1
            return out

        setattr(owner, name, timed)  # an instance attribute: found before the class's method

    def take(self) -> float:
        """Seconds since the last take."""
        total, self.total = self.total, 0.0
        return total


def peak_step_memory(step: TrainingStep, batch: dict[str, torch.Tensor], device: str) -> int:
    """Bytes `step`'s next step allocates at its peak above what was held before it."""
    step.optimizer.zero_grad(set_to_none=True)  # last step's gradients are freed outside the window
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(batch)
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - before)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(batch)
    # Each operator's own net allocation at its start time, and allocations outside any operator.
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    held = peak = 0
    for event in events:
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    return peak


def measure(
    num_tasks: int, names: list[str], args: argparse.Namespace, sync: Callable[[], None]
) -> dict[str, Any]:
    cuda = args.device.startswith("cuda")
    benchmark = BENCHMARKS.get(BENCHMARK_OF[num_tasks])
    protocol = benchmark.protocol(benchmark.latest_version)
    data = benchmark.load("train", protocol)
    batch = {k: v[: protocol.batch_size].to(args.device) for k, v in data.items()}
    tasks = benchmark.tasks
    torch.manual_seed(0)
    base = ARCHITECTURES.get("hard-sharing")(tasks, "small-cnn")
    base = base.to(args.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    shared = sum(p.numel() for p in base.shared_parameters())
    with torch.no_grad():
        representation = base(batch["image"])[0]
    assert representation is not None  # hard sharing has one shared representation

    def make_step(name: str, *, graphs: bool = True) -> TrainingStep:
        model = copy.deepcopy(base)
        method = WEIGHTINGS.get(name)(len(tasks)).to(args.device)
        optimizer = torch.optim.Adam([*model.parameters(), *method.parameters()], lr=1e-3)
        return TrainingStep(model, method, optimizer, tasks, args.device, graphs=graphs)

    steps = {n: make_step(n) for n in names}
    exact = [n for n in names if isinstance(steps[n].weighting, GradientMethod)]
    # On CUDA `update` may run inside a graph capture, where no synchronisation is allowed:
    # its time is reported on the CPU only.  The solver always runs on the host.
    updates = {} if cuda else {n: Timer(steps[n].weighting, "update", sync) for n in exact}
    solvers = {
        n: Timer(steps[n].weighting, "weights_from_gram", lambda: None)
        for n in exact
        if isinstance(steps[n].weighting, GramAggregation)
    }

    def timed(name: str) -> float:
        sync()
        started = time.perf_counter()
        steps[name](batch)
        sync()
        return time.perf_counter() - started

    for name in names:  # warm-up (and, on CUDA, the capture)
        for _ in range(args.warmup):
            timed(name)
    times: dict[str, list[float]] = {n: [] for n in names}
    update_times: dict[str, list[float]] = {n: [] for n in exact}
    solver_times: dict[str, list[float]] = {n: [] for n in solvers}
    for timer in [*updates.values(), *solvers.values()]:
        timer.take()
    shares: list[float] = []
    probe = make_step("equal", graphs=False)
    for _ in range(args.steps):
        for name in names:
            times[name].append(timed(name))
            if name in updates:
                update_times[name].append(updates[name].take())
            if name in solvers:
                solver_times[name].append(solvers[name].take())
        shares.append(encoder_backward_share(probe, batch, sync))
    memory = {n: peak_step_memory(make_step(n, graphs=False), batch, args.device) for n in names}

    e = statistics.median(shares)
    median = {n: statistics.median(v) for n, v in times.items()}
    return {
        "benchmark": benchmark.name,
        "tasks": num_tasks,
        "shared_parameters": shared,
        # Floats of one task's cotangent at the shared representation (the whole batch's).
        "cotangent_floats": representation.numel(),
        "e": e,
        "bound": 1 + (num_tasks - 1) * e,
        "ms": {n: 1000 * t for n, t in median.items()},
        "ratio": {n: median[n] / median["equal"] for n in names},
        "update_ms": {n: 1000 * statistics.median(v) for n, v in update_times.items() if any(v)},
        "solver_ms": {n: 1000 * statistics.median(v) for n, v in solver_times.items() if any(v)},
        "peak_mb": {n: memory[n] / MB for n in names},
        "exact": exact,
    }


def print_table(r: dict[str, Any], names: list[str]) -> None:
    """The table of one T, as soon as it is measured."""
    print(
        f"\n{r['benchmark']} v1: T = {r['tasks']}, P = {r['shared_parameters']:,} shared"
        f" parameters, {r['cotangent_floats']:,} floats per cotangent;"
        f" e = {r['e']:.3f}, bound 1 + (T-1)e = {r['bound']:.2f};"
        f" equal {r['ms']['equal']:.2f} ms"
    )
    print(
        f"{'method':<14}{'ms':>9}{'x equal':>9}{'x bound':>9}{'update ms':>11}"
        f"{'solver ms':>11}{'peak MB':>9}"
    )
    for n in names:
        exact = n in r["exact"]
        cells = [
            f"{r['ms'][n]:>9.2f}",
            f"{r['ratio'][n]:>9.2f}",
            f"{r['ratio'][n] / r['bound']:>9.2f}" if exact else f"{'':>9}",
            f"{r['update_ms'][n]:>11.2f}" if n in r["update_ms"] else f"{'':>11}",
            f"{r['solver_ms'][n]:>11.2f}" if n in r["solver_ms"] else f"{'':>11}",
            f"{r['peak_mb'][n]:>9.1f}",
        ]
        print(f"{n + (' *' if exact else ''):<14}" + "".join(cells), flush=True)


def report(results: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Print the summary over T; return it."""
    print("* exact gradient method (the bound applies)")

    # Memory growth per task and shared parameter between successive T, in bytes.
    pairs = list(itertools.pairwise(results))
    slopes: dict[str, list[float]] = {
        n: [
            (b["peak_mb"][n] - a["peak_mb"][n])
            * MB
            / ((b["tasks"] - a["tasks"]) * b["shared_parameters"])
            for a, b in pairs
        ]
        for n in names
    }
    over_bound = {
        n: [r["tasks"] for r in results if r["ratio"][n] > BOUND_SLACK * r["bound"]]
        for n in results[0]["exact"]
    }
    steps = " ".join(f"{a['tasks']}->{b['tasks']}" for a, b in pairs)
    print(f"\nmemory slope, bytes per task per shared parameter ({steps}); J in float32 is 4:")
    for n in names:
        print(f"  {n:<14}" + " ".join(f"{s:>8.2f}" for s in slopes[n]))
    # What `task_jacobian` holds per task: a row of J and the cotangent at the representation.
    last = results[-1]
    per_task = 4 + 4 * last["cotangent_floats"] / last["shared_parameters"]
    print(
        f"  a row of J and a cotangent per task, both float32: 4 + 4 x"
        f" {last['cotangent_floats']:,} / {last['shared_parameters']:,} = {per_task:.2f}"
    )
    within = [n for n, ts in over_bound.items() if not ts]
    print(f"\nwithin {BOUND_SLACK}x the bound at every T: {', '.join(within) or 'none'}")
    for n, ts in over_bound.items():
        if ts:
            worst = max(r["ratio"][n] / r["bound"] for r in results)
            print(f"  over at T = {', '.join(map(str, ts))}: {n} (worst {worst:.2f}x the bound)")
    return {
        "memory_slope_bytes": slopes,
        "row_and_cotangent_bytes": per_task,
        "over_bound_at": over_bound,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="4,16,40", help="comma-separated T, of 4, 16, 40")
    parser.add_argument("--steps", type=int, default=15, help="timed rounds per T")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_STEPS} rounds, {QUICK_WARMUP} warm-up step"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU")
    parser.add_argument("--methods", default=None, help="comma-separated (default: all)")
    args = parser.parse_args()
    args.warmup = WARMUP
    if args.quick:
        args.steps, args.warmup = QUICK_STEPS, QUICK_WARMUP
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    names = args.methods.split(",") if args.methods else WEIGHTINGS.names()
    names = ["equal", *(n for n in names if n != "equal")]
    counts = [int(t) for t in args.tasks.split(",")]

    def sync() -> None:
        # GPU kernels run asynchronously: wait for them before reading the clock.
        if cuda:
            torch.cuda.synchronize()

    started = time.perf_counter()
    device = torch.cuda.get_device_name() if cuda else f"cpu, {args.threads} thread(s)"
    print(
        f"hard-sharing/small-cnn on synthetic-attributes, {args.device} ({device}),"
        f" {args.steps} rounds per T"
    )
    results = []
    for t in counts:
        results.append(measure(t, names, args, sync))
        print_table(results[-1], names)
    summary = report(results, names)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    print("JSON " + json.dumps({"device": device, "results": results, **summary}))


if __name__ == "__main__":
    main()
