"""Cross-stitch networks: soft parameter sharing between one network per task."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from runners.models.base import ARCHITECTURES, BackboneChoice, Encoder, Memory, MultiTaskModel
from runners.models.heads import HeadWidth, make_head
from runners.tasks import Task


@ARCHITECTURES.register("cross-stitch")
class CrossStitch(MultiTaskModel):
    """Cross-stitch networks (Misra et al., CVPR 2016): a backbone per task, mixed after each stage.

    After every backbone stage s but the last, task t continues from a learnt
    linear combination of all tasks' features,

        x_t <- sum_u alpha[s, t, u] x_u,

    with alpha initialised to `alpha_self` on the diagonal and
    (1 - alpha_self) / (T - 1) elsewhere (the paper's 0.9 / 0.1 for two
    tasks).  The shared representation is the concatenation of the tasks'
    inputs to their last stage: each task's last stage and head are its own.
    """

    def __init__(
        self,
        tasks: tuple[Task, ...],
        backbone: str | BackboneChoice,
        *,
        head_width: HeadWidth = 16,
        alpha_self: Annotated[
            float, Field(ge=0, le=1, description="initial weight of a task's own features")
        ] = 0.9,
    ):
        super().__init__(tasks, backbone)
        num_tasks = len(tasks)
        encoders = [self.backbone.build() for _ in tasks]
        self.encoders = nn.ModuleList(encoders)
        encoder = encoders[0]
        self.num_stages = len(encoder.stages)
        other = (1 - alpha_self) / (num_tasks - 1) if num_tasks > 1 else 0.0
        init = torch.full((num_tasks, num_tasks), other)
        init.fill_diagonal_(alpha_self)
        self.alpha = nn.Parameter(init.repeat(self.num_stages - 1, 1, 1))
        # Channels of each task's input to its last stage, to slice the representation.
        self.split = encoder.stage_channels[-2] if self.num_stages > 1 else 3
        self.heads = nn.ModuleDict(
            {t.name: make_head(t, encoder.out_channels, head_width, encoder.stride) for t in tasks}
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        memories: list[Memory] = [[] for _ in self.tasks]
        xs = [image for _ in self.tasks]
        for s in range(self.num_stages - 1):
            xs = [
                self.encoder(t).run_stage(s, x, memory)
                for t, (x, memory) in enumerate(zip(xs, memories, strict=True))
            ]
            xs = stitch(self.alpha[s], xs)
        representation = torch.cat(xs, dim=1)
        outputs = {}
        for t, task in enumerate(self.tasks):
            x = representation[:, t * self.split : (t + 1) * self.split]
            x = self.encoder(t).run_stage(self.num_stages - 1, x, memories[t])
            outputs[task.name] = self.heads[task.name](x)
        return representation, outputs

    def encoder(self, t: int) -> Encoder:
        encoder: Encoder = self.encoders[t]  # type: ignore[assignment]
        return encoder

    def shared_parameters(self) -> list[nn.Parameter]:
        # In forward order: stage by stage, the copies' stages and then the stitches.
        early = [
            p
            for s in range(self.num_stages - 1)
            for t in range(len(self.tasks))
            for p in self.encoder(t).stages[s].parameters()
        ]
        return [*early, self.alpha]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        t = [x.name for x in self.tasks].index(task)
        return [*self.encoder(t).stages[-1].parameters(), *self.heads[task].parameters()]


def stitch(alpha: torch.Tensor, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """x_t <- sum_u alpha[t, u] x_u, as sums of scaled tensors: unlike an einsum, keeps NHWC."""
    mixed = []
    for t in range(len(xs)):
        acc = alpha[t, 0] * xs[0]
        for u in range(1, len(xs)):
            acc = acc + alpha[t, u] * xs[u]
        mixed.append(acc)
    return mixed
