"""DSelect-k: shared experts, each task's gate a differentiable choice of k of them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from runners.models.base import ARCHITECTURES, BackboneChoice, Encoder, MultiTaskModel
from runners.models.gating import mixture, pooled
from runners.models.heads import HeadWidth, make_head
from runners.tasks import Task

SELECTOR_KEY = "{task}/selectors"


def smooth_step(t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Hazimeh et al.'s smooth step: 0 below -gamma/2, 1 above gamma/2, a cubic between.

    S(t) = -2 t^3 / gamma^3 + 3 t / (2 gamma) + 1/2 on [-gamma/2, gamma/2]:
    continuously differentiable, and exactly 0 or 1 outside, so a trained
    selector can reach a one-hot choice.  S(0) = 1/2, S(gamma/4) = 27/32.
    """
    cubic = -2 / gamma**3 * t**3 + 3 / (2 * gamma) * t + 0.5
    return torch.where(t <= -gamma / 2, 0.0, torch.where(t >= gamma / 2, 1.0, cubic))


def binary_codes(num_experts: int) -> torch.Tensor:
    """(n, m) bool: expert i's index in m = ceil(log2 n) bits, most significant first."""
    m = max(1, math.ceil(math.log2(num_experts)))
    return torch.tensor(
        [[bool(i >> (m - 1 - b) & 1) for b in range(m)] for i in range(num_experts)]
    )


