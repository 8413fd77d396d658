"""The single-task architecture: no sharing at all, the baseline of every Δm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from runners.models.base import ARCHITECTURES, BackboneChoice, Encoder, MultiTaskModel
from runners.models.heads import HeadWidth, make_head
from runners.tasks import Task


@ARCHITECTURES.register("single-task")
class SingleTask(MultiTaskModel):
    """One independent network (backbone + head) per task: the STL baseline."""

    single_task: ClassVar[bool] = True

    @classmethod
    def provides_representation(
        cls, task_names: tuple[str, ...], backbone: type[Encoder], params: Mapping[str, Any]
    ) -> bool:
        return False

    allowed_weightings: ClassVar[frozenset[str] | None] = frozenset({"equal"})

    def __init__(
        self, tasks: tuple[Task, ...], backbone: str | BackboneChoice, *, head_width: HeadWidth = 16
    ):
        super().__init__(tasks, backbone)
        encoders = {t.name: self.backbone.build() for t in tasks}
        self.encoders = nn.ModuleDict(encoders)
        self.heads = nn.ModuleDict(
            {
                t.name: make_head(
                    t, encoders[t.name].out_channels, head_width, encoders[t.name].stride
                )
                for t in tasks
            }
        )

    def forward(self, image: torch.Tensor) -> tuple[None, dict[str, torch.Tensor]]:
        return None, {name: self.heads[name](enc(image)) for name, enc in self.encoders.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        return []

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [*self.encoders[task].parameters(), *self.heads[task].parameters()]
