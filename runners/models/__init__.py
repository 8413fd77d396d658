"""Backbones and multi-task architectures; importing this package registers them."""

from runners.models import (
    architectures,
    backbones,
    branched,
    cgc,
    cross_stitch,
    dselect_k,
    ltb,
    mmoe,
    mtan,
    mti_net,
    nddr_cnn,
    pad_net,
    ple,
    resnet,
    segnet,
)
from runners.models.base import (
    ARCHITECTURES,
    BACKBONES,
    BackboneChoice,
    Encoder,
    MultiTaskModel,
)

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "BackboneChoice",
    "Encoder",
    "MultiTaskModel",
    "architectures",
    "backbones",
    "branched",
    "cgc",
    "cross_stitch",
    "dselect_k",
    "ltb",
    "mmoe",
    "mtan",
    "mti_net",
    "nddr_cnn",
    "pad_net",
    "ple",
    "resnet",
    "segnet",
]
