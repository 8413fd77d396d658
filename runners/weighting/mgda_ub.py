from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, StepGraph, Weighting, accumulate_grad, gram_on_cpu
from runners.weighting.mgda import min_norm_weights


@WEIGHTINGS.register("mgda-ub")
class MGDAUB(Weighting):
    """MGDA-UB, the upper-bound approximation of MGDA (Sener & Koltun, NeurIPS 2018, Sec. 3.3).

    Solves MGDA's min-norm problem on the gradients of the task losses with
    respect to the shared representation z instead of the shared
    parameters,
        w = argmin_{w in simplex} |sum_t w_t dL_t/dz|^2,
    which minimises an upper bound of the exact problem's objective (and
    equals it when the encoder's Jacobian is orthogonal).  Then one backward
    pass of z with the combined cotangent sum_t w_t dL_t/dz gives the shared
    parameters' update; task-specific parameters get their own task's plain
    gradient (the paper's Algorithm 2).  The parameter Jacobian is never
    built, so a step costs about one equal-weighting step.
    `normalization="l2"` rescales each z-gradient to unit norm first (as in
    `mgda`).  Our implementation, with `mgda`'s Frank-Wolfe solver on the
    T x T Gram matrix on the CPU.  Needs an architecture with a shared
    representation.
    """

    needs_representation: ClassVar[bool] = True

    def __init__(
        self,
        num_tasks: int,
        *,
        normalization: Literal["none", "l2"] = "none",
        iterations: Annotated[int, Field(ge=1, le=10_000)] = 250,
    ) -> None:
        super().__init__(num_tasks)
        self.normalization = normalization
        self.iterations = iterations

    def backward(self, graph: StepGraph) -> torch.Tensor:
        z = graph.shared_representation
        if z is None:
            raise ValueError(
                "weighting mgda-ub needs a shared representation; this architecture has none"
            )
        cotangents = []
        for loss, own in zip(graph.task_losses, graph.task_parameters, strict=True):
            # Stops at z: only this task's head is traversed.
            grads = torch.autograd.grad(loss, [z, *own], retain_graph=True, allow_unused=True)
            accumulate_grad(own, grads[1:])
            first = grads[0]
            cotangents.append(first if first is not None else torch.zeros_like(z))
        flat = torch.stack([c.reshape(-1) for c in cotangents])
        gram = gram_on_cpu(flat)
        scale = torch.ones(gram.shape[0], dtype=torch.float64)
        if self.normalization == "l2":
            scale = 1.0 / gram.diagonal().sqrt().clamp(min=1e-12)
        weights = min_norm_weights(gram * scale[:, None] * scale[None, :], self.iterations) * scale
        on_device = weights.to(z.device, z.dtype)
        # A sum of scaled cotangents keeps z's memory format (channels_last): a
        # cotangent in another layout would slow the whole encoder's backward pass.
        combined = sum(
            (w * c for w, c in zip(on_device, cotangents, strict=True)), torch.zeros_like(z)
        )
        z.backward(combined)
        return on_device
