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

import torch

from runners.benchmarks import shapes
from runners.benchmarks.base import (
    BENCHMARKS,
    Batch,
    Protocol,
    Resources,
)
from runners.benchmarks.render_cache import RenderedBenchmark
from runners.tasks import Classification, Regression

TASKS = (
    Classification("shape", num_classes=len(shapes.SHAPE_NAMES)),
    Classification("colour", num_classes=len(shapes.COLOUR_NAMES)),
    Regression("count"),
    Regression("size"),
)


class SyntheticShapes(RenderedBenchmark):
    family = "synthetic-shapes"
    tasks = TASKS
    render = staticmethod(shapes.render_split)

    def load(self, split: str, protocol: Protocol) -> Batch:
        """`image` (N, 3, H, W) in [-0.5, 0.5]; `shape`, `colour` int64 and `count`, `size` (N,)."""
        image, arrays = self.rendered(split, protocol)
        return {
            "image": image,
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
                # The default models need 7 (hard-sharing) to 33 (mtan) MFLOP per image.
                max_flops=250_000_000,
                baseline_optimizer=ADAM,
                resources=Resources(cpus=1, gpus=0),
                time_limit_s=30 * 60.0,
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
                max_flops=250_000_000,
                baseline_optimizer=ADAM,
                resources=Resources(cpus=1, gpus=0),
                time_limit_s=10 * 60.0,
                description="32x32, 64 train / 32 test images, 3 epochs, batch 16, 3 seeds.",
            )
        },
    )
)
