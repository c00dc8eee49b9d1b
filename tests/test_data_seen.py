"""What each arm saw: every training run records in train.json the distinct queries, the sequences and loss tokens
of its optimiser steps and the steps themselves, counted from the batches it trained on, checked here against
counts made another way (the trainer's tokenized data, the per-step log, the loss's own mask), in one process, after
a kill and resume, and in two processes; the study's compare stage carries them and the report shows them beside
the TI."""

import json
from pathlib import Path

import pytest

from rtransfer.lab.build import BuildConfig, shipped_base
from rtransfer.train.config import load_recipe
from rtransfer.train.data import Trace, load_queries
from rtransfer.train.outputs import TrainDir

BASE = str(shipped_base(BuildConfig()))
SAMPLING = ["save_every=2", "batch_size=16", "rollouts=4", "log_every=1", "max_completion_length=48"]


def seen_of(out: Path) -> dict:
    return json.loads((Path(out) / "train.json").read_text())["seen"]


def log_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def kill_at(step: int):
    from transformers import TrainerCallback

    class KillAt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise KeyboardInterrupt

    return KillAt()


@pytest.fixture(scope="module")
def queries():
    return load_queries("lab", limit=8)


def traces(queries, per_query: int) -> list[Trace]:
    """`per_query` different traces of each query (as the teacher writes with teacher_samples > 1)."""
    return [
        Trace(q.id, q.prompt, f"{'Let me check. ' * (k + 1)}So the final answer is \\boxed{{{q.answer}}}.")
        for q in queries
        for k in range(per_query)
    ]


# --- SFT -------------------------------------------------------------------------------------------------------------


def completion_tokens(out: Path, data: list[Trace], recipe) -> int:
    """The loss tokens of one pass over `data`, from TRL's own tokenized rows (their labels)."""
    from rtransfer.train.sft import sft_trainer

    trainer, _ = sft_trainer(BASE, data, recipe, TrainDir(out))
    return sum(sum(label != -100 for label in labels) for labels in trainer.train_dataset["labels"])


def test_sft_counts_every_epoch_and_each_query_once(tmp_path, queries):
    from rtransfer.train.sft import train_sft

    data = traces(queries[:6], per_query=2)  # 12 traces of 6 queries
    recipe = load_recipe("sft", overrides=["epochs=2", "batch_size=4", "save_every=50"])
    seen = seen_of(train_sft(BASE, data, recipe, tmp_path / "run"))
    one_pass = completion_tokens(tmp_path / "count", data, recipe)
    assert seen == {"queries": 6, "sequences": 24, "tokens": 2 * one_pass, "steps": 6}


def test_sft_part_of_an_epoch_counts_what_it_drew(tmp_path, queries):
    from rtransfer.train.sft import train_sft

    data = traces(queries, per_query=1)  # 8 traces, one per query
    recipe = load_recipe("sft", overrides=["max_steps=1", "batch_size=4"])
    seen = seen_of(train_sft(BASE, data, recipe, tmp_path / "run"))
    # One batch of 4 drawn without replacement: 4 queries, and fewer tokens than the whole pass.
    assert (seen["queries"], seen["sequences"], seen["steps"]) == (4, 4, 1)
    assert 0 < seen["tokens"] < completion_tokens(tmp_path / "count", data, recipe)


def test_sft_resumed_after_a_kill_counts_as_the_uninterrupted_run(tmp_path, queries):
    from rtransfer.train.sft import train_sft

    data = traces(queries, per_query=1)
    recipe = load_recipe("sft", overrides=["max_steps=5", "save_every=2", "batch_size=3"])
    full = seen_of(train_sft(BASE, data, recipe, tmp_path / "full"))
    with pytest.raises(KeyboardInterrupt):
        train_sft(BASE, data, recipe, tmp_path / "killed", callbacks=[kill_at(4)])
    resumed = train_sft(BASE, data, recipe, tmp_path / "killed")
    assert json.loads((resumed / "train.json").read_text())["resumed_from_step"] == 4
    assert seen_of(resumed) == full
    # 5 steps of 3 over 8 traces (the last batch of an epoch holds 2): 3 + 3 + 2 + 3 + 3 traces, every query.
    assert (full["queries"], full["sequences"], full["steps"]) == (8, 14, 5)


# --- GRPO and on-policy SFT ------------------------------------------------------------------------------------------


