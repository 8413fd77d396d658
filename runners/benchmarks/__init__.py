"""Benchmarks; importing this package registers them."""

from runners.benchmarks import synthetic_scenes
from runners.benchmarks.base import BENCHMARKS, Benchmark, Protocol, Resources

__all__ = ["BENCHMARKS", "Benchmark", "Protocol", "Resources", "synthetic_scenes"]
