"""One module per CLI subcommand: `register(subparsers)` adds its parser and sets `run`."""

import argparse
from pathlib import Path


def add_benchmark_args(p: argparse.ArgumentParser) -> None:
    """Which benchmarks, and where their data lives: the same flags for every command that reads benchmarks."""
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--benchmarks", help="comma-separated benchmark names (rtransfer list shows them)")
    which.add_argument("--suite", help="a named suite: paper, lab (rtransfer list shows their members)")
    p.add_argument("--data-dir", type=Path, help="local data in the layout of shared/benchmarks (default: the hub)")


def add_placement_args(p: argparse.ArgumentParser) -> None:
    """Where an in-process model runs."""
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--device-map", help="e.g. auto: spread a large model over the GPUs (accelerate)")
