"""Task heads, shared by every architecture: a dense decoder or a pooled MLP per task."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from runners.models.backbones import conv_bn_relu
from runners.models.base import component_initialisation
from runners.models.resize import bilinear
from runners.tasks import Task

HeadWidth = Annotated[int, Field(ge=4, le=256, description="channels of the task decoder")]


class DecoderHead(nn.Module):
    """Features at 1/stride resolution -> full-resolution prediction for one task.

    Two conv stages, the first followed by a (stride/2)x bilinear upsampling
    and the second by a 2x one (none at stride 1), then a 1x1 projection to
    the task's channels.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.refine = nn.Sequential(conv_bn_relu(in_channels, width), conv_bn_relu(width, width))
        self.project = nn.Conv2d(width, out_channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.refine[0](features)
        x = upsample(x, self.stride // 2)
        x = self.refine[1](x)
        x = upsample(x, 2 if self.stride > 1 else 1)
        out: torch.Tensor = self.project(x)
        return out


class PooledHead(nn.Module):
    """Features (B, C, h, w) -> one prediction per image (B, out_channels).

    Global average pooling, then a small MLP: Linear(C, width), ReLU,
    Linear(width, out_channels).
    """

    def __init__(self, in_channels: int, out_channels: int, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, width), nn.ReLU(inplace=True), nn.Linear(width, out_channels)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mlp(features.mean(dim=(2, 3)))
        return out


def make_head(task: Task, in_channels: int, width: int, stride: int) -> nn.Module:
    """`task`'s head on features at 1/stride resolution; every architecture builds heads here.

    A dense task gets a `DecoderHead` (full-resolution prediction), an
    image-level one a `PooledHead` (one prediction per image; `stride` unused).
    """
    with component_initialisation(f"head/{task.name}"):
        if task.dense:
            return DecoderHead(in_channels, task.out_channels, width, stride)
        return PooledHead(in_channels, task.out_channels, width)


def upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    if factor <= 1:
        return x
    # The same sampling as F.interpolate(scale_factor=factor): the output is exactly factor x.
    return bilinear(x, (x.shape[-2] * factor, x.shape[-1] * factor))
