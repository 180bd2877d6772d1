"""Benchmarks: latency, throughput, memory, size and accuracy side by side; reports; the CI gate."""

from edgewise.bench.compare import compare, load_report
from edgewise.bench.config import BenchConfig, CompareConfig
from edgewise.bench.stage import bench

__all__ = ["BenchConfig", "CompareConfig", "bench", "compare", "load_report"]
