"""Benchmarks: each declared once in names.py (name, group, display name, implementation), and one small module
per benchmark family."""

from rtransfer.benchmarks.names import GROUPS, PAPER_BENCHMARKS, Benchmark, canonical, display, group_of, lookup

__all__ = ["GROUPS", "PAPER_BENCHMARKS", "Benchmark", "canonical", "display", "group_of", "lookup"]
