"""Recipes say what they ignore, `train --help` lists every recipe field, a short run still logs its loss,
checkpoint evaluations are named after their run and carry its method; a TI that is not to be read is never
printed as a number. (The quick study's smoke-test banner is checked on the report's fixture, tests/test_report.py.)"""

import csv
import io
import json
import re
import typing
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from rtransfer.train.config import RECIPES, load_recipe
from rtransfer.train.run import TrainJob, read_log, train

METHODS = tuple(RECIPES)


@pytest.fixture(scope="module")
def quick_base(tmp_path_factory) -> str:
    """The quick lab base, built once for this module (a lab base: training needs no --data)."""
    from rtransfer.lab.build import QUICK, build_base

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RTRANSFER_CACHE", str(tmp_path_factory.mktemp("cache")))
        return str(build_base(QUICK, out=tmp_path_factory.mktemp("quick") / "base"))


# --- recipe files: nothing silently ignored -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "r.toml",
            "[SFT]\nlr = 1e-4\n",
            "unknown table [SFT] (known: [sft], [onpolicy], [grpo], [opd]); did you mean [sft]?",
        ),
        (
            "r.yaml",
            "SFT:\n  lr: 0.0001\n",
            "unknown table [SFT] (known: [sft], [onpolicy], [grpo], [opd]); did you mean [sft]?",
        ),
        ("r.toml", "[train]\nlr = 1e-4\n", "unknown table [train] (known: [sft], [onpolicy], [grpo], [opd])\n"),
        (
            "r.toml",
            "[sft]\nLR = 1e-4\n",
            "[sft]: unknown SFTRecipe field 'LR' (known: attn_implementation, batch_size, bf16, epochs,",
        ),
        ("r.toml", "[sft]\nLR = 1e-4\n", "weight_decay); did you mean 'lr'?\n"),
        (
            "r.toml",
            "lerning_rate = 1e-4\n",
            "r.toml: unknown SFTRecipe field 'lerning_rate' (known: attn_implementation,",
        ),
        ("r.toml", "[grpo]\nrollouts = 4\n", "no [sft] table (the file has [grpo]); add one, or fields at top level"),
    ],
)
def test_a_recipe_file_part_that_would_be_ignored_is_a_one_line_error(cli, tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    code, out, err = cli("train", "sft", "--model", "lab", "--config", path, "--out", tmp_path / "d", "--dry-run")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"rtransfer: error: {path}") and message in err


def test_top_level_fields_apply_to_every_method_and_a_table_to_its_own(cli, tmp_path):
    path = tmp_path / "r.toml"
    path.write_text("seed = 3\nlr = 0.01\n\n[sft]\nlr = 0.0001\n")
    sft, grpo = load_recipe("sft", path), load_recipe("grpo", path)
    assert (sft.seed, sft.lr, grpo.seed, grpo.lr) == (3, 1e-4, 3, 0.01)
    code, out, err = cli("train", "grpo", "--model", "lab", "--config", path, "--out", tmp_path / "d", "--dry-run")
    assert code == 0, err
    recipe = json.loads(out)["recipe"]
    assert (recipe["seed"], recipe["lr"], recipe["rollouts"]) == (3, 0.01, 8)


# --- train METHOD --help --------------------------------------------------------------------------------------------


def help_fields(text: str) -> dict[str, tuple[str, str, str]]:
    """The recipe-field table at the end of `train METHOD --help`: name -> (type, default, help), with a wrapped
    help text joined again."""
    table = text.split("\nrecipe fields:", 1)[1].splitlines()[2:]
    out: dict[str, list[str]] = {}
    last = None
    for line in table:
        match = re.match(r"  (\w+)\s+(\S+(?: or \S+)*)\s{2,}(\S+)\s{2,}(.*)", line)
        if match:
            last = match.group(1)
            out[last] = [match.group(2), match.group(3), match.group(4)]
        else:
            out[last][2] += " " + line.strip()
    return {k: tuple(v) for k, v in out.items()}


@pytest.mark.parametrize("method", METHODS)
def test_train_help_lists_every_recipe_field_with_type_default_and_help(method, capsys):
    from rtransfer.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", method, "--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0 and f"in its [{method}] table" in text
    listed = help_fields(text)
    cls = RECIPES[method]
    hints = typing.get_type_hints(cls)
    assert list(listed) == [f.name for f in fields(cls)]  # every field, in the dataclass's order, once
    for f in fields(cls):
        assert listed[f.name] == (hints[f.name].__name__, json.dumps(f.default), f.metadata["help"]), f.name
    # The method's own defaults, not the shared ones: the lab recipes' choices (docs/training.md).
    expected = {
        "sft": ("lr", "0.001"),
        "onpolicy": ("rollouts", "4"),
        "grpo": ("max_steps", "50"),
        "opd": ("teacher", '"lab"'),
    }[method]
    assert listed[expected[0]][1] == expected[1]


# --- the last step's loss is logged ---------------------------------------------------------------------------------

SHORT = {  # 3 steps, a log line every 2: step 2 by the interval, step 3 as the last
    "sft": ["max_steps=3", "batch_size=4", "max_queries=16"],
    "onpolicy": ["max_steps=3", "batch_size=8", "rollouts=2", "max_completion_length=32", "max_queries=16"],
    "grpo": ["max_steps=3", "batch_size=8", "rollouts=4", "max_completion_length=32", "max_queries=16"],
    "opd": ["max_steps=3", "batch_size=8", "max_completion_length=32", "max_queries=16"],
}


