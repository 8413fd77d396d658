from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from runners.weighting.base import WEIGHTINGS, StepGraph, Weighting, accumulate_grad


def last_shared_weight(shared: list[nn.Parameter]) -> nn.Parameter:
    """The last weight matrix or kernel (a parameter with 2 or more dimensions) of the shared ones.

    Architectures list their shared parameters in forward order, so this is
    the last shared layer's weight (for small-cnn, the last convolution's).
    """
    for p in reversed(shared):
        if p.dim() >= 2:
            return p
    if not shared:
        raise ValueError("weighting gradnorm needs shared parameters; this architecture has none")
    return shared[-1]


@WEIGHTINGS.register("gradnorm")
class GradNorm(Weighting):
    """GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018).

    The network minimises sum_t w_t L_t with learnt weights w (initially 1).
    With W the last shared layer's weight, G_t = |grad_W (w_t L_t)| =
    w_t |grad_W L_t|, G_bar their mean, r_t = (L_t / L_t(0)) / mean_s(L_s / L_s(0))
    the relative inverse training rate (L_t(0): the first step's loss) and
    alpha the restoring force, the weights follow the gradient of
        L_grad = sum_t |G_t - G_bar r_t^alpha|,
    the targets G_bar r_t^alpha held constant; the run's optimiser steps
    them.  Before each step they are renormalised to sum to T (and kept
    above 1e-6).  Paper default alpha = 1.5 (its NYUv2 setting).

    Cost: each task's loss is differentiated with respect to the shared
    representation z and its own head, each cotangent is pushed back to W
    only (the layer next to z), and one backward pass of z with
    sum_t w_t dL_t/dz gives the shared update: about one equal-weighting
    step.  Without z, each task's gradient of W is taken directly and the
    weighted loss is back-propagated once.  Our implementation (LibMTL's
    uses all shared parameters and a softmax parametrisation of w).
    """

    _initial_losses: torch.Tensor

    def __init__(
        self, num_tasks: int, *, alpha: Annotated[float, Field(ge=0.0, le=10.0)] = 1.5
    ) -> None:
        super().__init__(num_tasks)
        self.alpha = alpha
        self.loss_weights = nn.Parameter(torch.ones(num_tasks))
        self.register_buffer("_initial_losses", torch.full((num_tasks,), float("nan")))

    def backward(self, graph: StepGraph) -> torch.Tensor:
        with torch.no_grad():
            w = self.loss_weights.clamp(min=1e-6)
            self.loss_weights.copy_(self.num_tasks * w / w.sum())
        weights = self.loss_weights.detach()
        losses = graph.losses.detach()
        initial = self._initial_losses
        self._initial_losses = torch.where(initial.isnan(), losses, initial)

        layer = last_shared_weight(graph.shared_parameters)
        z = graph.shared_representation
        norms = []
        cotangents = []
        for t, (loss, own) in enumerate(zip(graph.task_losses, graph.task_parameters, strict=True)):
            if z is not None:
                grads = torch.autograd.grad(loss, [z, *own], retain_graph=True, allow_unused=True)
                cotangent = grads[0] if grads[0] is not None else torch.zeros_like(z)
                accumulate_grad(
                    own, tuple(None if g is None else weights[t] * g for g in grads[1:])
                )
                cotangents.append(cotangent)
                (layer_grad,) = torch.autograd.grad(
                    z, layer, grad_outputs=cotangent, retain_graph=True
                )
            else:
                (layer_grad,) = torch.autograd.grad(loss, layer, retain_graph=True)
            norms.append(layer_grad.norm())
        if z is not None:
            # A sum of scaled cotangents keeps z's memory format (channels_last).
            w = weights.to(z.dtype)
            z.backward(sum((w[t] * c for t, c in enumerate(cotangents)), torch.zeros_like(z)))
        else:
            (weights * graph.losses).sum().backward()

        norm = torch.stack(norms).to(weights.dtype)
        gradient_norms = weights * norm
        ratio = losses / self._initial_losses
        target = gradient_norms.mean() * (ratio / ratio.mean()) ** self.alpha
        # d/dw_t sum_s |w_s n_s - target_s| with the targets held constant.
        grad = torch.sign(gradient_norms - target) * norm
        self.loss_weights.grad = (
            grad if self.loss_weights.grad is None else self.loss_weights.grad + grad
        )
        return weights.clone()
