from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS
from runners.weighting.double_sampling import DoubleSampling
from runners.weighting.moco import project_onto_simplex


@WEIGHTINGS.register("sdmgrad")
class SDMGrad(DoubleSampling):
    """SDMGrad (Xiao, Ban & Ji, "Direction-oriented Multi-objective Learning", NeurIPS 2023).

    Stochastic direction-oriented MGDA: the update stays within a
    neighbourhood of a target direction, the mean gradient g0, through the
    regularised subproblem over the simplex
        min_w  1/2 |J^T w|^2 + lambda (J^T w) . g0,
    solved by projected SGD whose gradient A w + lambda A 1/T uses the
    cross matrix A = J_xi J_xi'^T of two independent batches (unbiased; see
    `DoubleSampling`).  A is first divided by the squared mean of
    sqrt(max(A_tt, 0)) (+1e-8), so the inner step size does not depend on
    the gradients' scale.  Each step runs `iterations` SGD steps (learning
    rate `inner_lr`, momentum 0.5, restarted every step) from the previous
    step's w (1/T at first), and the update is
        d = (J_zeta^T w + lambda g0_zeta) / (1 + lambda),
    i.e. weights (w + lambda/T) / (1 + lambda) on the own batch's gradients.
    Defaults: lambda (`lambda_`) = 0.3 and 20 iterations (the authors' experiments,
    LibMTL), inner_lr = 10 (the authors' code; LibMTL uses 5).  The
    authors' clipping of the update to norm 1 is the protocol's business,
    not the method's, and is left out; so is their factor T on the update.
    Our implementation; torchjd's `SDMGradWeighting` is the reference in the tests.
    """

    _w: torch.Tensor | None

    def __init__(
        self,
        num_tasks: int,
        *,
        lambda_: Annotated[float, Field(ge=0.0, le=100.0)] = 0.3,
        iterations: Annotated[int, Field(ge=1, le=1000)] = 20,
        inner_lr: Annotated[float, Field(gt=0.0, le=1000.0)] = 10.0,
    ) -> None:
        super().__init__(num_tasks)
        self.lambda_ = lambda_
        self.iterations = iterations
        self.inner_lr = inner_lr
        # On the CPU with the solver, whatever the device: excluded from `.to()`.
        self._w = None

    def weights_from_cross(self, cross: torch.Tensor) -> torch.Tensor:
        num_tasks = cross.shape[0]
        scale = cross.diagonal().clamp(min=0.0).sqrt().mean()
        cross = cross / (scale**2 + 1e-8)
        target = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
        w = target.clone() if self._w is None else self._w.clone()
        velocity: torch.Tensor | None = None
        for _ in range(self.iterations):
            grad = cross @ (w + self.lambda_ * target)
            velocity = grad if velocity is None else 0.5 * velocity + grad
            w = project_onto_simplex(w - self.inner_lr * velocity)
        self._w = w
        return (w + self.lambda_ * target) / (1 + self.lambda_)
