from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn
from torchjd.aggregation import IMTLGWeighting

from runners.weighting.base import (
    WEIGHTINGS,
    GradientAggregation,
    StepGraph,
    accumulate_grad,
    gram_on_cpu,
    set_flat_grad,
    task_jacobian,
)


@WEIGHTINGS.register("imtl-full")
class IMTLFull(GradientAggregation):
    """IMTL, the hybrid of IMTL-L and IMTL-G (Liu et al., ICLR 2021, Algorithm 1).

    "Towards Impartial Multi-task Learning".  IMTL-L learns a scale s_t per
    task (initially 0) with the network, minimising the scaled losses
        e^{s_t} L_t - s_t,
    whose minimum over s_t is at e^{s_t} L_t = 1: every scaled loss is
    driven towards 1.  s_t's gradient is e^{s_t} L_t - 1, and the run's
    optimiser steps it, as it steps the network.  IMTL-G then balances the
    gradients of the scaled losses, G_t = e^{s_t} grad L_t, as `imtl` does:
        w = G^+ n / (1^T G^+ n),   n_t = |G_t|,   update = sum_t w_t G_t.
    Task-specific parameters receive their scaled loss's gradient
    e^{s_t} grad L_t (as in LibMTL's `IMTL`, where each scaled loss is
    back-propagated once).  Reported weights: w_t e^{s_t}, the weights of the
    raw losses' gradients in the update.

    Follows the paper and LibMTL's `IMTL` (with `rep_grad=False`: the
    gradients of the shared parameters, not of the representation); IMTL-G's
    solver is torchjd's `IMTLGWeighting` on the Gram matrix, as in `imtl`,
    whose results are unchanged.
    """

    # Of the update from a given Jacobian (the scales act on how J is built).
    properties: ClassVar[frozenset[str]] = frozenset({"permutation_invariant", "homogeneous"})

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self.loss_scale = nn.Parameter(torch.zeros(num_tasks))
        self._solver = IMTLGWeighting()

    def jacobian(self, graph: StepGraph) -> torch.Tensor:
        scale = self.loss_scale.exp()
        losses = graph.losses.detach()
        # d/ds_t (e^{s_t} L_t - s_t); task_jacobian differentiates w.r.t. the model only.
        accumulate_grad([self.loss_scale], ((scale * losses - 1).detach(),))
        scaled = [
            scale[t].detach() * loss - self.loss_scale[t].detach()
            for t, loss in enumerate(graph.task_losses)
        ]
        return task_jacobian(dataclasses.replace(graph, task_losses=scaled))

    def aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        # IMTL-G on the Gram matrix on the CPU, as `imtl`.  Not a `GramAggregation`:
        # its step builds J from the scaled losses, which a "split" CUDA-graph step
        # (`runners.step`) does not, so it runs eagerly.
        weights: torch.Tensor = self._solver(gram_on_cpu(jacobian))
        return weights.to(jacobian.device, jacobian.dtype)

    def backward(self, graph: StepGraph) -> torch.Tensor:
        direction, weights = self.update(self.jacobian(graph))
        set_flat_grad(graph.shared_parameters, direction)
        return (weights * self.loss_scale.detach().exp().to(weights.dtype)).detach()
