"""`synthetic-attributes`: many image-level tasks, the setting of CelebA's 40 attributes.

MGDA (Sener & Koltun 2018) and FAMO (Liu et al. 2023) evaluate on CelebA's
40 binary attributes, where an exact gradient method needs 40 cotangents
through the encoder per step.  This benchmark is that setting without a
download: the flat-shape scenes of `synthetic-shapes`, each labelled with
the attributes of `runners.benchmarks.attributes` (30 binary, each a 2-class
classification task as in MGDA's CelebA code, and 10 regression tasks).

The number of tasks T is part of the benchmark: in this platform a
benchmark owns its tasks (the Δm of two task sets never mix), so T tasks
means the first T attributes (`SyntheticAttributes(num_tasks=T)`; every
prefix of three or more mixes both kinds).  `synthetic-attributes` has all 40;
`synthetic-attributes-16` and `-4` have 16 and 4, for measuring what a
method's cost does as T grows (`bench/many_tasks.py`).  The images are
rendered once per (split, size, render version) for all of them and cached
under the data root: every variant reads the same bytes.
"""

from __future__ import annotations

import dataclasses

import torch

from runners.benchmarks import attributes
from runners.benchmarks.base import BENCHMARKS, Batch, Protocol, Resources
from runners.benchmarks.render_cache import RenderedBenchmark
from runners.tasks import Classification, Regression, Task

MAX_TASKS = len(attributes.ATTRIBUTES)


def attribute_tasks(num_tasks: int) -> tuple[Task, ...]:
    """The first `num_tasks` attributes as tasks: binary -> 2-class classification."""
    if not 1 <= num_tasks <= MAX_TASKS:
        raise ValueError(f"num_tasks must be in [1, {MAX_TASKS}], got {num_tasks!r}")
    return tuple(
        Classification(a.name, num_classes=2) if a.kind == "binary" else Regression(a.name)
        for a in attributes.ATTRIBUTES[:num_tasks]
    )


class SyntheticAttributes(RenderedBenchmark):
    family = "synthetic-attributes"
    render = staticmethod(attributes.render_split)

    def __init__(
        self,
        name: str,
        description: str,
        protocols: dict[int, Protocol],
        num_tasks: int = MAX_TASKS,
    ) -> None:
        super().__init__(name, description, protocols)
        self.tasks = attribute_tasks(num_tasks)

    def load(self, split: str, protocol: Protocol) -> Batch:
        """`image` (N, 3, H, W) in [-0.5, 0.5]; binary tasks int64 (N,), regression float (N,)."""
        image, arrays = self.rendered(split, protocol)
        batch: Batch = {"image": image}
        for task in self.tasks:
            values = torch.from_numpy(arrays[task.name])
            batch[task.name] = values.long() if isinstance(task, Classification) else values.float()
        return batch


ADAM = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}
# Every architecture at its defaults fits at T = 40 (each grows with T): the most, MTI-Net
# (per-task modules at four scales), has 25.3M parameters and needs 21 GFLOP per image;
# PAD-Net 7.5M, NDDR-CNN 2.0 GFLOP.  What a job may cost is bounded by the time limit.
MAX_PARAMETERS = 30_000_000
MAX_FLOPS = 25_000_000_000


def protocol_v1(num_tasks: int) -> Protocol:
    """The full protocol: synthetic-shapes v1's schedule and data size, with T tasks."""
    return Protocol(
        version=1,
        image_size=32,
        train_size=4096,
        test_size=1024,
        epochs=12,
        batch_size=32,
        seeds=(0, 1, 2),
        backbones=("small-cnn",),
        max_lr=0.1,
        # At the defaults and T = 40: hard sharing 48k parameters, single-task 1.1M.
        max_parameters=MAX_PARAMETERS,
        max_flops=MAX_FLOPS,
        baseline_optimizer=ADAM,
        resources=Resources(cpus=1, gpus=0),
        time_limit_s=30 * 60.0,
        description=(
            f"32x32, {num_tasks} attributes, 4096 train / 1024 test images, 12 epochs, batch 32,"
            " 3 seeds."
        ),
    )


# The full protocol at mini size: a seconds-long smoke test of a spec.
MINI_V1 = dataclasses.replace(
    protocol_v1(40),
    train_size=64,
    test_size=32,
    epochs=3,
    batch_size=16,
    time_limit_s=10 * 60.0,
    description="32x32, 40 attributes, 64 train / 32 test images, 3 epochs, batch 16, 3 seeds.",
)


def _describe(num_tasks: int) -> str:
    binary = sum(a.kind == "binary" for a in attributes.ATTRIBUTES[:num_tasks])
    return (
        f"1-4 flat shapes on a noisy textured background at 32x32 with {num_tasks} image-level"
        f" attributes ({binary} binary, {num_tasks - binary} regression): the many-task setting"
        " of CelebA's 40 attributes, embedded."
    )


for _t in (40, 16, 4):
    _name = "synthetic-attributes" if _t == MAX_TASKS else f"synthetic-attributes-{_t}"
    BENCHMARKS.register(_name)(SyntheticAttributes(_name, _describe(_t), {1: protocol_v1(_t)}, _t))

BENCHMARKS.register("synthetic-attributes-mini")(
    SyntheticAttributes(
        "synthetic-attributes-mini",
        "A seconds-long smoke-test variant of synthetic-attributes (few images, all 40"
        " attributes): check that a spec runs end to end before submitting it for real.",
        {1: MINI_V1},
    )
)
