"""`synthetic-shapes`: flat shapes on a noisy background, with four image-level tasks.

The image-level counterpart of `synthetic-scenes`, for architectures made
for non-dense tasks (MMoE and the like): two classification tasks (`shape`
and `colour` of the largest object) and two regression tasks (`count` of
objects, `size` of the largest as a fraction of the image).  No download:
the images are rendered by `runners.benchmarks.shapes`, each deterministic
from (split, index, version), and cached on disk under the data root so
that every job of a campaign reads the same bytes.
"""

from __future__ import annotations

import numpy as np
import torch

from runners.benchmarks import render_cache, shapes
from runners.benchmarks.base import (
    BENCHMARKS,
    Batch,
    Benchmark,
    Protocol,
    Resources,
)
from runners.tasks import Classification, Regression

TASKS = (
    Classification("shape", num_classes=len(shapes.SHAPE_NAMES)),
    Classification("colour", num_classes=len(shapes.COLOUR_NAMES)),
    Regression("count"),
    Regression("size"),
)


def cached_split(split: str, count: int, size: int, version: int) -> dict[str, np.ndarray]:
    """Render a split once; later calls (and other processes) read the cached file."""
    return render_cache.cached_split(
        "synthetic-shapes", shapes.render_split, split, count, size, version
    )


class SyntheticShapes(Benchmark):
    # Images are rendered with the renderer of this version.
    render_version = 1

    def __init__(self, name: str, description: str, protocols: dict[int, Protocol]) -> None:
        self.name = name
        self.description = description
        self.tasks = TASKS
        self.protocols = protocols

    def load(self, split: str, protocol: Protocol) -> Batch:
        """`image` (N, 3, H, W) in [-0.5, 0.5]; `shape`, `colour` int64 and `count`, `size` (N,)."""
        count = {"train": protocol.train_size, "test": protocol.test_size}[split]
        arrays = cached_split(split, count, protocol.image_size, self.render_version)
        image = torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2).float() / 255.0 - 0.5
        return {
            "image": image.contiguous(memory_format=torch.channels_last),
            "shape": torch.from_numpy(arrays["shape"]).long(),
            "colour": torch.from_numpy(arrays["colour"]).long(),
            "count": torch.from_numpy(arrays["count"]).float(),
            "size": torch.from_numpy(arrays["size"]).float(),
        }


ADAM = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}

BENCHMARKS.register("synthetic-shapes")(
    SyntheticShapes(
        "synthetic-shapes",
        "1-4 flat shapes on a noisy textured background at 32x32: shape and colour class of"
        " the largest object (classification), object count and the largest's area"
        " (regression).",
        {
            1: Protocol(
                version=1,
                image_size=32,
                train_size=4096,
                test_size=1024,
                epochs=12,
                batch_size=32,
                seeds=(0, 1, 2),
                backbones=("small-cnn",),
                max_lr=0.1,
                # The default models have 28k (hard-sharing) and 106k (single-task) parameters.
                max_parameters=5_000_000,
                baseline_optimizer=ADAM,
                resources=Resources(cpus=1, gpus=0),
                description="32x32, 4096 train / 1024 test images, 12 epochs, batch 32, 3 seeds.",
            )
        },
    )
)

BENCHMARKS.register("synthetic-shapes-mini")(
    SyntheticShapes(
        "synthetic-shapes-mini",
        "A seconds-long smoke-test variant of synthetic-shapes (few images): "
        "check that a spec runs end to end before submitting it for real.",
        {
            1: Protocol(
                version=1,
                image_size=32,
                train_size=64,
                test_size=32,
                epochs=3,
                batch_size=16,
                seeds=(0, 1, 2),
                backbones=("small-cnn",),
                max_lr=0.1,
                max_parameters=1_000_000,
                baseline_optimizer=ADAM,
                resources=Resources(cpus=1, gpus=0),
                description="32x32, 64 train / 32 test images, 3 epochs, batch 16, 3 seeds.",
            )
        },
    )
)
