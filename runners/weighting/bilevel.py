"""The common part of bilevel methods (Auto-λ, MOML, FORUM).

A bilevel method learns its task weights as the upper level of a bilevel
problem: the lower level trains the model on the weighted training losses,
the upper level moves the weights so that the model after a look-ahead step
does better on held-out data.  Each step it

1. estimates the weights' hypergradient from a look-ahead: the task losses at
   other parameter values (theta - lr * g), on the step's batch and on a meta
   batch (`StepGraph.look_ahead`, built by `runners.step.TrainingStep`);
2. moves the weights with its own Adam (`outer_lr`), never with the model's
   optimiser;
3. trains the model on sum_t w_t L_t of the step's batch with the new weights.

The meta batches come from `meta_split`: "validation" (the default, as the
issue that brought these methods asks and as the papers' bilevel problems are
posed) is the protocol's validation part of the train split
(`runners.splits.validation_split`), which the model then does not train on;
"train" is the train split itself in another order, as Auto-λ's official
code and LibMTL draw them.  The test split is never seen.

Outside the training loop (no look-ahead given) a step applies the current
weights and learns nothing.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, Literal

import torch

from runners.weighting.base import LookAhead, StepGraph, Weighting

MetaSplit = Literal["validation", "train"]


class Bilevel(Weighting):
    """Task weights from a vector `_meta` (the upper level's variable), moved by its own Adam."""

    _meta: torch.Tensor
    # Set by each method's constructor, in the order of its parameters (its repr's order).
    outer_lr: float
    meta_split: MetaSplit

    def __init__(self, num_tasks: int, initial: torch.Tensor) -> None:
        super().__init__(num_tasks)
        # A buffer, not a Parameter: the model's optimiser must not step it.
        self.register_buffer("_meta", initial)
        self._optimizer: torch.optim.Adam | None = None

    @abc.abstractmethod
    def task_weights(self, meta: torch.Tensor) -> torch.Tensor:
        """(T,) the weights of the training losses given the upper variable (differentiable)."""

    @abc.abstractmethod
    def hypergradient(self, graph: StepGraph, look_ahead: LookAhead) -> torch.Tensor:
        """(T,) the gradient of the upper objective with respect to `_meta`, detached."""

    def backward(self, graph: StepGraph) -> torch.Tensor:
        if graph.look_ahead is not None:
            self.step_meta(self.hypergradient(graph, graph.look_ahead))
        weights = self.task_weights(self._meta).detach().to(graph.losses.dtype)
        (weights * graph.losses).sum().backward()
        return weights

    def step_meta(self, gradient: torch.Tensor) -> None:
        """One Adam step of `_meta` along `gradient`."""
        meta = self._meta
        # Built lazily: `.to(device)` replaces the buffer after construction.
        if self._optimizer is None or self._optimizer.param_groups[0]["params"][0] is not meta:
            self._optimizer = torch.optim.Adam([meta], lr=self.outer_lr)
        meta.grad = gradient.to(meta.dtype)
        self._optimizer.step()
        meta.grad = None

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        # The Adam is built lazily, so a fresh method has none to load into.
        saved = state[""]["attributes"].get("_optimizer")
        rest = {**state[""], "attributes": {**state[""]["attributes"], "_optimizer": None}}
        super().load_checkpoint_state({**state, "": rest})
        if saved is not None:
            self._optimizer = torch.optim.Adam([self._meta], lr=self.outer_lr)
            self._optimizer.load_state_dict(saved["optimizer"])


def gradients(
    loss: torch.Tensor, values: Sequence[torch.Tensor], *, retain_graph: bool = False
) -> list[torch.Tensor]:
    """d loss / d values, zeros where a value does not reach the loss."""
    grads = torch.autograd.grad(loss, values, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(v) if g is None else g for g, v in zip(grads, values, strict=True)]


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """`vector` cut into tensors shaped as `like`."""
    out, offset = [], 0
    for t in like:
        out.append(vector[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return out


def task_rows(
    losses: torch.Tensor, values: Sequence[torch.Tensor], *, retain_graph: bool = False
) -> torch.Tensor:
    """(T, P) each task loss's gradient with respect to every value, flattened."""
    last = losses.shape[0] - 1
    return torch.stack(
        [
            flat(gradients(losses[t], values, retain_graph=retain_graph or t < last))
            for t in range(losses.shape[0])
        ]
    )


def stepped(
    values: Sequence[torch.Tensor], direction: Sequence[torch.Tensor], lr: float
) -> list[torch.Tensor]:
    """values - lr * direction, as new leaves that require grad."""
    return [
        (v.detach() - lr * d.detach()).requires_grad_(True)
        for v, d in zip(values, direction, strict=True)
    ]
