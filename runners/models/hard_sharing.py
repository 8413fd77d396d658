"""Hard parameter sharing: one backbone for every task, one head per task."""

from __future__ import annotations

import torch
from torch import nn

from runners.models.base import ARCHITECTURES, BackboneChoice, MultiTaskModel
from runners.models.heads import HeadWidth, make_head
from runners.tasks import Task


@ARCHITECTURES.register("hard-sharing")
class HardSharing(MultiTaskModel):
    """Hard parameter sharing: one shared backbone, one decoder head per task (Caruana 1997)."""

    def __init__(
        self, tasks: tuple[Task, ...], backbone: str | BackboneChoice, *, head_width: HeadWidth = 16
    ):
        super().__init__(tasks, backbone)
        encoder = self.backbone.build()
        self.encoder = encoder
        self.heads = nn.ModuleDict(
            {t.name: make_head(t, encoder.out_channels, head_width, encoder.stride) for t in tasks}
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        representation = self.encoder(image)
        return representation, {name: head(representation) for name, head in self.heads.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self.heads[task].parameters())
