"""The common part of double-sampling methods (SDMGrad, MoDo)."""

from __future__ import annotations

import abc
from typing import ClassVar

import torch

from runners.weighting.base import GradientMethod, StepGraph, set_flat_grad, task_jacobian


class DoubleSampling(GradientMethod):
    """Weights from the cross product of two independent batches' Jacobians.

    Methods such as SDMGrad and MoDo need J^T J-type products (the MGDA
    subproblem's gradient) without the bias that one batch's J_xi J_xi^T has
    (E[J J^T] != E[J] E[J]^T).  A step therefore takes three independent
    mini-batches (`samples_per_step = 3`): the step's own batch zeta and two
    more, xi and xi' (`StepGraph.samples`, drawn by the training loop).  The
    weights come from the T x T cross matrix A = J_xi J_xi'^T (on the CPU, in
    float64), and the update of the shared parameters is w @ J_zeta.  Each
    task's own parameters get its gradient averaged over the three batches
    (LibMTL's MoDo).  Called with no extra samples (outside the training
    loop), the step's own Jacobian stands in for all three: the single-sample
    estimate, A = J J^T.
    """

    samples_per_step: ClassVar[int] = 3

    @abc.abstractmethod
    def weights_from_cross(self, cross: torch.Tensor) -> torch.Tensor:
        """(T,) weights on the CPU from A = J_xi J_xi'^T, (T, T) float64 on the CPU."""

    def update(self, jacobian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The single-sample step: A = J J^T."""
        return self._combine(jacobian, jacobian, jacobian)

    def backward(self, graph: StepGraph) -> torch.Tensor:
        if not graph.samples:
            return super().backward(graph)
        if len(graph.samples) != self.samples_per_step - 1:
            raise ValueError(
                f"{type(self).__name__} takes {self.samples_per_step - 1} extra batches per"
                f" step, got {len(graph.samples)}"
            )
        jacobians = [task_jacobian(g) for g in (graph, *graph.samples)]
        # task_jacobian accumulated every batch's task gradients: their mean.
        for group in graph.task_parameters:
            for p in group:
                if p.grad is not None:
                    p.grad.div_(len(jacobians))
        direction, weights = self._combine(*jacobians)
        set_flat_grad(graph.shared_parameters, direction)
        return weights.detach()

    def _combine(
        self, own: torch.Tensor, first: torch.Tensor, second: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cross = (first @ second.T).to("cpu", torch.float64)
        weights = self.weights_from_cross(cross).to(own.device, own.dtype)
        return weights @ own, weights
