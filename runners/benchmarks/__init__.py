"""Benchmarks; importing this package registers them."""

from runners.benchmarks import (
    cityscapes,
    nyuv2,
    synthetic_attributes,
    synthetic_scenes,
    synthetic_shapes,
)
from runners.benchmarks.base import BENCHMARKS, Benchmark, Protocol, Resources

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "Protocol",
    "Resources",
    "cityscapes",
    "nyuv2",
    "synthetic_attributes",
    "synthetic_scenes",
    "synthetic_shapes",
]
