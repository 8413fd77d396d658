from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, LookAhead, StepGraph
from runners.weighting.bilevel import Bilevel, MetaSplit, flat, gradients, stepped


@WEIGHTINGS.register("auto-lambda")
class AutoLambda(Bilevel):
    """Auto-λ, "Auto-Lambda: Disentangling Dynamic Task Relationships" (Liu, James, Davison &
    Johns, TMLR 2022).

    The task weights lambda (each `initial`, unconstrained, as in the paper) are
    learnt so that one look-ahead step of the model lowers the meta batch's loss:
        theta' = theta - a * grad_theta sum_t lambda_t L_t(theta; train batch),
        min over lambda of sum_t L_t(theta'; meta batch),
    with a the model optimiser's current learning rate.  The hypergradient
    -a * grad^2_{lambda,theta} L_train(theta) . grad_theta' L_meta(theta') is
    approximated by central finite differences, as in the paper (after DARTS):
        d = grad_theta' L_meta(theta'),  eps = 0.01 / |d|,
        grad_lambda = -a * (L_t(theta + eps d) - L_t(theta - eps d)) / (2 eps)
    (the train batch's losses, per task: the derivative of sum_t lambda_t L_t
    with respect to lambda_t is L_t), and lambda takes an Adam step of `outer_lr`.
    Then the model trains on sum_t lambda_t L_t.

    Follows the authors' code (lorenmt/auto-lambda) and its defaults for dense
    tasks: lambda initialised at 0.1, Adam at 1e-4.  Deviations: the look-ahead
    step is plain gradient descent at the optimiser's learning rate, as in
    LibMTL (the authors' adds SGD's momentum and weight decay, which only their
    optimiser has); meta batches from the validation part by default (the
    authors' and LibMTL's draw them from the training set: `meta_split: train`).
    LibMTL parametrises the weights as softmax(logits) from 1/T; this follows
    the paper.  A step costs about four forward and three backward passes.
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        initial: Annotated[float, Field(gt=0.0, le=10.0)] = 0.1,
        outer_lr: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-4,
        meta_split: MetaSplit = "validation",
    ) -> None:
        super().__init__(num_tasks, torch.full((num_tasks,), float(initial)))
        self.initial = initial
        self.outer_lr = outer_lr
        self.meta_split = meta_split

    def task_weights(self, meta: torch.Tensor) -> torch.Tensor:
        return meta

    def hypergradient(self, graph: StepGraph, look_ahead: LookAhead) -> torch.Tensor:
        params = list(look_ahead.parameters)
        lr = look_ahead.learning_rate
        weights = self._meta.to(graph.losses.dtype)
        train_grads = gradients((weights * graph.losses).sum(), params, retain_graph=True)
        ahead = stepped(params, train_grads, lr)
        d = gradients(look_ahead.losses(ahead, "meta").sum(), ahead)
        norm = flat(d).norm()
        if not bool(norm > 0):
            return torch.zeros_like(self._meta)
        eps = 0.01 / norm
        with torch.no_grad():
            plus = look_ahead.losses([p + eps * g for p, g in zip(params, d, strict=True)], "train")
            minus = look_ahead.losses(
                [p - eps * g for p, g in zip(params, d, strict=True)], "train"
            )
        return (-lr * (plus - minus) / (2 * eps)).detach().to(self._meta.dtype)
