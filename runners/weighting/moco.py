from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, GradientMethod, StepGraph, task_jacobian


def project_onto_simplex(vector: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection onto {w >= 0, sum w = 1} (Wang & Carreira-Perpinan, 2013)."""
    ordered = torch.sort(vector, descending=True).values
    cumulative = ordered.cumsum(dim=0) - 1.0
    index = torch.arange(1, vector.numel() + 1, dtype=vector.dtype, device=vector.device)
    support = ordered - cumulative / index > 0
    rho = int(support.nonzero().max())  # the last index of the support
    threshold = cumulative[rho] / (rho + 1)
    return torch.clamp(vector - threshold, min=0.0)


@WEIGHTINGS.register("moco")
class MoCo(GradientMethod):
    """MoCo (Fernando, Shen, Liu, Chaudhury, Murugesan & Chen, ICLR 2023).

    "Mitigating Gradient Bias in Multi-objective Learning: A Provably
    Convergent Approach".  MGDA's weights computed on stochastic gradients
    are biased; MoCo tracks each task's gradient with a moving average y_t
    and takes projected-gradient steps on the MGDA weights lambda instead
    of solving for them.  At step k, with h_t = L_t g_t / |g_t| the task
    gradient rescaled to its loss (the authors' code, also LibMTL's),
        y_t <- y_t - beta_k (y_t - h_t),          beta_k = beta / k^beta_sigma,
        lambda <- P(lambda - gamma_k (Y Y^T + rho I) lambda),  gamma_k = gamma / k^gamma_sigma,
        update = Y^T lambda,
    from y = 0 and lambda = 1/T.  P is the projection onto the simplex, as
    in the paper's Algorithm 1 (`projection: simplex`); the authors' code
    and LibMTL replace it by a softmax (`projection: softmax`).  Defaults
    are the authors' code's and LibMTL's: beta = 0.5, beta_sigma = 0.5,
    gamma = 0.1, gamma_sigma = 0.5, rho = 0.  Task-specific parameters get
    their own task's plain gradient.  The tracked Y is a T x P buffer on
    the device, saved in checkpoints.  Our implementation.
    """

    properties: ClassVar[frozenset[str]] = frozenset({"permutation_invariant"})
    _tracked: torch.Tensor | None
    _lambda: torch.Tensor | None

    def __init__(
        self,
        num_tasks: int,
        *,
        beta: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5,
        beta_sigma: Annotated[float, Field(ge=0.0, le=10.0)] = 0.5,
        gamma: Annotated[float, Field(gt=0.0, le=100.0)] = 0.1,
        gamma_sigma: Annotated[float, Field(ge=0.0, le=10.0)] = 0.5,
        rho: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0,
        projection: Literal["simplex", "softmax"] = "simplex",
    ) -> None:
        super().__init__(num_tasks)
        self.beta = beta
        self.beta_sigma = beta_sigma
        self.gamma = gamma
        self.gamma_sigma = gamma_sigma
        self.rho = rho
        self.projection = projection
        self._step = 0
        self.register_buffer("_tracked", None)
        self.register_buffer("_lambda", None)

    def jacobian(self, graph: StepGraph) -> torch.Tensor:
        """(T, P) the task gradients rescaled to the norm of their loss: L_t g_t / |g_t|."""
        jacobian = task_jacobian(graph)
        losses = graph.losses.detach().to(jacobian.dtype)
        return jacobian * (losses / (jacobian.norm(dim=1) + 1e-8))[:, None]

    def update(self, jacobian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._step += 1
        if self._tracked is None or self._tracked.shape != jacobian.shape:
            self._tracked = torch.zeros_like(jacobian)
            self._lambda = torch.full(
                (self.num_tasks,),
                1.0 / self.num_tasks,
                dtype=jacobian.dtype,
                device=jacobian.device,
            )
        assert self._lambda is not None
        beta = self.beta / self._step**self.beta_sigma
        gamma = self.gamma / self._step**self.gamma_sigma
        tracked = self._tracked - beta * (self._tracked - jacobian.detach())
        gram = tracked @ tracked.T + self.rho * torch.eye(
            self.num_tasks, dtype=tracked.dtype, device=tracked.device
        )
        moved = self._lambda - gamma * gram @ self._lambda
        if self.projection == "simplex":
            self._lambda = project_onto_simplex(moved)
        else:
            self._lambda = torch.softmax(moved, dim=0)
        self._tracked = tracked
        return self._lambda @ tracked, self._lambda
