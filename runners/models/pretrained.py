"""ImageNet weights of backbones, read from a local folder: nothing is ever downloaded.

Whether a backbone starts from ImageNet weights is the protocol's choice
(`Protocol.pretrained_backbones`), never a spec's: a spec names no file.  The
weights of backbone B are the file `B.weights_file` (e.g. `resnet50.pth`: a
torchvision state dict, renamed) in `$MTLB_WEIGHTS_DIR`, by default the
`weights` folder of the data root.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from runners.benchmarks.base import data_root
from runners.models.base import BACKBONES

WEIGHTS_DIR_ENV = "MTLB_WEIGHTS_DIR"


class MissingWeightsError(FileNotFoundError):
    """The protocol asks for ImageNet weights that are not in the weights folder."""


def weights_dir() -> Path:
    return Path(os.environ.get(WEIGHTS_DIR_ENV, data_root() / "weights"))


def weights_path(backbone: str) -> Path:
    """Where backbone `backbone`'s ImageNet weights must be; raises if they are not there."""
    file = BACKBONES.get(backbone).weights_file
    if file is None:
        raise ValueError(
            f"backbone {backbone!r} has no ImageNet weights, and the protocol asks for them"
        )
    path = weights_dir() / file
    if not path.is_file():
        raise MissingWeightsError(
            f"the protocol starts backbone {backbone!r} from ImageNet weights, expected in {path},"
            f" which does not exist: put the weights there (a torchvision state dict), or set"
            f" {WEIGHTS_DIR_ENV} to the folder that holds {file}"
        )
    return path


def load_weights(backbone: str) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(
        weights_path(backbone), map_location="cpu", weights_only=True
    )
    return state
