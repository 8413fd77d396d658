from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, LookAhead, StepGraph
from runners.weighting.bilevel import Bilevel, MetaSplit, stepped, task_rows, unflat
from runners.weighting.mgda import min_norm_weights


@WEIGHTINGS.register("moml")
class MOML(Bilevel):
    """MOML, "Multi-Objective Meta Learning" (Ye, Lin, Xu, Zhang, Liu & Zhang, NeurIPS 2021;
    AIJ 2024), in LibMTL's one-inner-step form.

    The task weights are w = softmax(alpha).  The lower level takes one
    look-ahead step of gradient descent on the weighted training losses,
        theta' = theta - inner_lr * sum_t w_t g_t,   g_t = grad_theta L_t(theta; train batch),
    and the upper level is multi-objective: each task's meta loss L_t(theta'; meta
    batch) has its own hypergradient with respect to alpha,
        h_t = -inner_lr * grad_theta' L_t(theta')^T [g_1 ... g_T] J_softmax(alpha),
    and alpha moves (Adam, `outer_lr`) along the minimum-norm element of the
    convex hull of the unit-normalised h_t (MGDA's subproblem, `min_norm_weights`),
    a direction that lowers every task's meta loss to first order.  Then the
    model trains on sum_t w_t L_t.

    Follows LibMTL's MOML (its defaults: inner_lr 0.1, outer_lr 1e-3, alpha
    from 1/T, l2 normalisation), which supports one inner step only; the
    paper's general form unrolls several.  LibMTL draws the look-ahead and the
    update from two half batches of the training set and the meta batch from
    it too; here the step's batch serves both and the meta batch comes from
    the validation part by default (`meta_split: train` for the training set).
    A step costs 2T + 2 backward passes over the whole model.
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        inner_lr: Annotated[float, Field(gt=0.0, le=10.0)] = 0.1,
        outer_lr: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-3,
        meta_split: MetaSplit = "validation",
    ) -> None:
        super().__init__(num_tasks, torch.full((num_tasks,), 1.0 / num_tasks))
        self.inner_lr = inner_lr
        self.outer_lr = outer_lr
        self.meta_split = meta_split

    def task_weights(self, meta: torch.Tensor) -> torch.Tensor:
        return torch.softmax(meta, dim=0)

    def hypergradient(self, graph: StepGraph, look_ahead: LookAhead) -> torch.Tensor:
        params = list(look_ahead.parameters)
        train_rows = task_rows(graph.losses, params, retain_graph=True)  # (T, P)
        weights = self.task_weights(self._meta).to(train_rows.dtype)
        ahead = stepped(params, unflat(weights @ train_rows, params), self.inner_lr)
        meta_rows = task_rows(look_ahead.losses(ahead, "meta"), ahead)  # (T, P)
        softmax_jacobian = torch.diag(weights) - torch.outer(weights, weights)
        # Row t: task t's hypergradient with respect to alpha.
        hyper = -self.inner_lr * (meta_rows @ train_rows.T) @ softmax_jacobian
        hyper = hyper.to("cpu", torch.float64)
        unit = hyper / hyper.norm(dim=1, keepdim=True).clamp(min=1e-12)
        combination = min_norm_weights(unit @ unit.T)
        return (combination @ unit).to(self._meta.device, self._meta.dtype)
