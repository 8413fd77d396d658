from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from scipy.optimize import minimize

from runners.weighting.base import WEIGHTINGS, LookAhead, StepGraph
from runners.weighting.bilevel import (
    Bilevel,
    MetaSplit,
    flat,
    gradients,
    stepped,
    task_rows,
    unflat,
)


def forum_weights(gram: np.ndarray, pi: np.ndarray, scale: float) -> np.ndarray:
    """(T + 1,) FORUM's subproblem: min_w w^T G w - scale * w_T over w >= 0 with
    sum_{t<T} w_t = 1 and w_T >= sum_{t<T} w_t pi_t (G: (T + 1, T + 1), PSD).

    A convex quadratic programme in T + 1 variables, solved by SLSQP (LibMTL
    solves the same programme with cvxpy, written with a square root of G).
    """
    n = gram.shape[0]
    tasks = n - 1
    start = np.append(np.full(tasks, 1.0 / tasks), max(float(pi.mean()), 0.0))
    linear = np.zeros(n)
    linear[-1] = -scale
    result = minimize(
        lambda w: float(w @ gram @ w + linear @ w),
        start,
        jac=lambda w: 2 * gram @ w + linear,
        method="SLSQP",
        bounds=[(0.0, None)] * n,
        constraints=[
            {"type": "eq", "fun": lambda w: w[:tasks].sum() - 1.0},
            {"type": "ineq", "fun": lambda w: w[-1] - w[:tasks] @ pi},
        ],
        options={"ftol": 1e-12, "maxiter": 200},
    )
    weights = np.clip(result.x, 0.0, None)
    weights[:tasks] /= weights[:tasks].sum()
    return weights


@WEIGHTINGS.register("forum")
class FORUM(Bilevel):
    """FORUM, "A First-Order Multi-Gradient Algorithm for Multi-Objective Bi-Level
    Optimization" (Ye, Lin, Zhang, Xu & Zhang, ECAI 2024), as LibMTL implements it.

    Variables: the logits alpha of the training weights w = softmax(alpha) and
    the model theta, together x = (alpha, theta).  The lower level
    f(x) = sum_t w_t L_t(theta; train batch) is turned into a constraint
    q(x) = f(alpha, theta) - f(alpha, theta_K) <= 0, with theta_K after
    `inner_steps` steps of gradient descent (`inner_lr`) on f from theta, so
    only first-order gradients are needed.  The upper level has one objective
    per task, F_t(theta) = L_t(theta; meta batch), whose gradients g_t are
    normalised to unit length.  Each step solves the quadratic programme
    (`forum_weights`) over the convex hull of [g_1 ... g_T, grad q], with
    pi_t = phi - <grad q, g_t> / |grad q|^2, whose first T weights update a
    running average lambda (rate 1 / (epoch + 1)^(3/4)); the step direction is
        d = sum_t lambda_t g_t + nu grad q,   nu = max(sum_t lambda_t pi_t, 0),
    applied to theta by the model's optimiser and to alpha by the method's
    Adam (`outer_lr`).  So unlike Auto-λ and MOML the model trains on the meta
    batch's task gradients too, and directly on d, not on a weighted loss;
    the weights reported for the curves are those of the training losses in
    d, nu * w.

    Follows LibMTL's FORUM and its defaults (phi 0.1, inner_steps 5,
    inner_lr 0.1, outer_lr 1e-3), including its guard that stops the inner
    loop once f exceeds 1e5 (an inner step size too large for the model).
    LibMTL draws the lower level's batch and the meta batch as two half
    batches of the training set; here the step's batch and a meta batch from
    the validation part by default (`meta_split: train`: the training set).
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        phi: Annotated[float, Field(gt=0.0, le=10.0)] = 0.1,
        inner_steps: Annotated[int, Field(ge=1, le=20)] = 5,
        inner_lr: Annotated[float, Field(gt=0.0, le=10.0)] = 0.1,
        outer_lr: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-3,
        meta_split: MetaSplit = "validation",
    ) -> None:
        super().__init__(num_tasks, torch.full((num_tasks,), 1.0 / num_tasks))
        self.phi = phi
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.outer_lr = outer_lr
        self.meta_split = meta_split
        self._lambda = torch.zeros(num_tasks, dtype=torch.float64)
        self._epoch = 0

    def task_weights(self, meta: torch.Tensor) -> torch.Tensor:
        return torch.softmax(meta, dim=0)

    def end_epoch(self, mean_losses: torch.Tensor) -> None:
        self._epoch += 1

    def hypergradient(self, graph: StepGraph, look_ahead: LookAhead) -> torch.Tensor:
        raise NotImplementedError("FORUM steps the model and its logits together: see backward")

    def backward(self, graph: StepGraph) -> torch.Tensor:
        look_ahead = graph.look_ahead
        if look_ahead is None:
            return super().backward(graph)
        params = list(look_ahead.parameters)
        logits = self._meta.detach().to(graph.losses.dtype).requires_grad_(True)
        weights = torch.softmax(logits, dim=0)
        # grad f at x = (alpha, theta).
        grad_f = flat(gradients((weights * graph.losses).sum(), [logits, *params]))
        # theta_K: `inner_steps` steps of gradient descent on f from theta, alpha fixed.
        inner = [p.detach() for p in params]
        fixed = weights.detach()
        for _ in range(self.inner_steps):
            inner = [v.requires_grad_(True) for v in inner]
            loss = (fixed * look_ahead.losses(inner, "train")).sum()
            if float(loss.detach()) > 1e5:  # LibMTL's guard: the inner step size diverges
                break
            inner = [v.detach() for v in stepped(inner, gradients(loss, inner), self.inner_lr)]
        with torch.no_grad():
            inner_losses = look_ahead.losses(inner, "train")
        grad_f_inner = gradients((torch.softmax(logits, dim=0) * inner_losses).sum(), [logits])[0]
        grad_q = grad_f.clone()
        grad_q[: self.num_tasks] -= grad_f_inner
        # The upper objectives' gradients at theta (they do not depend on alpha), unit length.
        upper = task_rows(look_ahead.losses(params, "meta"), params)
        upper = upper / upper.norm(dim=1, keepdim=True).clamp(min=1e-12)
        upper = torch.cat([upper.new_zeros(self.num_tasks, self.num_tasks), upper], dim=1)
        q_norm2 = float(grad_q @ grad_q) + 1e-8
        pi = (self.phi - (upper @ grad_q) / q_norm2).to("cpu", torch.float64)
        rows = torch.cat([upper, grad_q[None]], dim=0)
        gram = (rows @ rows.T).to("cpu", torch.float64).numpy()
        solution = forum_weights(gram, pi.numpy(), self.phi * q_norm2)
        rate = 1.0 / (self._epoch + 1) ** 0.75
        self._lambda = self._lambda + rate * (torch.from_numpy(solution[:-1]) - self._lambda)
        nu = max(float(self._lambda @ pi), 0.0)
        direction = self._lambda.to(upper.device, upper.dtype) @ upper + nu * grad_q
        self.step_meta(direction[: self.num_tasks].detach())
        for p, g in zip(params, unflat(direction[self.num_tasks :].detach(), params), strict=True):
            p.grad = g.clone() if p.grad is None else p.grad + g
        return (nu * weights).detach()
