"""`synthetic-scenes`: ray-cast rooms with exact segmentation, depth and normals.

No download: the scenes are rendered by `runners.benchmarks.scenes`, each
deterministic from (split, index, version), and cached on disk under the
data root so that every job of a campaign reads the same bytes.
"""

from __future__ import annotations

import torch

from runners.benchmarks import scenes
from runners.benchmarks.base import (
    BENCHMARKS,
    Batch,
    Protocol,
    Resources,
)
from runners.benchmarks.render_cache import RenderedBenchmark
from runners.tasks import Depth, Normal, Segmentation

TASKS = (
    Segmentation("segmentation", num_classes=len(scenes.CLASS_NAMES)),
    Depth("depth"),
    Normal("normal"),
)


class SyntheticScenes(RenderedBenchmark):
    family = "synthetic-scenes"
    tasks = TASKS
    render = staticmethod(scenes.render_split)

    def load(self, split: str, protocol: Protocol) -> Batch:
        image, arrays = self.rendered(split, protocol)
        return {
            "image": image,
            "segmentation": torch.from_numpy(arrays["segmentation"]).long(),
            "depth": torch.from_numpy(arrays["depth"])[:, None].contiguous(),
            "normal": torch.from_numpy(arrays["normal"]).permute(0, 3, 1, 2).contiguous(),
        }


ADAM = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}

BENCHMARKS.register("synthetic-scenes")(
    SyntheticScenes(
        "synthetic-scenes",
        "Ray-cast 3-D rooms with boxes, spheres and cylinders; 6-class segmentation, "
        "depth and surface normals at 64x64 (the NYUv2 task set at laptop scale).",
        {
            1: Protocol(
                version=1,
                image_size=64,
                train_size=1024,
                test_size=256,
                epochs=10,
                batch_size=32,
                seeds=(0, 1, 2),
                backbones=("small-cnn",),
                max_lr=0.1,
                # The default models have 47k (hard-sharing) and 99k (single-task) parameters.
                max_parameters=5_000_000,
                baseline_optimizer=ADAM,
                resources=Resources(cpus=1, gpus=0),
                tuning_trials=8,
                validation_fraction=0.2,
                checkpoint_every=1,
                description="64x64, 1024 train / 256 test scenes, 10 epochs, batch 32, 3 seeds.",
            )
        },
    )
)

BENCHMARKS.register("synthetic-scenes-mini")(
    SyntheticScenes(
        "synthetic-scenes-mini",
        "A seconds-long smoke-test variant of synthetic-scenes (32x32, few scenes): "
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
                # A smoke test that runs in seconds: wide heads (over ~170 channels) are refused.
                max_parameters=1_000_000,
                baseline_optimizer=ADAM,
                resources=Resources(cpus=1, gpus=0),
                tuning_trials=2,
                validation_fraction=0.2,
                checkpoint_every=1,
                description="32x32, 64 train / 32 test scenes, 3 epochs, batch 16, 3 seeds.",
            )
        },
    )
)