class DSelectGate(nn.Module):
    """A task's DSelect-k gate: k single-expert selectors mixed by softmax weights.

    Per image, selector i has m logits z_i (read from the experts' pooled
    features) and picks expert j with weight

        r_i(j) = prod_l (S(z_il) if bit l of j else 1 - S(z_il)),

    and the gate is  w_j = sum_i softmax(alpha)_i r_i(j).  With n a power of
    two each r_i sums to 1 over the experts; otherwise the codes of j >= n
    take some of its mass, which `regulariser` pushes back.
    """

    def __init__(self, in_features: int, num_experts: int, k: int, gamma: float) -> None:
        super().__init__()
        self.register_buffer("codes", binary_codes(num_experts), persistent=False)
        self.k, self.gamma = k, gamma
        m = self.codes.shape[1]
        self.z_logits = nn.Linear(in_features, k * m)
        self.w_logits = nn.Linear(in_features, k)
        # The official implementation's initialisation: z near 0, so every selector starts
        # spread over the experts (S(0) = 1/2).
        with torch.no_grad():
            for p in self.z_logits.parameters():
                p.uniform_(-gamma / 100, gamma / 100)
            for p in self.w_logits.parameters():
                p.uniform_(-0.05, 0.05)

    codes: torch.Tensor

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n) expert weights and (B, k, n) selector outputs r."""
        b, m = features.shape[0], self.codes.shape[1]
        s = smooth_step(self.z_logits(features).view(b, self.k, 1, m), self.gamma)
        selectors = torch.where(self.codes, s, 1 - s).prod(dim=3)
        weights = torch.einsum("bk,bkn->bn", F.softmax(self.w_logits(features), dim=1), selectors)
        return weights, selectors


def regulariser(selectors: torch.Tensor, entropy_weight: float, power_of_two: bool) -> torch.Tensor:
    """The gate's penalty per image: entropy_weight * entropy of the selectors (+ mass kept).

    As in the official implementation, summed over the selectors: the
    entropy -sum_j r_i(j) log r_i(j) drives each selector to one expert;
    when n is not a power of two, sum_i 1 / sum_j r_i(j) keeps the mass on
    the n real experts.  Divided by the batch size here (a mean over images,
    like the task losses) where the official code sums over the batch.
    """
    batch = selectors.shape[0]
    entropy = -(selectors * torch.log(selectors + 1e-6)).sum()
    penalty = entropy_weight * entropy
    if not power_of_two:
        penalty = penalty + (1 / selectors.sum(dim=2)).sum()
    return penalty / batch


@ARCHITECTURES.register("dselect-k")
class DSelectK(MultiTaskModel):
    """DSelect-k (Hazimeh et al., NeurIPS 2021): MMoE with sparse, trainable gates.

    n shared expert backbones, as in `mmoe`; task t's head reads
    sum_j w_t(x)_j e_j(x), where the gate w_t is a convex combination of k
    differentiable single-expert selectors (`DSelectGate`), so that after
    training each task uses at most k experts.  The per-example gate of the
    paper, following LibMTL's DSelect_k (`LibMTL/architecture/DSelect_k.py`),
    itself a port of the official TensorFlow code (google-research,
    `dselect_k_moe`): the same smooth step, binary codes, initialisation and
    regulariser.  The gate reads the experts' pooled features (LibMTL's the
    flattened image), and the regulariser is added to each task's training
    loss (`training_loss`), where LibMTL calls backward inside forward.
    Defaults: k = 2 and gamma = 1 (LibMTL's), 4 experts (a power of two, as
    the paper's experiments use; 4 ResNet-50s fit the real protocols' size)
    and an entropy weight of 1e-6 (LibMTL's).

    The shared representation is the concatenation of the experts' features;
    a task's gate and head are its own.
    """

    def __init__(
        self,
        tasks: tuple[Task, ...],
        backbone: str | BackboneChoice,
        *,
        head_width: HeadWidth = 16,
        num_experts: Annotated[int, Field(ge=2, le=16, description="expert backbones")] = 4,
        num_nonzeros: Annotated[
            int, Field(ge=1, le=16, description="k: experts a task's gate may select")
        ] = 2,
        gamma: Annotated[
            float, Field(gt=0, le=10, description="width of the smooth step's transition")
        ] = 1.0,
        entropy_weight: Annotated[
            float, Field(ge=0, le=1, description="weight of the selectors' entropy in the loss")
        ] = 1e-6,
    ):
        super().__init__(tasks, backbone)
        problems = self.check(
            tuple(t.name for t in tasks),
            self.backbone.encoder_type,
            {"num_experts": num_experts, "num_nonzeros": num_nonzeros},
        )
        if problems:
            raise ValueError("; ".join(f"{field}: {message}" for field, message in problems))
        experts = [self.backbone.build() for _ in range(num_experts)]
        self.experts = nn.ModuleList(experts)
        self.channels = experts[0].out_channels
        self.entropy_weight = entropy_weight
        self.power_of_two = num_experts & (num_experts - 1) == 0
        self.gates = nn.ModuleDict(
            {
                t.name: DSelectGate(num_experts * self.channels, num_experts, num_nonzeros, gamma)
                for t in tasks
            }
        )
        self.heads = nn.ModuleDict(
            {t.name: make_head(t, self.channels, head_width, experts[0].stride) for t in tasks}
        )

    @classmethod
    def check(
        cls, task_names: tuple[str, ...], backbone: type[Encoder], params: Mapping[str, Any]
    ) -> list[tuple[str, str]]:
        n, k = params.get("num_experts", 4), params.get("num_nonzeros", 2)
        if k > n:
            return [("num_nonzeros", f"{k} experts to select, but num_experts is {n}")]
        return []

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        representation = torch.cat([expert(image) for expert in self.experts], dim=1)
        c = self.channels
        features = [representation[:, i * c : (i + 1) * c] for i in range(len(self.experts))]
        summary = pooled(features)
        outputs = {}
        for task in self.tasks:
            weights, selectors = self.gates[task.name](summary)
            outputs[task.name] = self.heads[task.name](mixture(weights, features))
            if self.training:
                outputs[SELECTOR_KEY.format(task=task.name)] = selectors
        return representation, outputs

    def training_loss(
        self, task: Task, outputs: Mapping[str, torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        """The task's loss plus its gate's regulariser (`regulariser`), in training mode."""
        loss = super().training_loss(task, outputs, target)
        selectors = outputs.get(SELECTOR_KEY.format(task=task.name))
        if selectors is None:  # evaluation mode: no selector outputs
            return loss
        return loss + regulariser(selectors, self.entropy_weight, self.power_of_two)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.experts.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [*self.gates[task].parameters(), *self.heads[task].parameters()]
