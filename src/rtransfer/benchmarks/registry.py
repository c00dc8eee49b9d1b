"""Benchmarks by name, imported on first use, and the suites that group them."""

import importlib

from rtransfer.benchmarks.base import Task
from rtransfer.benchmarks.names import canonical
from rtransfer.errors import UnknownBenchmarkError

# Benchmarks with an implementation: canonical name -> module under rtransfer.benchmarks defining TASK.
IMPLEMENTED = {
    "math500": "math500",
    "aime24": "aime24",
    "aime25": "aime25",
    "olympiadbench": "olympiadbench",
    "gpqa_diamond": "gpqa_diamond",
    "acpbench": "acpbench",
    "headqa": "headqa",
    "mctaco": "mctaco",
}

SUITES = {
    # The paper's 12 (BRIEF §2); those not implemented yet are named in the error when asked for.
    "paper": (
        "math500",
        "aime24",
        "aime25",
        "olympiadbench",
        "gpqa_diamond",
        "livecodebench",
        "acpbench",
        "headqa",
        "coqa",
        "ifeval",
        "halueval",
        "mctaco",
    ),
}


def get_task(name: str) -> Task:
    """The task for a benchmark name, or `name:variant` for a documented variant (e.g. the paper's procedure
    where ours differs: `gpqa_diamond:paper-order`, `acpbench:multiturn`). A variant has its own version, so
    it never mixes with the default in one run directory."""
    base, _, variant = name.partition(":")
    bench = canonical(base)
    if bench not in IMPLEMENTED:
        raise UnknownBenchmarkError(f"benchmark {bench!r} is not implemented yet (available: {', '.join(IMPLEMENTED)})")
    module = importlib.import_module(f"rtransfer.benchmarks.{IMPLEMENTED[bench]}")
    if not variant:
        return module.TASK
    variants = getattr(module, "VARIANTS", {})
    if variant not in variants:
        raise UnknownBenchmarkError(f"{bench} has no variant {variant!r} (variants: {', '.join(variants) or 'none'})")
    return variants[variant]


def resolve(benchmarks: str | None = None, suite: str | None = None) -> list[str]:
    """Canonical names from a comma-separated list or a suite name."""
    if suite:
        if suite not in SUITES:
            raise UnknownBenchmarkError(f"unknown suite {suite!r} (known: {', '.join(SUITES)})")
        names = list(SUITES[suite])
    else:
        names = [n.strip() for n in (benchmarks or "").split(",") if n.strip()]
    if not names:
        raise UnknownBenchmarkError("no benchmarks named: give --benchmarks a,b or --suite NAME")
    out = []
    for n in names:
        base, colon, variant = n.partition(":")
        out.append(canonical(base) + colon + variant)
    return out
