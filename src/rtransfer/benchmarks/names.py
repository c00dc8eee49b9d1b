"""The benchmark names used everywhere in rtransfer, their group, and the spellings accepted on input.

The paper's tables use display names (MATH500, GPQA-Diamond, MC-TACO, ...); files and the CLI use the
canonical snake-case names. Both are accepted wherever a benchmark is named.
"""

import re
from dataclasses import dataclass, field

from rtransfer.errors import UnknownBenchmarkError

GROUPS = ("math", "other", "non")
GROUP_TITLES = {"math": "Math reasoning", "other": "Other reasoning", "non": "Non-reasoning"}


@dataclass(frozen=True)
class Benchmark:
    name: str  # canonical: lower snake case, used in files and on the command line
    group: str  # one of GROUPS
    display: str  # as the paper's tables print it
    aliases: tuple[str, ...] = field(default=())


_REGISTRY: dict[str, Benchmark] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    # "GPQA-Diamond", "gpqa_diamond" and "GPQA Diamond" are one benchmark.
    return re.sub(r"[^a-z0-9]", "", name.lower())


def register(bench: Benchmark) -> Benchmark:
    """Add a benchmark name (the lab adds its own). Re-registering the same definition is a no-op."""
    if bench.group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, not {bench.group!r}")
    known = _REGISTRY.get(bench.name)
    if known is not None and known != bench:
        raise ValueError(f"benchmark {bench.name!r} is already registered differently")
    _REGISTRY[bench.name] = bench
    for spelling in (bench.name, bench.display, *bench.aliases):
        _ALIASES[_key(spelling)] = bench.name
    return bench


PAPER_BENCHMARKS = tuple(
    register(b).name
    for b in (
        Benchmark("math500", "math", "MATH500", ("MATH-500", "hendrycks_math_500", "HuggingFaceH4/MATH-500")),
        Benchmark("aime24", "math", "AIME24", ("AIME 2024", "aime2024")),
        Benchmark("aime25", "math", "AIME25", ("AIME 2025", "aime2025")),
        Benchmark("olympiadbench", "math", "OlympiadBench", ("olympiad_bench",)),
        Benchmark("gpqa_diamond", "other", "GPQA-Diamond", ("GPQA",)),
        Benchmark("livecodebench", "other", "LiveCodeBench", ("LCB",)),
        Benchmark("acpbench", "other", "ACPBench", ("acp_bench",)),
        Benchmark("headqa", "other", "HeadQA", ("HEAD-QA", "headqa_en")),
        Benchmark("coqa", "non", "CoQA"),
        Benchmark("ifeval", "non", "IFEval"),
        Benchmark("halueval", "non", "HaluEval"),
        Benchmark("mctaco", "non", "MC-TACO", ("mc_taco",)),
    )
)


# The embedded lab's generated benchmarks (rtransfer.lab), two or three per group.
LAB_BENCHMARKS = tuple(
    register(Benchmark(name, group, display)).name
    for name, group, display in (
        ("lab_arith", "math", "Lab-Arith"),
        ("lab_lineq", "math", "Lab-LinEq"),
        ("lab_order", "other", "Lab-Order"),
        ("lab_trace", "other", "Lab-Trace"),
        ("lab_format", "non", "Lab-Format"),
        ("lab_story", "non", "Lab-Story"),
        ("lab_support", "non", "Lab-Support"),
    )
)


def lookup(name: str) -> Benchmark | None:
    """The benchmark for any accepted spelling, or None."""
    canonical_name = _ALIASES.get(_key(name))
    return _REGISTRY[canonical_name] if canonical_name else None


def known_names() -> str:
    return ", ".join(sorted(_REGISTRY))


def canonical(name: str) -> str:
    """Canonical name for any accepted spelling; a one-line error listing the known names otherwise."""
    bench = lookup(name)
    if bench is None:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r} (known: {known_names()})")
    return bench.name


def group_of(name: str) -> str:
    return _REGISTRY[canonical(name)].group


def display(name: str) -> str:
    return _REGISTRY[canonical(name)].display


def names_in_group(group: str) -> list[str]:
    return [b.name for b in _REGISTRY.values() if b.group == group]
