"""The on-disk cache of procedurally rendered splits, shared by the synthetic benchmarks."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runners.benchmarks.base import data_root

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
