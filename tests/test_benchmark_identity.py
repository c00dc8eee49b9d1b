"""A benchmark's identity is declared once, in benchmarks/names.py; everything else must agree with it: the task's
group (probes read `get_task(b).group`, the report and the TI `names.group_of(b)`), the spellings, the registry,
the suites and the lm-eval table."""

import inspect
import json
import subprocess
import sys

import pytest

from rtransfer.benchmarks.base import Task
from rtransfer.benchmarks.names import (
    GROUPS,
    LAB_BENCHMARKS,
    PAPER_BENCHMARKS,
    benchmarks,
    canonical,
    display,
    group_of,
    lookup,
)
from rtransfer.benchmarks.registry import IMPLEMENTED, SUITES, catalog, get_task
from rtransfer.sources import LM_EVAL_TASKS, load_lm_eval

NAMES = [b.name for b in benchmarks()]
VARIANTS = {entry["name"]: entry["variants"] for entry in catalog()["benchmarks"]}


def _tasks(name: str) -> list[Task]:
    """The benchmark's task and every variant of it."""
    return [get_task(name), *map(get_task, VARIANTS[name])]


@pytest.mark.parametrize("name", NAMES)
def test_every_task_takes_its_group_from_names(name):
    for task in _tasks(name):
        assert task.name == name and task.group == type(task).group == group_of(name) in GROUPS
        # No class between the task and Task declares a group of its own: it would hide the declared one.
        assert inspect.getattr_static(type(task), "group") is Task.__dict__["group"], type(task).__name__


@pytest.mark.parametrize("bench", benchmarks(), ids=NAMES)
def test_every_spelling_resolves_to_its_benchmark(bench):
    # A spelling shared by two benchmarks would name the later one: each must still find its own.
    for spelling in (bench.name, bench.display, *bench.aliases, bench.display.upper(), bench.name.replace("_", "-")):
        assert canonical(spelling) == bench.name and lookup(spelling) is bench, spelling
    assert display(bench.name) == bench.display


def test_registry_and_suites_hold_exactly_the_declared_benchmarks():
    assert list(IMPLEMENTED) == NAMES == [*PAPER_BENCHMARKS, *LAB_BENCHMARKS]
    assert set(SUITES) == {"paper", "lab"} and SUITES["paper"] == PAPER_BENCHMARKS and SUITES["lab"] == LAB_BENCHMARKS
    assert [sum(group_of(b) == g for b in PAPER_BENCHMARKS) for g in GROUPS] == [4, 4, 4]
    assert {IMPLEMENTED[b] for b in LAB_BENCHMARKS} == {"rtransfer.lab.benchmarks:TASKS"}
    assert all(IMPLEMENTED[b] == b for b in PAPER_BENCHMARKS)


def test_lm_eval_table_is_the_paper_benchmarks_with_disjoint_tasks():
    assert list(LM_EVAL_TASKS) == list(PAPER_BENCHMARKS)
    claimed = [t for spec in LM_EVAL_TASKS.values() for t in spec.tasks]
    assert len(claimed) == len(set(claimed)), "an lm-eval task counted for two benchmarks"
    for name, spec in LM_EVAL_TASKS.items():
        assert spec.tasks and spec.metrics, name
        assert not spec.split or len(spec.tasks) > 1, name
    assert {n for n, spec in LM_EVAL_TASKS.items() if spec.split} == {"acpbench", "halueval"}


def test_lm_eval_results_named_as_declared_give_every_paper_benchmark(tmp_path):
    """A results file with each benchmark's first task (every subtask of a split one) and first metric."""
    results, expected = {}, {}
    for i, (name, spec) in enumerate(LM_EVAL_TASKS.items()):
        tasks = spec.tasks if spec.split else spec.tasks[:1]
        values = [(i + k + 1) / 100 for k in range(len(tasks))]
        results.update({t: {f"{spec.metrics[0]},none": v} for t, v in zip(tasks, values, strict=True)})
        expected[name] = 100 * sum(values) / len(values)
    (tmp_path / "results_1.json").write_text(json.dumps({"model_name": "org/m", "results": results}))
    row, notes = load_lm_eval(tmp_path)
    assert notes == [] and row.scores == pytest.approx(expected)


def test_a_task_outside_names_declares_its_group():
    class Stray(Task):
        name = "stray"

    class Toy(Task):
        name, group = "toy", "other"

    with pytest.raises(AttributeError, match=r"Stray: 'stray' is not in benchmarks/names.py"):
        _ = Stray().group
    assert Toy.group == Toy().group == "other"


def test_names_stays_a_leaf():
    """transfer.py and the report import names: it must not bring in benchmark modules or heavy libraries."""
    code = "import sys, rtransfer.benchmarks.names; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    ours = {m for m in loaded if m.startswith("rtransfer")}
    assert ours == {"rtransfer", "rtransfer.benchmarks", "rtransfer.benchmarks.names", "rtransfer.errors"}
    assert not {"numpy", "torch", "datasets", "transformers"} & set(loaded)
