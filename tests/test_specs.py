"""Specs, not closures: a unit of work is one saved description whose key is its own hash, the study is a plan of
such specs (DIR/plan.json), and every evaluation of one model is described by one EngineSpec."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from rtransfer.specs import EvalSpec, ModelRef, ProbeSpec, StepEvalSpec, TrainSpec, from_json, model_from_json
from rtransfer.study.config import load_study
from rtransfer.study.plan import plan
from rtransfer.train.config import describe, from_description, load_recipe


def _eval_spec(**engine_changes) -> EvalSpec:
    from rtransfer.engines.factory import EngineSpec

    model = ModelRef("grpo", "/studies/a/models/grpo", "arm", base="base", arm="grpo", method="grpo", seed=0)
    engine = replace(EngineSpec(model.source, batch_size=64, dtype="auto"), **engine_changes)
    return EvalSpec(model, engine, "lab", weights="abc", limit=50, out="/studies/a/runs/grpo")


# --- keys ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"batch_size": 8},  # batch size: the order and padding of what is decoded together
        {"thinking": False},  # the chat template's rendering of every prompt
        {"dtype": "bfloat16"},
        {"engine": "openai"},
        {"batch_tokens": 2048},
    ],
)
def test_an_eval_key_changes_with_what_changes_its_answers(change):
    assert _eval_spec(**change).key() != _eval_spec().key()


@pytest.mark.parametrize(
    "change",
    [
        {"model": "/elsewhere/grpo"},  # the same weights, moved: the key names them by their training key
        {"base_urls": ("http://h:8000/v1",), "engine": "hf"},
        {"request_timeout": 10.0},
        {"concurrency": 4},
        {"tokenizer": "/elsewhere/grpo"},
    ],
)
def test_an_eval_key_ignores_where_things_are(change):
    assert _eval_spec(**change).key() == _eval_spec().key()


def test_the_eval_key_follows_its_own_fields_and_its_inputs():
    spec = _eval_spec()
    assert replace(spec, out="/x").key() == spec.key()
    assert replace(spec, model=replace(spec.model, source="/x")).key() == spec.key()
    for changed in (
        replace(spec, weights="other"),
        replace(spec, limit=10),
        replace(spec, suite="lab_arith"),
        replace(spec, data_dir="/data"),
        replace(spec, after={"train:grpo": "k2"}),
        replace(spec, model=replace(spec.model, chat_thinking=True)),
    ):
        assert changed.key() != spec.key()


def test_a_planned_study_has_the_keys_of_its_dry_run(tmp_path):
    """The dry run names the base without building it; every key is still the one the run will have."""
    config = load_study("lab", quick=True)
    dry = plan(config, tmp_path / "s", dry_run=True)
    real = plan(config, tmp_path / "s")
    assert dry.models[0].source == "lab:quick" != real.models[0].source
    assert [(n.name, n.key) for n in dry.nodes] == [(n.name, n.key) for n in real.nodes]


def test_every_spec_of_every_shipped_study_reads_back_as_itself(tmp_path):
    for name in ("lab", "qwen3-0.6b", "unireason", "survey"):
        planned = plan(load_study(name), tmp_path / name, dry_run=True)
        for node in planned.nodes:
            again = from_json(json.loads(json.dumps(node.spec.to_json())))
            assert again == node.spec and again.key() == node.key, (name, node.name)
        for m in planned.models:
            assert model_from_json({**json.loads(json.dumps(m.__dict__)), "run_dir": "runs/x"}) == m


def test_a_training_spec_carries_its_recipe_whole():
    recipe = load_recipe("grpo", None, ["lr=5e-4", "seed=3"])
    assert from_description(describe(recipe)) == recipe


# --- the plan ----------------------------------------------------------------------------------------------------


def _nodes(planned, cls):
    return [n.spec for n in planned.nodes if isinstance(n.spec, cls)]


@pytest.mark.parametrize("thinking", ["default", "off"])
def test_every_evaluation_of_a_model_gets_the_same_engine_spec(tmp_path, thinking):
    """Final evaluation, checkpoint evaluations and probes of one model share one EngineSpec: chat thinking,
    batch size, dtype and placement cannot diverge between them (the checkpoints read their own weights)."""
    config = load_study("lab", quick=True)
    config = replace(config, arms=[replace(a, set=[*a.set, f"thinking={thinking}"]) for a in config.arms])
    planned = plan(config, tmp_path / "s", dry_run=True)
    finals = {s.model.name: s for s in _nodes(planned, EvalSpec)}
    steps = {s.template.model.name: s for s in _nodes(planned, StepEvalSpec)}
    probes = {s.model.name: s for s in _nodes(planned, ProbeSpec)}
    arms = [m for m in planned.models if m.role == "arm"]
    assert arms and set(steps) == set(probes) == {m.name for m in arms}
    expected = {"default": None, "off": False}[thinking]
    for m in arms:
        engine = finals[m.name].engine
        assert engine.thinking is expected and m.chat_thinking is expected
        assert engine.one_thread_per_batch  # answers independent of the threads a schedule gives the stage
        assert steps[m.name].template == finals[m.name]
        assert probes[m.name].engine == engine
        assert probes[m.name].base_engine == finals["base"].engine
        assert probes[m.name].answers == finals[m.name].out


def test_the_plan_names_what_each_node_reads_with_its_key(tmp_path):
    planned = plan(load_study("lab", quick=True), tmp_path / "s", dry_run=True)
    keys = {n.name: n.key for n in planned.nodes}
    for node in planned.nodes:
        assert all(keys[need] == key for need, key in node.spec.after.items()), node.name
        # the needs come before the node: one pass in plan order runs every node after what it reads
        assert all(list(keys).index(need) < list(keys).index(node.name) for need in node.needs)
    train = next(n for n in planned.nodes if n.name == "train:grpo")
    assert isinstance(train.spec, TrainSpec) and train.spec.keep_every == train.spec.execution["save_every"] == 2


def test_a_dry_run_writes_the_plan_and_nothing_else(tmp_path, cli):
    code, out, err = cli("study", "--quick", "--out", tmp_path / "s", "--dry-run")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["plan.json"]
    written = json.loads((tmp_path / "s" / "plan.json").read_text())
    assert [n["name"] for n in written["nodes"]] == [s["stage"] for s in json.loads(out)["stages"]]
    assert {m["name"] for m in written["models"]} == {"base", "sft-think", "sft-nothink", "onpolicy", "grpo", "opd"}


# --- one entry point -------------------------------------------------------------------------------------------


def test_a_spec_runs_in_a_child_process_from_its_file(tmp_path, tiny_model):
    """`python -m rtransfer.jobs SPEC.json`: what a launcher or a child runs, the same spec the study holds."""
    from rtransfer.engines.factory import EngineSpec
    from rtransfer.jobs import write

    model = ModelRef("tiny", str(tiny_model), "base")
    spec = EvalSpec(
        model, EngineSpec(str(tiny_model), batch_size=4), "lab_arith", "w", limit=3, out=str(tmp_path / "r")
    )
    path = write(spec, tmp_path / "spec.json")
    done = subprocess.run([sys.executable, "-m", "rtransfer.jobs", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = json.loads((tmp_path / "r" / "scores.json").read_text())
    assert scores["benchmarks"]["lab_arith"]["n"] == 3
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["versions"]["rtransfer_commit"] and manifest["versions"]["rtransfer_dirty"] in (True, False)
    bad = subprocess.run([sys.executable, "-m", "rtransfer.jobs"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_a_stale_nodes_outputs_are_moved_aside_never_deleted(tmp_path):
    from rtransfer.study.ledger import Ledger, Node

    spec = replace(_eval_spec(), out=str(tmp_path / "runs" / "grpo"))
    (tmp_path / "runs" / "grpo" / "records").mkdir(parents=True)
    (tmp_path / "runs" / "grpo" / "records" / "lab_arith.jsonl").write_text("{}\n")
    node = Node("eval:grpo", "eval", spec)
    ledger = Ledger.open(tmp_path / "manifest.json", {"models": {}}, [node])
    ledger.data["stages"]["eval:grpo"] = {"key": "0ld", "finished": "yesterday"}
    assert ledger.status(node) == "stale"
    ledger.begin(node)
    kept = tmp_path / "stale" / "eval-grpo-0ld" / "grpo" / "records" / "lab_arith.jsonl"
    assert kept.read_text() == "{}\n" and not (tmp_path / "runs" / "grpo").exists()
    assert ledger.status(node) == "resume"  # recorded under its new key, not finished


def test_the_lab_study_evaluates_every_checkpoint_each_arm_saves(tmp_path):
    """[eval] checkpoints: each arm keeps and evaluates its checkpoints at its own save_every (the lab's: 250 of the
    SFT arms' 750 steps, 10 of the RL arms' 50), not one cadence for all."""
    planned = plan(load_study("lab"), tmp_path / "s", dry_run=True)
    nodes = {n.name: n.spec for n in planned.nodes}
    for arm, every in {"sft-think": 250, "sft-nothink": 250, "onpolicy": 10, "grpo": 10, "opd": 10}.items():
        train, steps = nodes[f"train:{arm}"], nodes[f"steps:{arm}"]
        assert train.keep_every == steps.every == every == train.execution["save_every"], arm


def test_checkpoints_are_evaluated_on_the_first_checkpoint_limit_documents_and_never_on_more_than_the_final_models(
    tmp_path,
):
    """The lab study evaluates its checkpoints on 100 of each benchmark's 200 documents; its quick version, limited
    to 40, on those 40; everything else as the final evaluation is."""
    lab = {n.name: n.spec for n in plan(load_study("lab"), tmp_path / "lab", dry_run=True).nodes}
    quick = {n.name: n.spec for n in plan(load_study("lab", quick=True), tmp_path / "q", dry_run=True).nodes}
    for nodes, final_limit, step_limit in ((lab, None, 100), (quick, 40, 40)):
        final, steps = nodes["eval:grpo"], nodes["steps:grpo"]
        assert final.limit == final_limit and steps.template.limit == step_limit
        assert replace(steps.template, limit=final.limit) == final
