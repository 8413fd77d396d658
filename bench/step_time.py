"""Training-step time of every weighting method on the default model, as a ratio to equal.

    python bench/step_time.py [--steps 20] [--threads 1] [--benchmark synthetic-scenes]

The default model is hard parameter sharing on small-cnn at the benchmark's
protocol (64x64, batch 32), channels_last, one thread.  Methods are timed
interleaved, round after round, so that the machine's noise hits them alike;
the table reports the median step time and its ratio to equal weighting.

It also measures e, the share of an equal-weighting step spent in the shared
encoder's backward pass, and the bound 1 + (T-1)e on the cost of exact
per-task gradients (design.md, "Performance notes"), and the achieved FLOP/s
of an equal-weighting step next to a large matrix product's, the ceiling.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from runners.benchmarks import BENCHMARKS
from runners.models import ARCHITECTURES
from runners.weighting import WEIGHTINGS, StepGraph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default="synthetic-scenes")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per method")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    benchmark = BENCHMARKS.get(args.benchmark)
    protocol = benchmark.protocol(benchmark.latest_version)
    data = benchmark.load("train", protocol)
    batch = {k: v[: protocol.batch_size].to(args.device) for k, v in data.items()}
    tasks = benchmark.tasks
    model = ARCHITECTURES.get("hard-sharing")(tasks, "small-cnn")
    model = model.to(args.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    shared = model.shared_parameters()
    own = [model.task_parameters(t.name) for t in tasks]
    methods = {name: WEIGHTINGS.get(name)(len(tasks)).to(args.device) for name in WEIGHTINGS}

    def sync() -> None:
        # GPU kernels run asynchronously: wait for them before reading the clock.
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def step(method_name: str) -> float:
        started = time.perf_counter()
        representation, outputs = model(batch["image"])
        losses = [t.loss(outputs[t.name], batch[t.name]) for t in tasks]
        optimizer.zero_grad(set_to_none=True)
        methods[method_name].backward(StepGraph(losses, representation, shared, own))
        optimizer.step()
        sync()
        return time.perf_counter() - started

    def encoder_backward_share() -> float:
        """e: time of the encoder's backward / time of a whole equal-weighting step."""
        started = time.perf_counter()
        representation, outputs = model(batch["image"])
        losses = torch.stack([t.loss(outputs[t.name], batch[t.name]) for t in tasks])
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

    for name in methods:  # warm-up
        for _ in range(3):
            step(name)
    times: dict[str, list[float]] = {name: [] for name in methods}
    shares: list[float] = []
    for _ in range(args.steps):
        for name in methods:
            times[name].append(step(name))
        shares.append(encoder_backward_share())

    # Throughput: FLOPs of one equal-weighting step (forward + backward, as
    # counted by torch's FLOP counter) over its median time, next to the
    # machine's ceiling: a large float32 matrix product on the same threads.
    with FlopCounterMode(display=False) as counter:
        step("equal")
    step_flops = counter.get_total_flops()
    ceiling = matmul_flops_per_second(args.device)

    e = statistics.median(shares)
    bound = 1 + (len(tasks) - 1) * e
    equal = statistics.median(times["equal"])
    print(
        f"{args.benchmark} v{protocol.version}: hard-sharing/small-cnn,"
        f" batch {protocol.batch_size},"
        f" {protocol.image_size}x{protocol.image_size}, {args.device}, {args.threads} thread(s),"
        f" {args.steps} steps per method"
    )
    print(f"encoder backward share e = {e:.3f}; exact-gradient bound 1 + (T-1)e = {bound:.2f}")
    achieved = step_flops / equal
    print(
        f"equal step: {step_flops / 1e9:.2f} GFLOP, {achieved / 1e9:.1f} GFLOP/s achieved;"
        f" 4096^2 float32 matmul: {ceiling / 1e9:.1f} GFLOP/s ({100 * achieved / ceiling:.0f}%)"
    )
    print(f"{'method':<14}{'ms/step':>10}{'x equal':>10}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<14}{1000 * median:>10.1f}{median / equal:>10.2f}")


def matmul_flops_per_second(device: str, n: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of an n x n float32 matrix product: the ceiling for achieved throughput."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


if __name__ == "__main__":
    main()
