"""Where the runners keep files on disk: one place, imported by benchmarks and models alike."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "MTLB_DATA_ROOT"
WEIGHTS_DIR_ENV = "MTLB_WEIGHTS_DIR"


def data_root() -> Path:
    """Where generated and real datasets live (MTLB_DATA_ROOT, else ~/.cache/mtlb)."""
    return Path(os.environ.get(DATA_ROOT_ENV, Path.home() / ".cache" / "mtlb"))


def weights_dir() -> Path:
    """Where ImageNet weights of backbones live (MTLB_WEIGHTS_DIR, else <data root>/weights)."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV, data_root() / "weights"))
