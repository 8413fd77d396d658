"""The on-disk cache of procedurally rendered splits, shared by the synthetic benchmarks."""

from __future__ import annotations

import abc
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from runners.benchmarks.base import Benchmark, Protocol
from runners.paths import data_root

# render(split, count, size=..., version=...) -> arrays of the split
Renderer = Callable[..., dict[str, np.ndarray]]


def cached_split(
    benchmark: str, render: Renderer, split: str, count: int, size: int, version: int
) -> dict[str, np.ndarray]:
    """Render a split once; later calls (and other processes) read the cached file."""
    path = data_root() / benchmark / f"v{version}" / f"{split}-{size}px-{count}.npz"
    if not path.exists():
        arrays = render(split, count, size=size, version=version)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so that concurrent jobs never read a partial file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            # numpy's stub misreads **kwargs as its allow_pickle flag.
            np.savez(f, **arrays)  # type: ignore[arg-type]
        Path(tmp).replace(path)
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


class RenderedBenchmark(Benchmark):
    """A procedurally rendered benchmark: its splits come from `render`, cached on disk."""

    # The cache folder under the data root, shared by the variants of one family
    # (synthetic-scenes and synthetic-scenes-mini render the same scenes).
    family: ClassVar[str]
    # Splits are rendered with the renderer of this version (part of the cache key).
    render_version: ClassVar[int] = 1

    def __init__(self, name: str, description: str, protocols: dict[int, Protocol]) -> None:
        self.name = name
        self.description = description
        self.protocols = protocols

    @staticmethod
    @abc.abstractmethod
    def render(split: str, count: int, *, size: int, version: int) -> dict[str, np.ndarray]:
        """The arrays of a split; `image` (N, H, W, 3) uint8."""

    def rendered(
        self, split: str, protocol: Protocol
    ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """The split's images, (N, 3, H, W) channels_last in [-0.5, 0.5], and all its arrays."""
        count = {"train": protocol.train_size, "test": protocol.test_size}[split]
        arrays = cached_split(
            self.family, self.render, split, count, protocol.image_size, self.render_version
        )
        image = torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2).float() / 255.0 - 0.5
        return image.contiguous(memory_format=torch.channels_last), arrays
