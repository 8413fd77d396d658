"""NDDR-CNN: one network per task, fused by learnt 1x1 convolutions after each stage."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from runners.models.base import ARCHITECTURES, BackboneChoice, Encoder, Memory, MultiTaskModel
from runners.models.heads import HeadWidth, make_head
from runners.tasks import Task


class NDDRLayer(nn.Module):
    """Task t's fusion: 1x1 conv of every task's features concatenated, then BN and ReLU.

    (B, T*C, h, w) -> (B, C, h, w).  The convolution starts as alpha times
    the identity on task t's own C channels and beta times the identity on
    each other task's; batch norm as 1 and 0 with momentum 0.05 (the NDDR-CNN
    repository's, kept by Vandenhende et al.).
    """

    def __init__(self, num_tasks: int, task: int, channels: int, alpha: float, beta: float):
        super().__init__()
        self.conv = nn.Conv2d(num_tasks * channels, channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(channels, momentum=0.05)
        self.relu = nn.ReLU(inplace=True)
        eye = torch.eye(channels)
        blocks = [(alpha if u == task else beta) * eye for u in range(num_tasks)]
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat(blocks, dim=1)[:, :, None, None])

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu(self.norm(self.conv(stacked)))
        return out


@ARCHITECTURES.register("nddr-cnn")
class NDDRCNN(MultiTaskModel):
    """NDDR-CNN (Gao, Ma, Zhao, Liu & Yuille, CVPR 2019).

    Neural discriminative dimensionality reduction.  A backbone per task, as
    in `cross-stitch`; after every stage s but the last, task t continues from

        x_t <- ReLU(BN(W_t^s [x_1, ..., x_T])),

    a 1x1 convolution of all tasks' features concatenated along the
    channels (the NDDR layer), initialised to alpha on t's own channels and
    beta on the others' (the paper's (0.9, 0.1)).  Follows Vandenhende et
    al.'s PyTorch reimplementation (`models/nddr_cnn.py` of
    Multi-Task-Learning-PyTorch), with one NDDR layer after each stage but
    the last.  The paper also trains the NDDR layers at a larger learning
    rate; here the optimiser's single rate applies (a spec has one).

    The shared representation is the concatenation of the tasks' features
    after their next-to-last stage: the last NDDR layer into task t, t's last
    stage and its head are its own.
    """

    def __init__(
        self,
        tasks: tuple[Task, ...],
        backbone: str | BackboneChoice,
        *,
        head_width: HeadWidth = 16,
        alpha: Annotated[
            float, Field(ge=0, le=1, description="initial weight of a task's own channels")
        ] = 0.9,
        beta: Annotated[
            float, Field(ge=0, le=1, description="initial weight of each other task's channels")
        ] = 0.1,
    ):
        super().__init__(tasks, backbone)
        encoders = [self.backbone.build() for _ in tasks]
        self.encoders = nn.ModuleList(encoders)
        encoder = encoders[0]
        self.num_stages = len(encoder.stages)
        self.split = encoder.stage_channels[-2] if self.num_stages > 1 else 3
        # nddr[s][t]: the fusion into task t after stage s.
        self.nddr = nn.ModuleList(
            [
                nn.ModuleList([NDDRLayer(len(tasks), t, c, alpha, beta) for t in range(len(tasks))])
                for c in encoder.stage_channels[:-1]
            ]
        )
        self.heads = nn.ModuleDict(
            {t.name: make_head(t, encoder.out_channels, head_width, encoder.stride) for t in tasks}
        )

    def encoder(self, t: int) -> Encoder:
        encoder: Encoder = self.encoders[t]  # type: ignore[assignment]
        return encoder

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        memories: list[Memory] = [[] for _ in self.tasks]
        xs = [image for _ in self.tasks]
        last = self.num_stages - 1
        for s in range(last):
            xs = [
                self.encoder(t).run_stage(s, x, memory)
                for t, (x, memory) in enumerate(zip(xs, memories, strict=True))
            ]
            if s < last - 1:
                stacked = torch.cat(xs, dim=1)
                layers: nn.ModuleList = self.nddr[s]  # type: ignore[assignment]
                xs = [layer(stacked) for layer in layers]
        representation = torch.cat(xs, dim=1)
        outputs = {}
        for t, task in enumerate(self.tasks):
            x = self.nddr[last - 1][t](representation) if last > 0 else image  # type: ignore[index]
            x = self.encoder(t).run_stage(last, x, memories[t])
            outputs[task.name] = self.heads[task.name](x)
        return representation, outputs

    def shared_parameters(self) -> list[nn.Parameter]:
        last = self.num_stages - 1
        early = [
            p
            for s in range(last)
            for t in range(len(self.tasks))
            for p in self.encoder(t).stages[s].parameters()
        ]
        return [*early, *self.nddr[: max(0, last - 1)].parameters()]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        t = [x.name for x in self.tasks].index(task)
        last = self.num_stages - 1
        fusion = list(self.nddr[last - 1][t].parameters()) if last > 0 else []  # type: ignore[index]
        return [
            *fusion,
            *self.encoder(t).stages[last].parameters(),
            *self.heads[task].parameters(),
        ]
