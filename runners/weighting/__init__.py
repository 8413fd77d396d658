"""Weighting and gradient methods; importing this package registers them."""

from runners.weighting import dwa, equal, mgda, pcgrad, uncertainty
from runners.weighting.base import (
    WEIGHTINGS,
    GradientAggregation,
    LossWeighting,
    StepGraph,
    Weighting,
)

__all__ = [
    "WEIGHTINGS",
    "GradientAggregation",
    "LossWeighting",
    "StepGraph",
    "Weighting",
    "dwa",
    "equal",
    "mgda",
    "pcgrad",
    "uncertainty",
]
