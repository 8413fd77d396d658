"""Benchmarks: a dataset plus a versioned protocol.

The protocol fixes everything a submission may not choose: the tasks, input
size, epochs, batch size, seeds, allowed backbones, optimiser limits, the
largest model and the resources of one job.  Changing any of it means a new
version; results of different versions never mix.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from runners.registry import Registry
from runners.tasks import Task


@dataclass(frozen=True)
class Resources:
    """What one job asks the Ray cluster for: `workers` workers of `cpus` and `gpus` each.

    With more than one worker the job trains data-parallel with Ray Train
    (`runners.distributed`): each worker takes its shard of every batch and the
    gradients are averaged across workers before each optimiser step.

    `gpus` may be a fraction of one GPU (`gpu_share`): Ray then places several
    such jobs on one device, never one job across two, and each job sees
    its one device in CUDA_VISIBLE_DEVICES.
    """

    cpus: float = 1.0
    gpus: float = 0.0
    workers: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cpus) and self.cpus > 0):
            raise ValueError(f"Resources.cpus must be a positive number, got {self.cpus!r}")
        gpu_share(self.gpus, "Resources.gpus")
        if self.workers < 1:
            raise ValueError(f"Resources.workers must be at least 1, got {self.workers!r}")


def gpu_share(value: float, name: str = "gpus") -> float:
    """`value` if Ray can place it as one job's GPUs: 0, a fraction in (0, 1], or whole GPUs.

    A fraction is a share of one device (several jobs on one GPU); above one
    GPU a job takes whole devices: Ray refuses 1.5, which would straddle two.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < 0 or (value > 1 and value != int(value)):
        raise ValueError(
            f"{name} must be 0, a fraction of one GPU in (0, 1] or a whole number of GPUs,"
            f" got {value!r}"
        )
    return float(value)


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
    # The most forward FLOPs one input image may cost (counted on the meta device, as
    # `runners.protocol_checks.model_cost` does; a multiply-add is 2).  The parameter
    # limit alone lets a spec trade parameters for compute (many narrow experts, wide
    # feature maps): cost is what the leaderboard compares, so the protocol bounds it.
    max_flops: int
    # The optimiser of the single-task baseline, as it appears in a spec.
    baseline_optimizer: dict[str, Any] = field(default_factory=dict)
    resources: Resources = Resources()
    description: str = ""
    # Start every backbone from its ImageNet weights, read from the local weights
    # folder (`runners.models.pretrained`; never downloaded, never named by a spec).
    # True: every allowed backbone; a tuple: only the backbones it names (see `pretrained_for`).
    pretrained_backbones: bool | tuple[str, ...] = False
    # Equal-budget tuning (`runners.tuning`), part of the protocol version like the rest:
    # every spec with a `search` gets the same number of trials (0: this version allows no
    # tuning), each trained on the train split less a validation part of this fraction,
    # carved deterministically from it, and scored on that part; never on the test split.
    tuning_trials: int = 0
    validation_fraction: float = 0.2
    # Save a job's training state every this many epochs (0: never) to the shared
    # checkpoint storage, so that a job retried after its node died resumes there.
    # Not a result-changing choice: a resumed run is bit-identical to an uninterrupted one.
    checkpoint_every: int = 0
    # (height, width) of the images when they are not square; None: image_size x image_size.
    image_shape: tuple[int, int] | None = None
    # Training batch size per backbone, where it differs from `batch_size` (mtan/LibMTL's
    # NYUv2: 2 with SegNet, 8 with the dilated ResNet-50); read it through `batch_size_for`.
    batch_sizes: Mapping[str, int] = field(default_factory=dict)
    # Each training batch goes through the benchmark's `augment` (random scale-crop, flip).
    augmentation: bool = False
    # The scheduler of the single-task baseline, as it appears in a spec (None: none).
    baseline_scheduler: Mapping[str, Any] | None = None
    # {task: (offset, scale)}: every architecture's raw prediction r for the task is read
    # as offset + scale * r (`MultiTaskModel.scale_outputs`), in the target's units.  A
    # target far from zero (depth in metres, mean 3.9) is otherwise reached only through
    # biases that Adam moves by about one learning rate per step, and it does not converge
    # within a short protocol.  Part of the model, so part of the protocol version.
    output_scaling: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # Initialise each backbone and head from (seed, its role) alone
    # (`runners.models.base.paired_initialisation`), so that submissions of different
    # architectures start from the same weights where they have the same components.
    paired_initialisation: bool = False
    # Wall-clock limit of one job (and of one tuning trial): training is stopped at the
    # first step past it and the job recorded as failed (`runners.train.TimeLimitExceeded`).
    # It bounds what a job may cost, it does not change what a finished job records, so
    # the protocol pins leave it out (tests/runners/test_protocols.py).
    time_limit_s: float = 48 * 3600.0
    # The scalarisation front (`submissions.front`, `mtlb front`): fixed task weights on the
    # grid of the task simplex with this many divisions (3 tasks at 4: 15 points).
    front_divisions: int = 4

    def batch_size_for(self, backbone: str) -> int:
        """The batch size of a job whose backbone is `backbone`."""
        return self.batch_sizes.get(backbone, self.batch_size)

    def pretrained_for(self, backbone: str) -> bool:
        """Whether `backbone` starts from its ImageNet weights under this protocol."""
        if isinstance(self.pretrained_backbones, bool):
            return self.pretrained_backbones
        return backbone in self.pretrained_backbones

    @property
    def height_width(self) -> tuple[int, int]:
        """(height, width) of every image of the benchmark."""
        return self.image_shape or (self.image_size, self.image_size)


Batch = dict[str, torch.Tensor]


class Benchmark(abc.ABC):
    """A named dataset with tasks and protocol versions."""

    name: str
    description: str
    tasks: tuple[Task, ...]
    protocols: dict[int, Protocol]
    # Each task has its own images and labels (Office-31's domains); only the encoder is
    # shared.  A split is then "<task>.image" (N_t, 3, H, W) and "<task>" (N_t, ...) per
    # task, with no "image" key; the training loop draws each task's batch from its own
    # data and runs the model once on their concatenation (`runners.multi_input`).
    # `Protocol.train_size` and `test_size` count the images of every task together.
    multi_input: bool = False

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
        """The whole split in memory: `image` (N, 3, H, W) float32 and one target per task.

        Multi-input (`multi_input`): `<task>.image` (N_t, 3, H, W) and `<task>` (N_t, ...)
        per task, no `image`.
        """

    def augment(self, batch: Batch, generator: torch.Generator) -> Batch:
        """A training batch, augmented; the loop calls it when `Protocol.augmentation` is set.

        Multi-input: the step's batch, every task's rows concatenated in `image`
        and each task's own targets (`runners.multi_input.task_rows`).

        Runs on the batch's device; every random choice comes from `generator`
        (the job's), so that a run repeats.
        """
        raise NotImplementedError(f"benchmark {self.name!r} has no augmentation")


BENCHMARKS: Registry[Benchmark] = Registry("benchmark", parametrised=False)
