"""ImageNet weights of backbones, read from a local folder: nothing is ever downloaded.

Whether a backbone starts from ImageNet weights is the protocol's choice
(`Protocol.pretrained_backbones`), never a spec's: a spec names no file.  The
weights of backbone B are the file `B.weights_file` (e.g. `resnet50.pth`: a
torchvision state dict, renamed) in `$MTLB_WEIGHTS_DIR`, by default the
`weights` folder of the data root.
"""

from __future__ import annotations

from pathlib import Path

import torch

from runners.paths import WEIGHTS_DIR_ENV, weights_dir

__all__ = ["WEIGHTS_DIR_ENV", "MissingWeightsError", "load_weights", "weights_path"]


class MissingWeightsError(FileNotFoundError):
    """The protocol asks for ImageNet weights that are not in the weights folder."""


def weights_path(backbone: str, file: str | None, folder: Path | None = None) -> Path:
    """Where backbone `backbone`'s weights `file` must be (in `folder`, by default
    `runners.paths.weights_dir()`); raises if it has none or they are not there."""
    if file is None:
        raise ValueError(
            f"backbone {backbone!r} has no ImageNet weights, and the protocol asks for them"
        )
    path = (folder or weights_dir()) / file
    if not path.is_file():
        raise MissingWeightsError(
            f"the protocol starts backbone {backbone!r} from ImageNet weights, expected in {path},"
            f" which does not exist: put the weights there (a torchvision state dict), or set"
            f" {WEIGHTS_DIR_ENV} to the folder that holds {file}"
        )
    return path


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from `path` (see `weights_path`): tensors only, nothing unpickled."""
    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    return state