@pytest.mark.parametrize("method", METHODS)
def test_the_last_step_is_logged_whatever_log_every_says(tmp_path, quick_base, method):
    for log_every, steps in ((2, [2, 3]), (5, [3])):  # 5 > max_steps: before, log.jsonl stayed empty
        overrides = [*SHORT[method], f"log_every={log_every}"]
        out = train(TrainJob(method, quick_base, tmp_path / f"{method}-{log_every}", overrides=overrides))
        log = read_log(out)
        assert [r["step"] for r in log] == steps, (method, log_every)
        assert np.isfinite(log[-1]["loss"]) and np.isfinite(log[-1]["lr"])
        # GRPO's loss is 0 when every group's rewards are equal (no advantage), on-policy SFT's when no answer was
        # kept: their rewards and kept shares are logged beside it. A distillation loss is a divergence, > 0.
        assert log[-1]["loss"] > 0 if method in ("sft", "opd") else "reward_mean" in log[-1]
        assert json.loads((out / "train.json").read_text())["steps"] == 3


# --- checkpoint evaluations: named after their run, with its method -------------------------------------------------


def test_checkpoint_evaluations_are_named_after_their_run_and_carry_its_method(tmp_path, quick_base):
    from rtransfer.sources import load_inputs
    from rtransfer.train.run import evaluate_model

    overrides = ["max_steps=2", "save_every=2", "batch_size=4", "max_queries=16"]
    for name, seed in (("sft-a", 0), ("sft-b", 1)):
        out = tmp_path / name
        train(TrainJob("sft", quick_base, out, seed=seed, overrides=overrides, eval_every=2, eval_suite="lab_arith"))
    evaluate_model(Path(quick_base), tmp_path / "base-run", "lab_arith", name="base")
    runs = [tmp_path / name / "evals" / run for name in ("sft-a", "sft-b") for run in ("step-2", "final")]
    manifests = [json.loads((run / "manifest.json").read_text()) for run in runs]
    assert [(m["name"], m["method"]) for m in manifests] == [
        ("sft-a@step-2", "sft"),
        ("sft-a", "sft"),
        ("sft-b@step-2", "sft"),
        ("sft-b", "sft"),
    ]
    # Two runs' evaluations in one comparison, as `rtransfer ti` reads them: no two share a name.
    rows, _ = load_inputs([*runs, tmp_path / "base-run"], base=str(tmp_path / "base-run"))
    assert [(r.model, r.method, r.base) for r in rows][:2] == [
        ("sft-a@step-2", "sft", "base"),
        ("sft-a", "sft", "base"),
    ]
    assert len({r.model for r in rows}) == 5 and all(r.scores["lab_arith"] >= 0 for r in rows)


# --- a TI that is not to be read is never a number ------------------------------------------------------------------


def grades(correct: list[int], n: int = 40):
    from rtransfer.transfer import DocGrades

    values = np.zeros(n)
    values[correct] = 1.0
    return DocGrades([f"d{i}" for i in range(n)], values, np.ones(n))


def scored(model: str, base: str | None, math: list[int], other: list[int], non: list[int]):
    from rtransfer.transfer import ModelScores

    docs = {"math500": grades(math), "gpqa_diamond": grades(other), "coqa": grades(non)}
    return ModelScores(model, base, {b: d.score() for b, d in docs.items()}, "sft", docs)


def test_unstable_and_undefined_tis_are_dashes_with_the_flag_in_every_table_format():
    from rtransfer.report.tables import render, ti_table
    from rtransfer.transfer import transferability

    r = range
    rows = [
        scored("base", None, list(r(20)), list(r(10)), list(r(20))),
        scored("gain", "base", list(r(36)), list(r(13)), list(r(20))),  # math +40 points: a stable TI
        scored("flat", "base", [*r(1, 20), 25, 26], list(r(10)), list(r(19))),  # math +1 doc of 40: within noise
        scored("lost", "base", list(r(12)), list(r(11)), list(r(21))),  # math lost: no TI at all
    ]
    results = transferability(rows, bootstrap=300, seed=0)
    flags = {x.model: "undefined" if x.undefined else "unstable" if x.unstable else "" for x in results}
    assert flags == {"gain": "", "flat": "unstable", "lost": "undefined"}
    assert all(np.isfinite(x.ti["other"]) for x in results if x.model != "lost")  # the flat TI has a value ...
    header, cells = ti_table(results)
    table = {row[0]: dict(zip(header, row, strict=True)) for row in cells}
    gain = next(x for x in results if x.model == "gain")
    assert table["gain"]["TI_other"] == f"{gain.ti['other']:.1f}" and table["gain"]["TI_other CI"].startswith("[")
    for model, flag in (("flat", "unstable"), ("lost", "undefined")):  # ... which no table shows
        for g in ("other", "non"):
            assert (table[model][f"TI_{g}"], table[model][f"TI_{g} CI"]) == (f"— ({flag})", "")
        assert table[model]["Δmath"] not in ("", "—")  # the group changes stay: they are always defined
    printed = list(csv.reader(io.StringIO(render(header, cells, "csv"))))
    assert printed == [header, *cells]
    assert "-- (unstable) & -- (unstable)" in render(header, cells, "latex")
    terminal = render(header, cells, "terminal")
    assert terminal.count("— (unstable)") == 2 and terminal.count("— (undefined)") == 2
