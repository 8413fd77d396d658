"""Backbones and multi-task architectures; importing this package registers them."""

from runners.models import architectures, backbones
from runners.models.base import ARCHITECTURES, BACKBONES, MultiTaskModel

__all__ = ["ARCHITECTURES", "BACKBONES", "MultiTaskModel", "architectures", "backbones"]
