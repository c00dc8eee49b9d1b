"""The benchmarks rtransfer knows, each declared once, and the spellings accepted on input.

One `Benchmark` per benchmark says everything about its identity: the canonical name, the group, the display
name and aliases, the module that implements it and how lm-evaluation-harness names it. The rest is derived from
here: `Task.group` (benchmarks/base.py), `registry.IMPLEMENTED` and `sources.LM_EVAL_TASKS`;
tests/test_benchmark_identity.py checks them against the implementations. This module stays a leaf (no benchmark
module, no data library): transfer.py and the report read names and groups without loading any benchmark.

The paper's tables use display names (MATH500, GPQA-Diamond, MC-TACO, ...); files and the CLI use the
canonical snake-case names. Both are accepted wherever a benchmark is named.
"""

import re
from dataclasses import dataclass, field

from rtransfer.errors import UnknownBenchmarkError

GROUPS = ("math", "other", "non")
GROUP_TITLES = {"math": "Math reasoning", "other": "Other reasoning", "non": "Non-reasoning"}


@dataclass(frozen=True)
class LmEval:
    """Where a benchmark's score is in lm-evaluation-harness results (sources.load_lm_eval). The choices follow the
    authors' forked harness (ReasoningTransfer/Transferability-of-LLM-Reasoning) and the paper."""

    tasks: tuple[str, ...]  # tried in order, the first present is used; with `split`, all of them
    metrics: tuple[str, ...]  # tried in order, each with its filters in sources.FILTERS order
    split: bool = False  # lm-eval splits the benchmark into `tasks`: the score is the mean of the subtasks


@dataclass(frozen=True)
class Benchmark:
    name: str  # canonical: lower snake case, used in files and on the command line
    group: str  # one of GROUPS; the only place a benchmark's group is declared
    display: str  # as the paper's tables print it
    aliases: tuple[str, ...] = field(default=())
    # The implementation: "" is rtransfer/benchmarks/<name>.py (its TASK and VARIANTS); "package.module:TABLE" is
    # the task under this name in the dictionary TABLE of that module (the lab's generated benchmarks).
    module: str = ""
    lm_eval: LmEval | None = None  # None: lm-evaluation-harness has no such task


_REGISTRY: dict[str, Benchmark] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    # "GPQA-Diamond", "gpqa_diamond" and "GPQA Diamond" are one benchmark.
    return re.sub(r"[^a-z0-9]", "", name.lower())


def register(bench: Benchmark) -> Benchmark:
    """Add a benchmark. Re-registering the same definition is a no-op."""
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
        Benchmark(
            "math500",
            "math",
            "MATH500",
            ("MATH-500", "hendrycks_math_500", "HuggingFaceH4/MATH-500"),
            lm_eval=LmEval(
                ("hendrycks_math_500", "hendrycks_math500", "minerva_math500", "math500"),
                ("exact_match", "math_verify"),
            ),
        ),
        Benchmark(
            "aime24",
            "math",
            "AIME24",
            ("AIME 2024", "aime2024"),
            lm_eval=LmEval(("aime24", "aime2024", "AIME"), ("exact_match",)),
        ),
        Benchmark(
            "aime25",
            "math",
            "AIME25",
            ("AIME 2025", "aime2025"),
            lm_eval=LmEval(("aime25", "aime2025"), ("exact_match",)),
        ),
        Benchmark(
            "olympiadbench",
            "math",
            "OlympiadBench",
            ("olympiad_bench",),
            lm_eval=LmEval(("olympiadbench", "olympiad_bench"), ("exact_match",)),
        ),
        Benchmark(
            "gpqa_diamond",
            "other",
            "GPQA-Diamond",
            ("GPQA",),
            lm_eval=LmEval(
                (
                    "gpqa_diamond_cot_zeroshot",
                    "gpqa_diamond_cot_n_shot",
                    "gpqa_diamond_zeroshot",
                    "gpqa_diamond_n_shot",
                    "leaderboard_gpqa_diamond",
                ),
                ("exact_match", "acc", "acc_norm"),
            ),
        ),
        Benchmark(
            "livecodebench",
            "other",
            "LiveCodeBench",
            ("LCB",),
            lm_eval=LmEval(("livecodebench",), ("pass@1", "exact_match", "acc")),
        ),
        Benchmark(
            "acpbench",
            "other",
            "ACPBench",
            ("acp_bench",),
            lm_eval=LmEval(
                tuple(f"acp_{t}_mcq_cot_2shot" for t in ("app", "areach", "just", "land", "prog", "reach", "val")),
                ("exact_match",),
                split=True,
            ),
        ),
        Benchmark("headqa", "other", "HeadQA", ("HEAD-QA", "headqa_en"), lm_eval=LmEval(("headqa_en",), ("acc",))),
        Benchmark("coqa", "non", "CoQA", lm_eval=LmEval(("coqa",), ("f1",))),
        Benchmark("ifeval", "non", "IFEval", lm_eval=LmEval(("ifeval",), ("inst_level_strict_acc",))),
        Benchmark(
            "halueval",
            "non",
            "HaluEval",
            lm_eval=LmEval(
                ("halueval_qa", "halueval_dialogue", "halueval_summarization"), ("exact_match", "acc"), split=True
            ),
        ),
        Benchmark("mctaco", "non", "MC-TACO", ("mc_taco",), lm_eval=LmEval(("mc_taco",), ("acc",))),
    )
)


# The embedded lab's generated benchmarks (rtransfer.lab), two or three per group, all in one dictionary.
LAB_TASKS = "rtransfer.lab.benchmarks:TASKS"
LAB_BENCHMARKS = tuple(
    register(Benchmark(name, group, display, module=LAB_TASKS)).name
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


def benchmarks() -> tuple[Benchmark, ...]:
    """Every declared benchmark: the paper's in its order, then the lab's."""
    return tuple(_REGISTRY.values())


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
