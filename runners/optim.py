"""Optimisers and learning-rate schedulers a spec may choose."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated

import torch
from pydantic import Field

from runners.registry import Registry

LearningRate = Annotated[float, Field(gt=0.0, le=10.0, description="learning rate")]
WeightDecay = Annotated[float, Field(ge=0.0, le=1.0, description="L2 weight decay")]

Params = Iterable[torch.nn.Parameter]
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
SCHEDULERS: Registry[Callable[..., torch.optim.lr_scheduler.LRScheduler]] = Registry("scheduler")


@OPTIMIZERS.register("adam")
def adam(
    params: Params, *, lr: LearningRate = 1e-3, weight_decay: WeightDecay = 0.0
) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2015) with L2 weight decay."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(
    params: Params, *, lr: LearningRate = 1e-3, weight_decay: WeightDecay = 0.01
) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019): decoupled weight decay."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(
    params: Params,
    *,
    lr: LearningRate = 1e-2,
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9,
    weight_decay: WeightDecay = 0.0,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum."""
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
    )


@SCHEDULERS.register("step")
def step(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    step_size: Annotated[int, Field(ge=1, le=10_000, description="epochs per decay")] = 100,
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Multiply the learning rate by gamma every step_size epochs."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@SCHEDULERS.register("cosine")
def cosine(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    min_lr: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing from the optimiser's learning rate to min_lr over the protocol's epochs."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=min_lr)
