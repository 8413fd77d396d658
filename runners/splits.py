"""The protocol's validation part of a train split: one carving for every use.

Tuning trials are scored on it (`runners.tuning`), and bilevel weighting
methods learn their task weights on it (`runners.weighting.bilevel`); both
take it with `validation_split`, so the part is the same wherever it is used.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from runners.benchmarks.base import Batch, Benchmark, Protocol
from runners.multi_input import image_key, split_sizes


def validation_split(
    n: int, fraction: float, benchmark: str, version: int
) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, validation indices) of a train split of `n` items, each sorted.

    The validation part is the first round(n * fraction) items (at least 1, at
    most n - 1) of a permutation seeded by the benchmark and protocol version,
    so every method, trial and machine gets the same split, and a new protocol
    version may carve a new one.
    """
    if n < 2:
        raise ValueError(f"a train split of {n} item(s) cannot spare a validation part")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {fraction}")
    size = min(n - 1, max(1, round(n * fraction)))
    digest = hashlib.sha256(f"{benchmark}:v{version}:validation".encode()).digest()
    order = np.random.default_rng(int.from_bytes(digest[:8], "little")).permutation(n)
    return np.sort(order[size:]), np.sort(order[:size])


def subset(data: Batch, index: np.ndarray) -> Batch:
    chosen = torch.from_numpy(index)
    out = {name: tensor[chosen].contiguous() for name, tensor in data.items()}
    # The training loop's fast layout (docs/design.md: channels_last).
    out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def held_out(data: Batch, benchmark: Benchmark, protocol: Protocol) -> tuple[Batch, Batch]:
    """(`data` less its validation part, the validation part), by `validation_split`.

    Multi-input: each task's own data is split, each with its own permutation
    (seeded by the benchmark, the task and the version), so every task keeps
    the protocol's fraction of its images for validation.
    """
    if not benchmark.multi_input:
        fit, validation = validation_split(
            data["image"].shape[0], protocol.validation_fraction, benchmark.name, protocol.version
        )
        return subset(data, fit), subset(data, validation)
    fit_part: Batch = {}
    validation_part: Batch = {}
    for task, n in zip(benchmark.tasks, split_sizes(data, benchmark.tasks), strict=True):
        images, targets = image_key(task.name), task.name
        fit, validation = validation_split(
            n, protocol.validation_fraction, f"{benchmark.name}/{task.name}", protocol.version
        )
        for part, index in ((fit_part, fit), (validation_part, validation)):
            chosen = torch.from_numpy(index)
            part[images] = data[images][chosen].contiguous(memory_format=torch.channels_last)
            part[targets] = data[targets][chosen].contiguous()
    return fit_part, validation_part
