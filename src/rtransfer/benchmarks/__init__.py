"""Benchmarks: names and groups (here), and one small module per benchmark family (added by the eval stage)."""

from rtransfer.benchmarks.names import GROUPS, PAPER_BENCHMARKS, Benchmark, canonical, display, group_of, lookup

__all__ = ["GROUPS", "PAPER_BENCHMARKS", "Benchmark", "canonical", "display", "group_of", "lookup"]
