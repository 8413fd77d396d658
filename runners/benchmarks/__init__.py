"""Benchmarks; importing this package registers them."""

from runners.benchmarks import (
    celeba,
    cityscapes,
    nyuv2,
    office,
    synthetic_attributes,
    synthetic_domains,
    synthetic_scenes,
    synthetic_shapes,
)
from runners.benchmarks.base import BENCHMARKS, Benchmark, Protocol, Resources

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "Protocol",
    "Resources",
    "celeba",
    "cityscapes",
    "nyuv2",
    "office",
    "synthetic_attributes",
    "synthetic_domains",
    "synthetic_scenes",
    "synthetic_shapes",
]
