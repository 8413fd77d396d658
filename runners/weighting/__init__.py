"""Weighting and gradient methods; importing this package registers them.

Every module of the package is imported (`runners.registry.import_submodules`),
so a new method is one new file: it cannot be forgotten here.
"""

from runners.registry import import_submodules
from runners.weighting.base import (
    PROPERTIES,
    WEIGHTINGS,
    GradientAggregation,
    GradientMethod,
    LossWeighting,
    StepGraph,
    Weighting,
)

import_submodules(__name__, __path__)

__all__ = [
    "PROPERTIES",
    "WEIGHTINGS",
    "GradientAggregation",
    "GradientMethod",
    "LossWeighting",
    "StepGraph",
    "Weighting",
]
