"""Training-step time of every architecture at the default protocol, as a ratio to hard sharing.

    python bench/architectures.py [--steps 20] [--threads 1] [--benchmark synthetic-scenes]

Each architecture is built on the protocol's first backbone with the
parameters of its example spec in submissions/examples/ (defaults if it has
none), channels_last, and trained with equal weighting (forward, the task
losses with any auxiliary ones, one backward pass, an Adam step) on one batch
of the protocol (64x64, batch 32 for synthetic-scenes).  Architectures are
timed interleaved, round after round, so that the machine's noise hits them
alike; the table reports the median step time and its ratio to hard sharing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from runners.benchmarks import BENCHMARKS
from runners.models import ARCHITECTURES, BackboneChoice, MultiTaskModel

EXAMPLES = Path(__file__).resolve().parent.parent / "submissions" / "examples"


def example_parameters(architecture: str) -> dict[str, Any]:
    """The architecture parameters of the first example spec that uses `architecture`."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        section = yaml.safe_load(path.read_text())["architecture"]
        if section["name"] == architecture:
            return {k: v for k, v in section.items() if k not in ("name", "backbone")}
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default="synthetic-scenes")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per architecture")
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
    backbone = BackboneChoice(protocol.backbones[0])
    models: dict[str, MultiTaskModel] = {}
    optimizers = {}
    for name in ARCHITECTURES:
        model = ARCHITECTURES.get(name)(tasks, backbone, **example_parameters(name))
        models[name] = model.to(args.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizers[name] = torch.optim.Adam(model.parameters(), lr=1e-3)

    def sync() -> None:
        # GPU kernels run asynchronously: wait for them before reading the clock.
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def step(name: str) -> float:
        model = models[name]
        started = time.perf_counter()
        _, outputs = model(batch["image"])
        loss = sum(model.training_loss(t, outputs, batch[t.name]) for t in tasks)
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        optimizers[name].step()
        sync()
        return time.perf_counter() - started

    for name in models:  # warm-up
        for _ in range(3):
            step(name)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.steps):
        for name in models:
            times[name].append(step(name))

    with torch.no_grad():
        has_z = {name: m(batch["image"][:1])[0] is not None for name, m in models.items()}
    reference = statistics.median(times["hard-sharing"])
    print(
        f"{args.benchmark} v{protocol.version}: {backbone.name}, batch {protocol.batch_size},"
        f" {protocol.image_size}x{protocol.image_size}, {args.device}, {args.threads} thread(s),"
        f" channels_last, equal weighting, {args.steps} steps per architecture"
    )
    print(f"{'architecture':<14}{'params':>10}{'ms/step':>10}{'x hard-sharing':>16}  z")
    for name, values in times.items():
        median = statistics.median(values)
        params = sum(p.numel() for p in models[name].parameters())
        z = "yes" if has_z[name] else "no"
        print(f"{name:<14}{params:>10,}{1000 * median:>10.1f}{median / reference:>16.2f}  {z}")


if __name__ == "__main__":
    main()
