"""CGC: shared and task-specific expert backbones, one gate per task."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from runners.models.base import ARCHITECTURES, BackboneChoice, Encoder, MultiTaskModel
from runners.models.gating import SoftmaxGate, mixture
from runners.models.heads import HeadWidth, make_head
from runners.tasks import Task

SharedExperts = Annotated[
    int, Field(ge=1, le=8, description="expert backbones shared by all tasks")
]
TaskExperts = Annotated[int, Field(ge=1, le=8, description="expert backbones of each task's own")]


@ARCHITECTURES.register("cgc")
class CGC(MultiTaskModel):
    """Customised Gate Control (Tang, Liu, Zhao & Gong, RecSys 2020).

    For dense and image-level tasks: S shared expert backbones e_1..e_S
    and, per task t, E experts of its own e_t1..e_tE; task t's head reads the
    mixture of the shared experts and its own,

        y_t = h_t(sum_i g_t(x)_i f_i(x)),   f = (e_1, ..., e_S, e_t1, ..., e_tE),
        g_t(x) = softmax(W_t pool(f_1(x), ..., f_(S+E)(x)) + b_t),

    the single-level PLE of the paper (its Figure 4).  As in LibMTL's CGC
    (`LibMTL/architecture/CGC.py`), an expert is a whole backbone; the gate
    reads the experts' pooled features, as `mmoe` does, where LibMTL's reads
    the flattened image.  Defaults: one shared expert and one per task (the
    paper leaves the numbers to tuning); with 3 tasks that is 4 backbones,
    within every protocol's model size.

    The shared representation is the concatenation of the shared experts'
    features: a task's own experts, gate and head are its own, and its own
    experts read the image, not z.  Under paired initialisation the shared
    experts are built first, so the first one starts as hard sharing's encoder.
    """

    def __init__(
        self,
        tasks: tuple[Task, ...],
        backbone: str | BackboneChoice,
        *,
        head_width: HeadWidth = 16,
        num_shared_experts: SharedExperts = 1,
        num_task_experts: TaskExperts = 1,
    ):
        super().__init__(tasks, backbone)
        self.shared_experts = nn.ModuleList(
            [self.backbone.build() for _ in range(num_shared_experts)]
        )
        self.task_experts = nn.ModuleDict(
            {
                t.name: nn.ModuleList([self.backbone.build() for _ in range(num_task_experts)])
                for t in tasks
            }
        )
        expert: Encoder = self.shared_experts[0]  # type: ignore[assignment]
        self.channels = expert.out_channels
        experts_per_gate = num_shared_experts + num_task_experts
        self.gates = nn.ModuleDict(
            {t.name: SoftmaxGate(self.channels, experts_per_gate) for t in tasks}
        )
        self.heads = nn.ModuleDict(
            {t.name: make_head(t, self.channels, head_width, expert.stride) for t in tasks}
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        representation = torch.cat([expert(image) for expert in self.shared_experts], dim=1)
        c = self.channels
        shared = [representation[:, i * c : (i + 1) * c] for i in range(len(self.shared_experts))]
        outputs = {}
        for task in self.tasks:
            own = [expert(image) for expert in self.task_experts[task.name]]  # type: ignore[attr-defined]
            experts = [*shared, *own]
            mixed = mixture(self.gates[task.name](experts), experts)
            outputs[task.name] = self.heads[task.name](mixed)
        return representation, outputs

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.shared_experts.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [
            *self.task_experts[task].parameters(),
            *self.gates[task].parameters(),
            *self.heads[task].parameters(),
        ]
