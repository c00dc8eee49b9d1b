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
    bench = canonical(name)
    if bench not in IMPLEMENTED:
        raise UnknownBenchmarkError(f"benchmark {bench!r} is not implemented yet (available: {', '.join(IMPLEMENTED)})")
    return importlib.import_module(f"rtransfer.benchmarks.{IMPLEMENTED[bench]}").TASK


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
    return [canonical(n) for n in names]
