"""MTI-Net: task interactions at several scales of the backbone, propagated coarse to fine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import nn

from runners.models.backbones import conv_bn_relu
from runners.models.base import (
    ARCHITECTURES,
    BackboneChoice,
    Encoder,
    Memory,
    MultiTaskModel,
    auxiliary_key,
)
from runners.models.heads import HeadWidth, make_head
from runners.models.pad_net import Message
from runners.models.resize import bilinear
from runners.tasks import Task


def scale_stages(strides: tuple[int, ...], num_scales: int) -> list[int]:
    """The stages whose outputs are the scales, coarsest first.

    For each stride, the last stage with it (in an encoder-decoder, the
    decoder's); of those, the last `num_scales` in stage order, so the
    backbone's last stage is always one.  small-cnn (strides 1, 2, 4): all
    three stages; a dilated ResNet (4, 8, 8, 8): stages 0 and 3; SegNet:
    its last four decoder stages, at strides 8, 4, 2, 1.
    """
    last = {stride: index for index, stride in enumerate(strides)}
    chosen = sorted(last.values())[-num_scales:]
    return sorted(chosen, key=lambda index: -strides[index])


class SqueezeExcitation(nn.Module):
    """x * sigmoid(W2 relu(W1 pool(x))) (Hu et al., CVPR 2018), C / 16 hidden units, at least 4.

    The paper's reduction 16 leaves one hidden unit at 16 channels (also in
    MTI-Net's HRNet-18, 18 channels): at least 4.  The hidden biases start
    at 1 rather than PyTorch's small random values: the pooled input is
    non-negative (it follows a ReLU), so with negative biases every hidden
    unit can start dead, and a dead ReLU unit never learns.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(4, channels // 16)
        self.squeeze = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )
        first: nn.Linear = self.squeeze[0]  # type: ignore[assignment]
        nn.init.ones_(first.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.squeeze(x.mean(dim=(2, 3)))[:, :, None, None]


class FeaturePropagation(nn.Module):
    """MTI-Net's feature propagation module: what one scale passes to the next finer one.

    The tasks' features F_1..F_T (w channels each) are concatenated; a
    bottleneck (T w -> T w / 4 -> T w channels) gives per-channel logits,
    softmax over the tasks weighs each task's features, and the weighted
    stack is reduced to w channels, S; task t receives F_t + SE_t(S).
    """

    def __init__(self, num_tasks: int, width: int) -> None:
        super().__init__()
        stacked, narrow = num_tasks * width, max(1, num_tasks * width // 4)
        self.num_tasks = num_tasks
        self.non_linear = nn.Sequential(
            conv_bn_relu(stacked, narrow),
            conv_bn_relu(narrow, narrow),
            nn.Conv2d(narrow, stacked, 1),
        )
        self.reduce = conv_bn_relu(stacked, width)
        self.excite = nn.ModuleList([SqueezeExcitation(width) for _ in range(num_tasks)])

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        logits = self.non_linear(torch.cat(features, dim=1)).chunk(self.num_tasks, dim=1)
        mask = torch.softmax(torch.stack(logits), dim=0)
        shared = self.reduce(torch.cat([m * f for m, f in zip(mask, features, strict=True)], dim=1))
        return [f + se(shared) for f, se in zip(features, self.excite, strict=True)]


@ARCHITECTURES.register("mti-net")
class MTINet(MultiTaskModel):
    """MTI-Net (Vandenhende, Georgoulis & Van Gool, ECCV 2020): multi-scale task interaction.

    The backbone's features at K scales (`scale_stages`; HRNet's four in the
    paper).  From the coarsest scale to the finest, per task t a refinement
    (two 3x3 conv-BN-ReLU layers, w = `head_width` channels) of the scale's
    features, concatenated with what the coarser scale propagated, gives
    F_t^s and, through a 1x1 projection, an initial prediction (deep
    supervision of a dense task at all K scales: `"<task>/aux"`, weighted by
    `auxiliary_weight`); the feature propagation module
    (`FeaturePropagation`) passes the tasks' features, mixed, to the next
    finer scale.  At every scale, PAD-Net's multi-modal distillation
    (`runners.models.pad_net.Message`):

        D_t^s = F_t^s + sum_(u != t) conv_ut^s(F_u^s) * sigmoid(conv'_ut^s(F_u^s)),

    and task t's head reads its D_t^s of every scale, upsampled to the finest
    and concatenated.  Follows Vandenhende et al.'s implementation
    (`models/mti_net.py` of Multi-Task-Learning-PyTorch) with three changes so
    that any backbone serves: every per-task feature has w channels (there,
    the HRNet branch's), conv-BN-ReLU layers replace its residual blocks, and
    the propagation mask is a softmax over the tasks (there, over groups of
    T adjacent channels of the task-major stack).  Image-level tasks take part
    through their features, which interact as maps; their head is a pooled
    one, and they have no initial predictions: deep supervision at several
    scales is for dense maps (an image-level prediction has no scale).

    The refinements and propagation modules feed every task's distillation:
    they and the backbone are shared; a task's initial projections, the
    messages into it and its head are its own.  No single shared
    representation: the shared features live at several resolutions.
    """

    @classmethod
    def provides_representation(
        cls, task_names: tuple[str, ...], backbone: type[Encoder], params: Mapping[str, Any]
    ) -> bool:
        return False  # shared features at several resolutions: no single z

    def __init__(
        self,
        tasks: tuple[Task, ...],
        backbone: str | BackboneChoice,
        *,
        head_width: HeadWidth = 16,
        num_scales: Annotated[
            int,
            Field(
                ge=1,
                le=4,
                description="backbone scales the tasks interact at (at most one"
                " per stride the backbone has)",
            ),
        ] = 4,
        auxiliary_weight: Annotated[
            float, Field(ge=0, le=10, description="weight of the initial predictions' losses")
        ] = 1.0,
    ):
        super().__init__(tasks, backbone)
        self.auxiliary_weight = auxiliary_weight
        self.encoder = self.backbone.build()
        w, n = head_width, len(tasks)
        self.width = w
        self.scales = scale_stages(self.encoder.stage_strides, num_scales)
        channels = [self.encoder.stage_channels[s] for s in self.scales]
        self.refine = nn.ModuleList(
            [
                nn.ModuleList(
                    [
                        nn.Sequential(conv_bn_relu(c + (w if k > 0 else 0), w), conv_bn_relu(w, w))
                        for _ in tasks
                    ]
                )
                for k, c in enumerate(channels)
            ]
        )
        self.propagate = nn.ModuleList([FeaturePropagation(n, w) for _ in self.scales[:-1]])
        self.initial = nn.ModuleDict(
            {
                t.name: nn.ModuleList([nn.Conv2d(w, t.out_channels, 1) for _ in self.scales])
                for t in tasks
                if t.dense
            }
        )
        # messages[t][k][u]: at scale k, from task u into task t.
        self.messages = nn.ModuleDict(
            {
                t.name: nn.ModuleList(
                    [
                        nn.ModuleDict({u.name: Message(w) for u in tasks if u.name != t.name})
                        for _ in self.scales
                    ]
                )
                for t in tasks
            }
        )
        finest = self.encoder.stage_strides[self.scales[-1]]
        self.heads = nn.ModuleDict(
            {t.name: make_head(t, len(self.scales) * w, head_width, finest) for t in tasks}
        )

    def forward(self, image: torch.Tensor) -> tuple[None, dict[str, torch.Tensor]]:
        memory: Memory = []
        x = image
        at: dict[int, torch.Tensor] = {}
        for s in range(max(self.scales) + 1):
            x = self.encoder.run_stage(s, x, memory)
            at[s] = x
        names = [t.name for t in self.tasks]
        features: list[list[torch.Tensor]] = []  # [scale][task], coarsest scale first
        propagated: list[torch.Tensor] | None = None
        for k, stage in enumerate(self.scales):
            here = at[stage]
            size = (here.shape[-2], here.shape[-1])
            inputs = (
                [here] * len(names)
                if propagated is None
                else [torch.cat([here, bilinear(p, size)], dim=1) for p in propagated]
            )
            blocks: nn.ModuleList = self.refine[k]  # type: ignore[assignment]
            refined = [block(i) for block, i in zip(blocks, inputs, strict=True)]
            features.append(refined)
            if k < len(self.propagate):
                propagated = self.propagate[k](refined)
        finest = features[-1][0].shape[-2:]
        outputs = {}
        for t, task in enumerate(self.tasks):
            distilled = []
            for k, scale in enumerate(features):
                d = scale[t]
                for u, name in enumerate(names):
                    if u != t:
                        d = d + self.messages[task.name][k][name](scale[u])  # type: ignore[index]
                distilled.append(
                    bilinear(d, (finest[0], finest[1])) if k < len(features) - 1 else d
                )
            outputs[task.name] = self.heads[task.name](torch.cat(distilled, dim=1))
            if self.training and task.dense:
                size = (image.shape[-2], image.shape[-1])
                # All scales stacked along the batch: `training_loss` splits them.
                projections: nn.ModuleList = self.initial[task.name]  # type: ignore[assignment]
                outputs[auxiliary_key(task.name)] = torch.cat(
                    [
                        bilinear(projection(scale[t]), size)
                        for projection, scale in zip(projections, features, strict=True)
                    ]
                )
        return None, outputs

    def training_loss(
        self, task: Task, outputs: Mapping[str, torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        """`task`'s loss plus `auxiliary_weight` times the sum of its initial predictions' losses.

        The sum over scales, as Vandenhende et al.'s deep supervision loss.
        """
        loss = task.loss(outputs[task.name], target)
        auxiliary = outputs.get(auxiliary_key(task.name))
        if auxiliary is not None:
            for prediction in auxiliary.chunk(len(self.scales)):
                loss = loss + self.auxiliary_weight * task.loss(prediction, target)
        return loss

    def shared_parameters(self) -> list[nn.Parameter]:
        return [
            *self.encoder.parameters(),
            *self.refine.parameters(),
            *self.propagate.parameters(),
        ]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        initial = list(self.initial[task].parameters()) if task in self.initial else []
        return [
            *initial,
            *self.messages[task].parameters(),
            *self.heads[task].parameters(),
        ]
