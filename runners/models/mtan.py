"""MTAN: task-specific attention modules over one shared backbone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from runners.models.backbones import conv_bn_relu
from runners.models.base import (
    ARCHITECTURES,
    BackboneChoice,
    Encoder,
    Memory,
    MultiTaskModel,
)
from runners.models.heads import HeadWidth, make_head
from runners.models.resize import bilinear
from runners.tasks import Task


def attention_module(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    """1x1 conv-BN-ReLU, 1x1 conv-BN-sigmoid: a soft mask in (0, 1) per channel and pixel."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_mid, 1, bias=False),
        nn.BatchNorm2d(c_mid),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_mid, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.Sigmoid(),
    )


def match_size(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Max-pool (as MTAN does) or bilinearly upsample `x` to the spatial size of `like`."""
    size, target = x.shape[-2:], like.shape[-2:]
    if size == target:
        return x
    if size[0] > target[0]:
        if size[0] % target[0] == 0 and size[1] % target[1] == 0:
            return F.max_pool2d(x, (size[0] // target[0], size[1] // target[1]))
        return F.adaptive_max_pool2d(x, target)
    return bilinear(x, (target[0], target[1]))


@ARCHITECTURES.register("mtan")
class MTAN(MultiTaskModel):
    """Multi-Task Attention Network (Liu, Johns & Davison, CVPR 2019).

    One shared backbone (the global feature pool) and, per task and stage s,
    an attention module that masks the stage's features p_s:

        a_t^1 = g_t^1(p_1) * p_1
        a_t^s = g_t^s([p_s, f_s(a_t^(s-1))]) * p_s     (s > 1)

    g_t^s is the task's attention module (1x1 convolutions, a sigmoid
    mask); f_s a 3x3 conv-BN-ReLU block shared by the tasks that brings the
    previous attended features to stage s's channels and resolution
    (max-pooling, or upsampling in a decoder).  Each task's head reads a_t
    at the last stage.  Two departures from the paper, so that any
    backbone's stages serve and the cost stays near the backbone's: the mask
    is computed from the stage's output rather than from features inside the
    stage, and f_s runs at the lower of the two resolutions (MTAN
    convolves, then pools: 4x the cost where the resolution halves).

    No shared representation: the shared blocks f_s sit between tasks' own
    modules, so gradient methods differentiate each task's loss with respect
    to the shared parameters.
    """

    @classmethod
    def provides_representation(
        cls, task_names: tuple[str, ...], backbone: type[Encoder], params: Mapping[str, Any]
    ) -> bool:
        return False  # every stage's output is attended per task: no single z

    def __init__(
        self,
        tasks: tuple[Task, ...],
        backbone: str | BackboneChoice,
        *,
        head_width: HeadWidth = 16,
        attention_reduction: Annotated[
            int,
            Field(
                ge=1,
                le=16,
                description="an attention module's hidden channels: the stage's / this;"
                " 1 as in MTAN's SegNet, 4 as in LibMTL's ResNet-50",
            ),
        ] = 1,
    ):
        super().__init__(tasks, backbone)
        self.encoder = self.backbone.build()
        channels = self.encoder.stage_channels
        self.attention = nn.ModuleDict(
            {
                t.name: nn.ModuleList(
                    [
                        attention_module(
                            c if s == 0 else 2 * c, max(1, c // attention_reduction), c
                        )
                        for s, c in enumerate(channels)
                    ]
                )
                for t in tasks
            }
        )
        self.shared_blocks = nn.ModuleList(
            [conv_bn_relu(channels[s], channels[s + 1]) for s in range(len(channels) - 1)]
        )
        self.heads = nn.ModuleDict(
            {
                t.name: make_head(t, self.encoder.out_channels, head_width, self.encoder.stride)
                for t in tasks
            }
        )

    def forward(self, image: torch.Tensor) -> tuple[None, dict[str, torch.Tensor]]:
        memory: Memory = []
        x = image
        attended: dict[str, torch.Tensor] = {}
        for s in range(len(self.encoder.stages)):
            x = self.encoder.run_stage(s, x, memory)
            for task in self.tasks:
                gate = self.attention[task.name][s]  # type: ignore[index]
                if s == 0:
                    mask = gate(x)
                else:
                    previous = self.shared_block(s - 1, attended[task.name], x)
                    mask = gate(torch.cat([x, previous], dim=1))
                attended[task.name] = mask * x
        return None, {t.name: self.heads[t.name](attended[t.name]) for t in self.tasks}

    def shared_block(self, index: int, attended: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """f_s: the shared block at the lower of the two resolutions, then resampled to `like`'s."""
        block = self.shared_blocks[index]
        if attended.shape[-1] >= like.shape[-1]:
            out: torch.Tensor = block(match_size(attended, like))
            return out
        return match_size(block(attended), like)

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.shared_blocks.parameters()]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [*self.attention[task].parameters(), *self.heads[task].parameters()]
