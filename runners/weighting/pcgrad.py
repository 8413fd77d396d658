from __future__ import annotations

from typing import ClassVar

import torch

from runners.weighting.base import WEIGHTINGS, GramAggregation, method_generator


def pcgrad_weights(jacobian: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Weights w with w @ J equal to PCGrad's update (Yu et al., NeurIPS 2020).

    Each task gradient g_i is projected, in turn for every other task j (in
    the order given), onto the normal plane of g_j when they conflict:
        g_i <- g_i - min(0, <g_i, g_j>) / |g_j|^2 * g_j.
    The update is sum_i g_i.  Every projected g_i stays a combination of the
    original rows, g_i = A_i @ J, so we track the coefficients A and return
    w = 1 @ A.

    Example: g1 = (1, 0) and g2 = (-1, 1) conflict (<g1, g2> = -1).
    g1 <- g1 + g2 / 2 = (0.5, 0.5) and g2 <- g2 + g1 = (0, 1); the update is
    (0.5, 1.5) = 2 g1 + 1.5 g2, so w = (2, 1.5).
    """
    # Only the T x T Gram matrix matters; the sequential projections run on the
    # CPU so that a GPU step syncs once, not once per pair of tasks.
    gram = (jacobian @ jacobian.T).double().cpu()
    return pcgrad_weights_from_gram(gram, order).to(jacobian.device, jacobian.dtype)


def pcgrad_weights_from_gram(gram: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """`pcgrad_weights` from the (T, T) float64 Gram matrix G = J J^T on the CPU."""
    num_tasks = gram.shape[0]
    coefficients = torch.eye(num_tasks, dtype=torch.float64)
    for i in range(num_tasks):
        for j in order.tolist():
            if j == i:
                continue
            # <g_i', g_j> with g_i' = A_i @ J is A_i @ gram[:, j].
            dot = coefficients[i] @ gram[:, j]
            if dot < 0 and gram[j, j] > 0:
                coefficients[i, j] -= dot / gram[j, j]
    return coefficients.sum(dim=0)


@WEIGHTINGS.register("pcgrad")
class PCGrad(GramAggregation):
    """PCGrad, "Gradient Surgery for Multi-Task Learning" (Yu et al., NeurIPS 2020).

    Our implementation on the exact per-task Jacobian; the projection order
    is a random permutation drawn from a generator seeded by the platform
    (`METHOD_SEED`, not the spec), so a run
    is reproducible.  One order serves every task in a step; the authors'
    code and torchjd's `PCGrad` shuffle again for each task (torchjd from the
    global RNG), which has the same distribution per task.  Its update is on
    the scale of the sum of the gradients, like equal weighting's.
    """

    # Not permutation invariant for one draw (the order is random), and it
    # avoids conflicts only for two tasks.
    properties: ClassVar[frozenset[str]] = frozenset({"homogeneous"})

    def __init__(self, num_tasks: int):
        super().__init__(num_tasks)
        self._generator = method_generator()

    def weights_from_gram(self, gram: torch.Tensor) -> torch.Tensor:
        order = torch.randperm(self.num_tasks, generator=self._generator)
        return pcgrad_weights_from_gram(gram, order)
