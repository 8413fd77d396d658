"""PLE: CGC stacked over the backbone's stages, with a shared gate between levels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from runners.models.base import (
    ARCHITECTURES,
    BackboneChoice,
    Encoder,
    Memory,
    MultiTaskModel,
)
from runners.models.cgc import SharedExperts, TaskExperts
from runners.models.gating import SoftmaxGate, mixture
from runners.models.heads import HeadWidth, make_head
from runners.tasks import Task


@ARCHITECTURES.register("ple")
class PLE(MultiTaskModel):
    """Progressive Layered Extraction (Tang, Liu, Zhao & Gong, RecSys 2020).

    CGC at every backbone stage (an extraction level): S shared experts and
    E experts per task, each a copy of the backbone run stage by stage.  At
    level s, task t's experts and the shared ones read their own inputs
    x_t^s and x_shared^s, and

        x_t^(s+1)      = sum_i g_t^s(x)_i f_i^s,      f^s = (shared, t's own experts' stage s),
        x_shared^(s+1) = sum_i g_shared^s(x)_i f_i^s, f^s = (shared, every task's experts' stage s),

    with softmax gates reading the pooled features they mix (see
    `runners.models.gating`).  The last level has no shared gate, and task
    t's head reads x_t after the last stage: the paper's Figure 5.  LibMTL's
    PLE (`LibMTL/architecture/PLE.py`, ResNet only) drops the shared gate and
    runs the shared experts once per task on that task's input; here, as in
    the paper, they run once per level on the shared gate's output.
    Defaults as `cgc`: one shared expert and one per task.

    What is shared follows from the graph: below the last level every
    expert feeds the shared gate, and through it every task, so a task's own
    parameters are its experts' last stage, its gates of the last two levels
    and its head.  No shared representation: tasks' own gates sit between
    shared stages.
    """

    @classmethod
    def provides_representation(
        cls, task_names: tuple[str, ...], backbone: type[Encoder], params: Mapping[str, Any]
    ) -> bool:
        return False  # a task's own gate feeds shared experts' stages: no single z

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
        expert = self.expert(self.shared_experts, 0)
        channels = expert.stage_channels
        self.num_stages = len(channels)
        s_plus_e = num_shared_experts + num_task_experts
        self.task_gates = nn.ModuleDict(
            {t.name: nn.ModuleList([SoftmaxGate(c, s_plus_e) for c in channels]) for t in tasks}
        )
        everyone = num_shared_experts + len(tasks) * num_task_experts
        self.shared_gates = nn.ModuleList([SoftmaxGate(c, everyone) for c in channels[:-1]])
        self.heads = nn.ModuleDict(
            {t.name: make_head(t, expert.out_channels, head_width, expert.stride) for t in tasks}
        )

    @staticmethod
    def expert(experts: nn.ModuleList, index: int) -> Encoder:
        encoder: Encoder = experts[index]  # type: ignore[assignment]
        return encoder

    def forward(self, image: torch.Tensor) -> tuple[None, dict[str, torch.Tensor]]:
        names = [t.name for t in self.tasks]
        groups: dict[str, nn.ModuleList] = {"": self.shared_experts}
        groups.update({name: self.task_experts[name] for name in names})  # type: ignore[misc]
        # Each expert keeps its own memory (SegNet's pooling indices).
        memories: dict[str, list[Memory]] = {g: [[] for _ in e] for g, e in groups.items()}
        inputs = dict.fromkeys(groups, image)
        for s in range(self.num_stages):
            out = {
                g: [
                    self.expert(experts, i).run_stage(s, inputs[g], memory)
                    for i, memory in enumerate(memories[g])
                ]
                for g, experts in groups.items()
            }
            for name in names:
                mixed = [*out[""], *out[name]]
                gate = self.task_gates[name][s]  # type: ignore[index]
                inputs[name] = mixture(gate(mixed), mixed)
            if s < self.num_stages - 1:
                everything = [f for g in groups for f in out[g]]
                inputs[""] = mixture(self.shared_gates[s](everything), everything)
        return None, {name: self.heads[name](inputs[name]) for name in names}

    def _stage_parameters(self, experts: nn.ModuleList, stages: range) -> list[nn.Parameter]:
        return [
            p
            for i in range(len(experts))
            for s in stages
            for p in self.expert(experts, i).stages[s].parameters()
        ]

    def shared_parameters(self) -> list[nn.Parameter]:
        below_last = range(self.num_stages - 1)
        task_early = [
            p
            for t in self.tasks
            for p in [
                *self._stage_parameters(self.task_experts[t.name], below_last),  # type: ignore[arg-type]
                *self.task_gates[t.name][: max(0, self.num_stages - 2)].parameters(),  # type: ignore[index]
            ]
        ]
        return [
            *self._stage_parameters(self.shared_experts, range(self.num_stages)),
            *self.shared_gates.parameters(),
            *task_early,
        ]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        last = range(self.num_stages - 1, self.num_stages)
        return [
            *self._stage_parameters(self.task_experts[task], last),  # type: ignore[arg-type]
            *self.task_gates[task][max(0, self.num_stages - 2) :].parameters(),  # type: ignore[index]
            *self.heads[task].parameters(),
        ]