def test_grpo_counts_the_logged_completions_and_distinct_queries(tmp_path, queries):
    from rtransfer.train.grpo import train_grpo

    # 4 steps × 4 prompts from 8 queries: each query drawn twice, counted once.
    recipe = load_recipe("grpo", overrides=["max_steps=4", *SAMPLING])
    out = train_grpo(BASE, queries, recipe, tmp_path / "run")
    log = log_rows(out)
    assert [row["step"] for row in log] == [1, 2, 3, 4]
    tokens = sum(round(row["completion_length"] * 16) for row in log)  # mean length × 16 completions per step
    assert seen_of(out) == {"queries": 8, "sequences": 64, "tokens": tokens, "steps": 4}


def test_onpolicy_counts_only_the_kept_answers_the_loss_trains_on(tmp_path, queries):
    from rtransfer.train.grpo import sampled_count
    from rtransfer.train.onpolicy import onpolicy_trainer
    from rtransfer.train.outputs import fit

    recipe = load_recipe("onpolicy", overrides=["max_steps=4", "lr=1e-3", *SAMPLING])
    target = TrainDir(tmp_path / "run")
    target.start(recipe, BASE, {"queries": len(queries)})
    trainer = onpolicy_trainer(BASE, queries, recipe, target)
    loss_tokens = []
    compute_loss = trainer._compute_loss

    def recording(model, inputs):  # the mask the loss itself is taken over
        loss_tokens.append(int(inputs["completion_mask"].sum()))
        return compute_loss(model, inputs)

    trainer._compute_loss = recording
    seen = seen_of(fit(target, trainer, 0, sampled_count))
    kept = sum(round(row["kept_share"] * 16) for row in log_rows(target.path))
    assert 0 < kept < 64  # some answers kept, some not, or the test shows nothing
    assert seen == {"queries": 8, "sequences": kept, "tokens": sum(loss_tokens), "steps": 4}


def test_two_processes_count_the_global_batch_and_resume_their_counts(tmp_path):
    """GRPO under ddp.yaml (2 processes over gloo), killed after the checkpoint of step 2 and resumed: each process
    counts its shard, the counts of both come back from the checkpoint, and the total is the global batch's."""
    import subprocess

    from rtransfer.lab.build import resolve_model
    from test_train_multiprocess import KILLER, environment, launch_command, run

    resolve_model("lab:quick")  # built once, before two processes would race to build it
    out = tmp_path / "run"
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(KILLER)
    env = environment(KILL_AFTER_CHECKPOINT="2", PYTHONPATH=str(tmp_path / "hook"))
    process = subprocess.run(launch_command("grpo", out), env=env, start_new_session=True, capture_output=True)
    assert process.returncode != 0 and b"Signal 9 (SIGKILL)" in process.stderr, process.stderr[-3000:]
    kept = sorted(p.name for p in (out / "checkpoints" / "checkpoint-2").glob("data_seen-*.json"))
    assert kept == ["data_seen-0.json", "data_seen-1.json"]
    run("grpo", out)
    info = json.loads((out / "train.json").read_text())
    assert info["execution"]["processes"] == 2 and info["resumed_from_step"] == 2
    # 4 steps of 2 processes × 16 completions = 8 prompts × 4 rollouts, from the lab's 4000 queries: 32 distinct.
    tokens = sum(round(row["completion_length"] * 32) for row in log_rows(out))
    assert info["seen"] == {"queries": 32, "sequences": 128, "tokens": tokens, "steps": 4}


# --- the study's compare stage and the report ------------------------------------------------------------------------

BENCHMARKS = ("lab_arith", "lab_lineq", "lab_order", "lab_trace", "lab_format", "lab_story")  # two per group
SKILL = {"base": 0.3, "sft": 0.6, "grpo": 0.5, "survey": 0.55}  # chance of a correct answer, math only moves


