"""The small CNN of the embedded benchmark, and the pieces other backbones share."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field
from torch import nn

from runners.models.base import BACKBONES, Encoder, scaled

WidthMultiplier = Annotated[
    float, Field(gt=0, le=4, description="multiplies the channels of every stage")
]


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


@BACKBONES.register("small-cnn")
class SmallCNN(Encoder):
    """Five 3x3 conv-BN-ReLU layers, two of them strided: 64x64 in, 16x16 x 32 out.

    Three stages: one layer at full resolution (16 channels), two at 1/2
    (32), two at 1/4 (32); channels times `width_multiplier`.
    """

    num_stages: ClassVar[int] = 3

    def __init__(self, *, width_multiplier: WidthMultiplier = 1.0) -> None:
        super().__init__()
        w = scaled(16, width_multiplier)
        self.stages = nn.ModuleList(
            [
                nn.Sequential(conv_bn_relu(3, w)),
                nn.Sequential(conv_bn_relu(w, w, stride=2), conv_bn_relu(w, 2 * w)),
                nn.Sequential(conv_bn_relu(2 * w, 2 * w, stride=2), conv_bn_relu(2 * w, 2 * w)),
            ]
        )
        self.stage_channels = (w, 2 * w, 2 * w)
        self.stage_strides = (1, 2, 4)
