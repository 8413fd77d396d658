"""MMoE: a mixture of expert backbones, with one gate per task."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from runners.models.base import ARCHITECTURES, BackboneChoice, MultiTaskModel
from runners.models.heads import HeadWidth, make_head
from runners.tasks import Task


@ARCHITECTURES.register("mmoe")
class MMoE(MultiTaskModel):
    """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018), for dense and image-level tasks.

    E expert backbones e_1..e_E see the image; task t's head reads

        sum_i g_t(x)_i e_i(x),    g_t(x) = softmax(W_t pool(e_1(x), ..., e_E(x)) + b_t),

    a mixture with one weight per expert and image: the gate of the paper
    reads the input, here the globally average-pooled expert features (an
    image's pixels are too many for a linear gate).  The shared
    representation is the concatenation of the experts' features; each
    task's gate and head are its own.
    """

    def __init__(
        self,
        tasks: tuple[Task, ...],
        backbone: str | BackboneChoice,
        *,
        head_width: HeadWidth = 16,
        num_experts: Annotated[int, Field(ge=1, le=16, description="expert backbones")] = 3,
    ):
        super().__init__(tasks, backbone)
        experts = [self.backbone.build() for _ in range(num_experts)]
        self.experts = nn.ModuleList(experts)
        expert = experts[0]
        self.channels = expert.out_channels
        self.gates = nn.ModuleDict(
            {t.name: nn.Linear(num_experts * self.channels, num_experts) for t in tasks}
        )
        self.heads = nn.ModuleDict(
            {t.name: make_head(t, self.channels, head_width, expert.stride) for t in tasks}
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        representation = torch.cat([expert(image) for expert in self.experts], dim=1)
        pooled = representation.mean(dim=(2, 3))
        c = self.channels
        features = [representation[:, i * c : (i + 1) * c] for i in range(len(self.experts))]
        outputs = {}
        for task in self.tasks:
            gate = F.softmax(self.gates[task.name](pooled), dim=1)[:, :, None, None]
            mixed = gate[:, 0:1] * features[0]
            for i in range(1, len(features)):
                mixed = mixed + gate[:, i : i + 1] * features[i]
            outputs[task.name] = self.heads[task.name](mixed)
        return representation, outputs

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.experts.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [*self.gates[task].parameters(), *self.heads[task].parameters()]
