"""On-policy distillation (method opd) on the shipped lab base and its shipped teacher model: the loss is the
divergence it says, the samples come from the student being trained, a killed run resumes to the same weights,
and a wrong teacher is a one-line error."""

import json
from pathlib import Path

import pytest
import torch

from rtransfer.lab.build import BuildConfig, build_teacher, shipped_base, teacher_config
from rtransfer.train.config import load_recipe
from rtransfer.train.data import load_queries
from rtransfer.train.outputs import TrainDir
from test_train import kill_at, weights

BASE = str(shipped_base(BuildConfig()))
OPD = ["max_steps=4", "save_every=2", "batch_size=16", "log_every=1", "max_completion_length=48"]


@pytest.fixture(scope="module")
def queries():
    return load_queries("lab", limit=32)


def test_the_default_lab_teacher_model_ships_and_shares_the_bases_tokenizer():
    teacher = shipped_base(teacher_config(BuildConfig()))
    assert teacher is not None, "the shipped teacher is not what `rtransfer lab build --teacher` builds: rebuild it"
    assert (teacher / "tokenizer.json").read_bytes() == (Path(BASE) / "tokenizer.json").read_bytes()
    assert weights(teacher) != weights(BASE)


def test_building_a_lab_teacher_gives_the_process_its_thread_count_back():
    """An opd arm builds its lab teacher in its own training process, then trains on its recipe's one thread:
    the build's two threads must not stay behind (they did, and the arm trained on two when it built)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        teacher = build_teacher("lab:quick")  # the quick base and its teacher, both built here (isolated cache)
        assert json.loads((teacher / "lab_build.json").read_text())["config"]["threads"] == 2
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def brute_force_divergence(trainer, inputs, beta: float) -> float:
    """The token mean of KL(student || teacher) (beta 1) or KL(teacher || student) (beta 0) over the completion
    tokens, from the two models' full logits."""
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    n = inputs["completion_ids"].size(1)
    with torch.no_grad():
        student = trainer.model(input_ids=ids, attention_mask=mask).logits[:, -n - 1 : -1].double().log_softmax(-1)
        teacher = trainer.teacher_model(input_ids=ids, attention_mask=mask).logits[:, -n - 1 : -1]
    teacher = teacher.double().log_softmax(-1)
    p, q = (student, teacher) if beta == 1 else (teacher, student)
    per_token = (p.exp() * (p - q)).sum(-1)
    keep = inputs["completion_mask"].bool()
    return float(per_token[keep].mean())


@pytest.mark.parametrize("beta", [1.0, 0.0])
def test_the_loss_is_the_divergence_to_the_teacher_on_the_students_own_answers(tmp_path, queries, beta):
    from rtransfer.train.distill import distill_trainer

    recipe = load_recipe("opd", overrides=[*OPD, f"beta={beta}"])
    trainer = distill_trainer(BASE, queries, recipe, TrainDir(tmp_path / "d"), str(build_teacher(BASE)))
    trainer.model.train()
    rows = [trainer.train_dataset[i] for i in range(16)]
    inputs = trainer._prepare_inputs(rows)
    assert inputs["completion_mask"].sum() > 16  # the student's answers, one per prompt, several tokens each
    loss = trainer.compute_loss(trainer.model, inputs).item()
    assert loss == pytest.approx(brute_force_divergence(trainer, inputs, beta), abs=1e-5)
    assert loss > 0.01  # the lab teacher is another model than the base


def test_each_rounds_answers_are_sampled_from_the_weights_of_that_step(tmp_path, queries):
    """Round 2 samples from the weights after step 1, not from the base's: every sample is on-policy."""
    from rtransfer.train.distill import distill_trainer

    recipe = load_recipe("opd", overrides=[*OPD, "max_steps=2", "save_every=1", "lr=1e-3", "warmup=0"])
    trainer = distill_trainer(BASE, queries, recipe, TrainDir(tmp_path / "d"), str(build_teacher(BASE)))
    sampled_from = []
    generate = trainer._generate

    def recorded(prompts):
        sampled_from.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
        return generate(prompts)

    trainer._generate = recorded
    trainer.train()
    from safetensors.torch import load_file

    after_step_1 = load_file(tmp_path / "d" / "checkpoints" / "checkpoint-1" / "model.safetensors")
    base = load_file(Path(BASE) / "model.safetensors")
    assert len(sampled_from) == 2
    for name, value in base.items():
        assert torch.equal(sampled_from[0][name], value), name
    changed = [name for name, value in after_step_1.items() if not torch.equal(value, base[name])]
    assert changed and all(torch.equal(sampled_from[1][name], after_step_1[name]) for name in after_step_1)


def without_times(line: str) -> dict:
    return {k: v for k, v in json.loads(line).items() if k != "wall_s"}


def test_opd_resumes_bit_identical_after_a_kill(tmp_path, queries):
    """Killed at the end of its first epoch (32 prompts, 16 a step): the second epoch's order is the same in the
    resumed run (TRL's sampler alone drew another: train.outputs.epoch_seeded_order)."""
    from rtransfer.train.distill import train_distill

    recipe = load_recipe("opd", overrides=OPD)
    full = train_distill(BASE, queries, recipe, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train_distill(BASE, queries, recipe, tmp_path / "killed", callbacks=[kill_at(2)])
    resumed = train_distill(BASE, queries, recipe, tmp_path / "killed")
    assert weights(resumed) == weights(full) != weights(BASE)
    log, again = (
        [without_times(line) for line in (run / "log.jsonl").read_text().splitlines()] for run in (full, resumed)
    )
    assert again == log and [row["step"] for row in log] == [1, 2, 3, 4] and all(row["loss"] > 0 for row in log)
    info = json.loads((full / "train.json").read_text())
    assert info["data"]["teacher"] == str(build_teacher(BASE)) and info["data"]["teacher_fingerprint"]
    assert info["seen"]["sequences"] == 4 * 16


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["beta=1.5"], "beta = 1.5: 0 (forward KL) to 1 (reverse KL)"),
        (["teacher="], "teacher is empty"),
        (["rollouts=4"], "unknown DistillRecipe field 'rollouts'"),
    ],
)
def test_bad_distillation_recipes_are_one_line_errors(cli, tmp_path, sets, message):
    args = [a for s in sets for a in ("--set", s)]
    code, _, err = cli("train", "distill", "--model", "lab", "--out", tmp_path / "d", *args)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_a_teacher_with_another_tokenizer_is_a_one_line_error(cli, tmp_path, tiny_model):
    """A random tiny model with its own tokenizer cannot teach the lab base; the lab teacher teaches lab bases only."""
    code, _, err = cli("train", "opd", "--model", "lab", "--out", tmp_path / "d", "--set", f"teacher={tiny_model}")
    assert code == 2 and "has another tokenizer than the student" in err and err.count("\n") == 1, err
    code, _, err = cli("train", "opd", "--model", tiny_model, "--data", "lab", "--out", tmp_path / "e")
    assert code == 2 and "teacher = lab distils into a lab base only" in err and err.count("\n") == 1, err
