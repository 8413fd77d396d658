"""Benchmarks: a dataset plus a versioned protocol.

The protocol fixes everything a submission may not choose: the tasks, input
size, epochs, batch size, seeds, allowed backbones, optimiser limits, the
largest model and the resources of one job.  Changing any of it means a new
version; results of different versions never mix.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from runners.registry import Registry
from runners.tasks import Task


@dataclass(frozen=True)
class Resources:
    """What one job asks the Ray cluster for."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class Protocol:
    version: int
    image_size: int
    train_size: int
    test_size: int
    epochs: int
    batch_size: int
    seeds: tuple[int, ...]
    backbones: tuple[str, ...]
    max_lr: float
    # The largest model a spec may ask for, in parameters (counted on the meta device).
    max_parameters: int
    # The optimiser of the single-task baseline, as it appears in a spec.
    baseline_optimizer: dict[str, Any] = field(default_factory=dict)
    resources: Resources = Resources()
    description: str = ""
    # Start every backbone from its ImageNet weights, read from the local weights
    # folder (`runners.models.pretrained`; never downloaded, never named by a spec).
    pretrained_backbones: bool = False


Batch = dict[str, torch.Tensor]


class Benchmark(abc.ABC):
    """A named dataset with tasks and protocol versions."""

    name: str
    description: str
    tasks: tuple[Task, ...]
    protocols: dict[int, Protocol]

    @property
    def latest_version(self) -> int:
        return max(self.protocols)

    def protocol(self, version: int) -> Protocol:
        if version not in self.protocols:
            known = ", ".join(str(v) for v in sorted(self.protocols))
            raise KeyError(
                f"benchmark {self.name!r} has no protocol version {version} (known: {known})"
            )
        return self.protocols[version]

    def task(self, name: str) -> Task:
        return next(t for t in self.tasks if t.name == name)

    @property
    def metric_directions(self) -> dict[str, dict[str, bool]]:
        """{task: {metric: higher_is_better}}."""
        return {t.name: {m.name: m.higher_is_better for m in t.metrics} for t in self.tasks}

    @abc.abstractmethod
    def load(self, split: str, protocol: Protocol) -> Batch:
        """The whole split in memory: `image` (N, 3, H, W) float32 and one target per task."""


def data_root() -> Path:
    """Where generated and real datasets live (MTLB_DATA_ROOT, else ~/.cache/mtlb)."""
    return Path(os.environ.get("MTLB_DATA_ROOT", Path.home() / ".cache" / "mtlb"))


BENCHMARKS: Registry[Benchmark] = Registry("benchmark", parametrised=False)
