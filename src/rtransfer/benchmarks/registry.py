"""Benchmarks by name, imported on first use, and the suites that group them."""

import importlib
from pathlib import Path
from typing import Any

from rtransfer.benchmarks.base import Task
from rtransfer.benchmarks.loading import local_data
from rtransfer.benchmarks.names import (
    GROUP_TITLES,
    GROUPS,
    LAB_BENCHMARKS,
    PAPER_BENCHMARKS,
    benchmarks,
    canonical,
    display,
)
from rtransfer.errors import UnknownBenchmarkError

# Benchmark name -> its implementation, as benchmarks/names.py declares it: a module under rtransfer.benchmarks
# defining TASK (and VARIANTS), or "module.path:NAME" for a task in the dictionary NAME of another module.
IMPLEMENTED = {b.name: b.module or b.name for b in benchmarks()}

SUITES = {
    "paper": PAPER_BENCHMARKS,  # the paper's 12
    "lab": LAB_BENCHMARKS,  # the embedded lab: a miniature of the three groups that a CPU model can learn
}


def resolve_suite(text: str) -> list[str]:
    """A suite name, or comma-separated benchmark names (a study's and a checkpoint evaluation's `suite`)."""
    return resolve(suite=text) if text in SUITES else resolve(benchmarks=text)


def _module(bench: str):
    """The module that implements a canonical benchmark, and the name of its task table (or "")."""
    path, _, table = IMPLEMENTED[bench].partition(":")
    return importlib.import_module(path if "." in path else f"rtransfer.benchmarks.{path}"), table


def get_task(name: str) -> Task:
    """The task for a benchmark name, or `name:variant` for a documented variant (e.g. the paper's procedure
    where ours differs: `gpqa_diamond:paper-order`, `acpbench:multiturn`). A variant has its own version, so
    it never mixes with the default in one run directory."""
    base, _, variant = name.partition(":")
    bench = canonical(base)  # every declared benchmark names its implementation
    module, table = _module(bench)
    if table:
        return getattr(module, table)[bench]
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


def catalog(data_dir: Path | None = None) -> dict[str, Any]:
    """What `rtransfer list` shows: every implemented benchmark (canonical and display name, group, kind, variants),
    the groups and the suites; with `data_dir`, whether each benchmark's data is found there (`data`: found,
    missing, unreadable or generated, and `data_note` saying where or why)."""
    entries = []
    for name in IMPLEMENTED:  # the paper's, in its order, then the lab's
        task, (module, table) = get_task(name), _module(name)
        entry = {"name": name, "display": display(name), "group": task.group, "kind": task.kind}
        entry["variants"] = [] if table else [f"{name}:{v}" for v in getattr(module, "VARIANTS", {})]
        if data_dir is not None:
            entry["data"], entry["data_note"] = local_data(task, data_dir)
        entries.append(entry)
    groups = {
        g: {"title": GROUP_TITLES[g], "benchmarks": [b["name"] for b in entries if b["group"] == g]} for g in GROUPS
    }
    return {
        "benchmarks": entries,
        "groups": groups,
        "suites": {suite: list(members) for suite, members in SUITES.items()},
        "data_dir": None if data_dir is None else str(data_dir),
    }
