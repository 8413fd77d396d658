"""Backbones and multi-task architectures; importing this package registers them.

Every module of the package is imported (`runners.registry.import_submodules`),
so a new architecture or backbone is one new file: it cannot be forgotten here.
"""

from runners.models.base import (
    ARCHITECTURES,
    BACKBONES,
    BackboneChoice,
    Encoder,
    MultiTaskModel,
)
from runners.registry import import_submodules

# First, as before the package was discovered: a registry lists components in the order
# they registered (`mtlb schema`, the site's lists), baseline and plainest architecture first.
from runners.models import single_task  # noqa: F401  # isort: skip
from runners.models import hard_sharing  # noqa: F401  # isort: skip

import_submodules(__name__, __path__)

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "BackboneChoice",
    "Encoder",
    "MultiTaskModel",
]
