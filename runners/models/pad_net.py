"""PAD-Net: initial task predictions distilled into the final ones."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from runners.models.backbones import conv_bn_relu
from runners.models.base import (
    ARCHITECTURES,
    BackboneChoice,
    MultiTaskModel,
    auxiliary_key,
)
from runners.models.heads import HeadWidth, make_head, upsample
from runners.tasks import Task


class Message(nn.Module):
    """Attention-guided message from one task's features: conv(F) * sigmoid(conv'(F))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.features = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.attention = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x) * torch.sigmoid(self.attention(x))
        return out


@ARCHITECTURES.register("pad-net")
class PADNet(MultiTaskModel):
    """PAD-Net (Xu, Ouyang, Wang & Sebe, CVPR 2018): a decoder-focused architecture.

    A shared backbone; per task an intermediate branch (two 3x3 conv-BN-ReLU
    layers) gives features F_t and, through a 1x1 projection, an initial
    prediction, supervised with the task's loss (deep supervision: the
    prediction `"<task>/aux"`, weighted by `auxiliary_weight`).  Multi-modal
    distillation then passes attention-guided messages between tasks
    (distillation module C of the paper, as reimplemented by Vandenhende et
    al.):

        F_t^o = F_t + sum_(u != t) conv_ut(F_u) * sigmoid(conv'_ut(F_u)),

    and each task's decoder head predicts from F_t^o.  Image-level tasks take
    part unchanged: the messages pass between feature maps F_u, which every
    task has, not between predictions; only a task's initial prediction and
    head are pooled (one value per image; see `make_head`).  The shared
    representation is the concatenation of the F_t: each F_u feeds every
    task's distillation, so the branches are shared; a task's projection,
    messages into it and head are its own.
    """

    def __init__(
        self,
        tasks: tuple[Task, ...],
        backbone: str | BackboneChoice,
        *,
        head_width: HeadWidth = 16,
        auxiliary_weight: Annotated[
            float,
            Field(ge=0, le=10, description="weight of the initial predictions' losses"),
        ] = 1.0,
    ):
        super().__init__(tasks, backbone)
        self.auxiliary_weight = auxiliary_weight
        self.encoder = self.backbone.build()
        c, w = self.encoder.out_channels, head_width
        self.width = w
        self.intermediate = nn.ModuleDict(
            {t.name: nn.Sequential(conv_bn_relu(c, w), conv_bn_relu(w, w)) for t in tasks}
        )
        self.initial = nn.ModuleDict({t.name: nn.Conv2d(w, t.out_channels, 1) for t in tasks})
        # messages[t][u]: from task u into task t.
        self.messages = nn.ModuleDict(
            {
                t.name: nn.ModuleDict({u.name: Message(w) for u in tasks if u.name != t.name})
                for t in tasks
            }
        )
        self.heads = nn.ModuleDict(
            {t.name: make_head(t, w, head_width, self.encoder.stride) for t in tasks}
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        shared = self.encoder(image)
        representation = torch.cat([self.intermediate[t.name](shared) for t in self.tasks], dim=1)
        w = self.width
        features = {
            t.name: representation[:, i * w : (i + 1) * w] for i, t in enumerate(self.tasks)
        }
        outputs = {}
        for task in self.tasks:
            distilled = features[task.name]
            for source, message in self.messages[task.name].items():  # type: ignore[operator]
                distilled = distilled + message(features[source])
            outputs[task.name] = self.heads[task.name](distilled)
            if self.training:
                initial = self.initial[task.name](features[task.name])
                # Image-level: the mean over pixels of a 1x1 projection, i.e. a linear map
                # of the pooled features.
                outputs[auxiliary_key(task.name)] = (
                    upsample(initial, self.encoder.stride)
                    if task.dense
                    else initial.mean(dim=(2, 3))
                )
        return representation, outputs

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.intermediate.parameters()]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [
            *self.initial[task].parameters(),
            *self.messages[task].parameters(),
            *self.heads[task].parameters(),
        ]