def synthetic_study(root: Path, seen: dict[str, dict]) -> Path:
    """A study directory as `rtransfer study` lays it out, without a model: a base, an SFT and a GRPO arm with
    training directories whose train.json holds `seen`, and a survey model with none; runs of per-document grades
    drawn from a fixed generator; scores.json, ti.json and comparisons.json from the compare stage itself."""
    import dataclasses

    import numpy as np

    from rtransfer.jobs.compare import write_results
    from rtransfer.records import Record
    from rtransfer.runs import RunDir, new_manifest
    from rtransfer.specs import ModelRef

    rng = np.random.default_rng(0)
    refs = [
        ModelRef("base", "lab:quick", "base"),
        ModelRef("sft", "models/sft", "arm", "base", "sft", "sft", 0),
        ModelRef("grpo", "models/grpo", "arm", "base", "grpo", "grpo", 0),
        ModelRef("survey", "org/survey", "survey", "base", None, "grpo"),
    ]
    models = {}
    for ref in refs:
        run = RunDir(root / "runs" / ref.name)
        benchmarks = {b: {"version": "1", "grader_version": "1"} for b in BENCHMARKS}
        run.start(new_manifest(ref.name, sampling={"temperature": 0.0}, seed=0, benchmarks=benchmarks))
        for bench in BENCHMARKS:
            p = SKILL[ref.name] if bench in BENCHMARKS[:2] else 0.5
            with run.writer(bench) as w:
                for i in range(60):
                    w.write(Record(f"{bench}-{i}", 0, prompt="q", response="a", grade=float(rng.random() < p)))
        train_dir = f"models/{ref.name}" if ref.name in seen else None
        if train_dir:
            (root / train_dir).mkdir(parents=True)
            (root / train_dir / "train.json").write_text(json.dumps({"steps": 4, "seen": seen[ref.name]}))
        models[ref.name] = dataclasses.asdict(ref) | {"run_dir": f"runs/{ref.name}", "train_dir": train_dir}
    manifest = {"study": "seen", "config": {"base": "lab"}, "seeds": [0], "models": models}
    (root / "manifest.json").write_text(json.dumps(manifest))
    ti = {"index": "v2", "sigma": "pooled", "bootstrap": 50, "confidence": 0.95, "seed": 0}
    write_results(refs, ti, False, root)
    return root


def seen_table(markdown: str) -> list[list[str]]:
    """The rows of report.md's "What each arm saw" table (header first)."""
    lines = markdown.split("What each arm saw\n\n", 1)[1].splitlines()
    table = lines[: lines.index("")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table if not line.startswith("|---")]


SFT_SEEN = {"queries": 40000, "sequences": 60000, "tokens": 90000000, "steps": 938}
GRPO_SEEN = {"queries": 800, "sequences": 6400, "tokens": 6000000, "steps": 100}


def test_the_report_shows_what_each_arm_saw_and_warns_when_it_differs(tmp_path):
    from rtransfer.comparisons import Comparisons
    from rtransfer.report.build import write_report

    study = synthetic_study(tmp_path / "study", {"sft": SFT_SEEN, "grpo": GRPO_SEEN})
    comparisons = json.loads((study / "comparisons.json").read_text())
    assert comparisons["seen"] == {"sft": SFT_SEEN, "grpo": GRPO_SEEN}  # the survey model trained nothing here
    assert Comparisons.from_dict(comparisons).as_dict() == comparisons
    md = write_report(study)["md"].read_text()
    assert seen_table(md) == [
        ["model", "arm", "method", "seed", "queries", "sequences", "tokens", "optimiser steps"],
        ["sft", "sft", "sft", "0", "40,000", "60,000", "90,000,000", "938"],
        ["grpo", "grpo", "grpo", "0", "800", "6,400", "6,000,000", "100"],
    ]
    assert md.index("## Transferability Index") < md.index("What each arm saw") < md.index("## TI scatter")
    assert "The arms saw different amounts of data: compare with care (" in md
    assert "tokens 15.0× and queries 50.0×" in md
    with open(study / "tables" / "data_seen.csv", encoding="utf-8") as f:
        assert f.readline().strip() == "model,arm,method,seed,queries,sequences,tokens,optimiser steps"


def test_arms_that_saw_as_much_are_not_warned_about(tmp_path):
    from rtransfer.report.build import write_report

    near = {"queries": 800, "sequences": 3200, "tokens": 3000000, "steps": 100}  # tokens 2×: not more than 2×
    md = write_report(synthetic_study(tmp_path / "study", {"sft": near, "grpo": GRPO_SEEN}))["md"].read_text()
    assert [row[0] for row in seen_table(md)] == ["model", "sft", "grpo"]
    assert "compare with care" not in md


def test_an_arm_that_trained_on_nothing_is_named_so_not_a_ratio():
    import math

    from rtransfer.comparisons import seen_apart

    seen = {"a": {"tokens": 0, "queries": 4}, "b": {"tokens": 10, "queries": 4}}
    assert seen_apart(seen, {"a": ["a"], "b": ["b"]}) == {"tokens": math.inf}
