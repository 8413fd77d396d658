"""Training-step time of every weighting method on the default model, as a ratio to equal.

    python bench/step_time.py [--steps 20] [--threads 1] [--device cpu|cuda]
                              [--configs looped,batched,graphs,graphs-looped] [--methods a,b]

The default model is hard parameter sharing on small-cnn at the benchmark's
protocol (64x64, batch 32), channels_last, Adam.  Each step is the training
loop's (`runners.step.TrainingStep`), in one of these configurations:

- looped: eager; gradient methods push the T cotangents through the encoder
  one backward pass per task (the CPU's default);
- batched: eager; one batched (vmapped) backward pass for the T cotangents;
- graphs: what `train` does on the device: on CUDA the batched pass and the
  step replayed from CUDA graphs where its plan allows (`runners.step`);
- graphs-looped: CUDA graphs with the per-task passes.

Methods and configurations are timed interleaved, round after round, so that
the machine's noise hits them alike; the tables report the median step time
and its ratio to equal weighting in the same configuration.

It also measures e, the share of an equal-weighting step spent in the shared
encoder's backward pass (eager), and the bound 1 + (T-1)e on the cost of
exact per-task gradients (docs/design.md, "Performance notes"), and the achieved
FLOP/s of an equal-weighting step next to a large float32 matrix product's,
the ceiling (on CUDA also with TF32, which cuDNN's convolutions may use).
The last line is the results as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from runners.benchmarks import BENCHMARKS
from runners.models import ARCHITECTURES
from runners.step import TrainingStep, describe
from runners.weighting import WEIGHTINGS
from runners.weighting.base import GradientMethod

# name -> (batched_jacobian, graphs); None: the device's default (batched on CUDA).
CONFIGS: dict[str, tuple[bool | None, bool]] = {
    "looped": (False, False),
    "batched": (True, False),
    "graphs": (None, True),
    "graphs-looped": (False, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default="synthetic-scenes")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per method")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU")
    parser.add_argument(
        "--configs",
        default=None,
        help="comma-separated, of " + ", ".join(CONFIGS) + " (default: looped,batched on the"
        " CPU; all four on CUDA)",
    )
    parser.add_argument("--methods", default=None, help="comma-separated (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    configs = args.configs or ("looped,batched,graphs,graphs-looped" if cuda else "looped,batched")
    chosen = [c.strip() for c in configs.split(",")]
    names = args.methods.split(",") if args.methods else WEIGHTINGS.names()
    if "equal" not in names:
        names = ["equal", *names]

    benchmark = BENCHMARKS.get(args.benchmark)
    protocol = benchmark.protocol(benchmark.latest_version)
    data = benchmark.load("train", protocol)
    batch = {k: v[: protocol.batch_size].to(args.device) for k, v in data.items()}
    tasks = benchmark.tasks
    torch.manual_seed(0)
    base = ARCHITECTURES.get("hard-sharing")(tasks, "small-cnn")
    base = base.to(args.device, memory_format=torch.channels_last)  # type: ignore[call-overload]

    def sync() -> None:
        # GPU kernels run asynchronously: wait for them before reading the clock.
        if cuda:
            torch.cuda.synchronize()

    def make_step(name: str, config: str) -> TrainingStep:
        model = copy.deepcopy(base)
        method = WEIGHTINGS.get(name)(len(tasks)).to(args.device)
        optimizer = torch.optim.Adam([*model.parameters(), *method.parameters()], lr=1e-3)
        batched, graphs = CONFIGS[config]
        return TrainingStep(
            model, method, optimizer, tasks, args.device, graphs=graphs, batched_jacobian=batched
        )

    steps = {(c, n): make_step(n, c) for c in chosen for n in names}
    # A double-sampling method's step takes further batches (`samples_per_step`): the next ones.
    size = protocol.batch_size
    samples = {
        n: [
            {k: v[i * size : (i + 1) * size].to(args.device) for k, v in data.items()}
            for i in range(1, WEIGHTINGS.get(n).samples_per_step)
        ]
        for n in names
    }

    def timed(key: tuple[str, str]) -> float:
        started = time.perf_counter()
        steps[key](batch, samples[key[1]])
        sync()
        return time.perf_counter() - started

    for key in steps:  # warm-up (and, with graphs, the capture)
        for _ in range(3):
            timed(key)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steps}
    shares: list[float] = []
    probe = make_step("equal", chosen[0])
    for _ in range(args.steps):
        for key in steps:
            times[key].append(timed(key))
        shares.append(encoder_backward_share(probe, batch, sync))

    # Throughput: FLOPs of one equal-weighting step (forward + backward, as
    # counted by torch's FLOP counter) over its median time, next to the
    # machine's ceiling: a large float32 matrix product on the same threads.
    with FlopCounterMode(display=False) as counter:
        probe.eager(batch)
    step_flops = counter.get_total_flops()
    ceiling = matmul_flops_per_second(args.device)
    tf32 = matmul_flops_per_second(args.device, tf32=True) if cuda else None

    e = statistics.median(shares)
    bound = 1 + (len(tasks) - 1) * e
    median = {key: statistics.median(values) for key, values in times.items()}
    device = torch.cuda.get_device_name() if cuda else f"cpu, {args.threads} thread(s)"
    print(
        f"{args.benchmark} v{protocol.version}: hard-sharing/small-cnn,"
        f" batch {protocol.batch_size}, {protocol.image_size}x{protocol.image_size},"
        f" {args.device} ({device}), {args.steps} steps per method"
    )
    print(f"encoder backward share e = {e:.3f}; exact-gradient bound 1 + (T-1)e = {bound:.2f}")
    first = chosen[0]
    achieved = step_flops / median[(first, "equal")]
    line = (
        f"equal step ({first}): {step_flops / 1e9:.2f} GFLOP, {achieved / 1e9:.1f} GFLOP/s;"
        f" 4096^2 float32 matmul: {ceiling / 1e9:.1f} GFLOP/s ({100 * achieved / ceiling:.1f}%)"
    )
    if tf32 is not None:
        line += f"; with TF32: {tf32 / 1e9:.1f} GFLOP/s"
    print(line)
    exact = {n for n in names if issubclass(WEIGHTINGS.get(n), GradientMethod)}
    header = f"{'method':<14}" + "".join(f"{c + ' ms':>17}{'x eq':>7}" for c in chosen)
    print(header + ("   graph plan" if "graphs" in chosen else ""))
    for name in names:
        row = f"{name + (' *' if name in exact else ''):<14}"
        for c in chosen:
            row += (
                f"{1000 * median[(c, name)]:>17.2f}{median[(c, name)] / median[(c, 'equal')]:>7.2f}"
            )
        if "graphs" in chosen:
            info = describe(steps[("graphs", name)])
            row += f"   {info['plan']}" + (
                f" ({info['graph_failure']})" if info["graph_failure"] else ""
            )
        print(row)
    print("* exact gradient method (the bound applies)")
    for c in chosen:
        ratios = [median[(c, n)] / median[(c, "equal")] for n in exact]
        if ratios:
            print(
                f"{c}: exact gradient methods {min(ratios):.2f}-{max(ratios):.2f}x equal"
                f" (bound {bound:.2f}); equal {1000 * median[(c, 'equal')]:.2f} ms"
            )
    results: dict[str, Any] = {
        "device": device,
        "e": e,
        "bound": bound,
        "step_gflop": step_flops / 1e9,
        "matmul_gflops": ceiling / 1e9,
        "matmul_tf32_gflops": None if tf32 is None else tf32 / 1e9,
        "ms": {f"{c}/{n}": 1000 * median[(c, n)] for c, n in median},
        "plans": {n: describe(steps[("graphs", n)]) for n in names} if "graphs" in chosen else {},
    }
    print("JSON " + json.dumps(results))


def encoder_backward_share(step: TrainingStep, batch: dict[str, torch.Tensor], sync: Any) -> float:
    """e: time of the encoder's backward / time of a whole equal-weighting step (eager)."""
    model, optimizer = step.model, step.optimizer
    sync()
    started = time.perf_counter()
    representation, outputs = model(batch["image"])
    losses = torch.stack([model.training_loss(t, outputs, batch[t.name]) for t in step.tasks])
    optimizer.zero_grad(set_to_none=True)
    (cotangent,) = torch.autograd.grad(losses.sum(), representation, retain_graph=True)
    sync()
    head_done = time.perf_counter()
    representation.backward(cotangent)
    sync()
    encoder_done = time.perf_counter()
    optimizer.step()
    sync()
    total = time.perf_counter() - started
    return (encoder_done - head_done) / total


def matmul_flops_per_second(
    device: str, n: int = 4096, repeats: int = 3, *, tf32: bool = False
) -> float:
    """FLOP/s of an n x n float32 matrix product: the ceiling for achieved throughput."""
    cuda = device.startswith("cuda")
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        a @ b  # warm-up
        best = float("inf")
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
            a @ b
            if cuda:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * n**3 / best


if __name__ == "__main__":
    main()
