"""Training on the shipped lab base, a few steps each: the mechanics of every method, not only that it ran."""

import json
from pathlib import Path

import pytest

from rtransfer.engines.base import AnswersInOrder, Generation, SamplingParams
from rtransfer.grading.math import grade_math
from rtransfer.lab.build import BuildConfig, shipped_base
from rtransfer.runs import RunDir
from rtransfer.train.config import load_recipe, recipe_path
from rtransfer.train.data import Trace, load_queries, read_traces
from rtransfer.train.outputs import TrainDir
from rtransfer.train.teacher import BENCHMARK, LabTeacher, run_teacher

BASE = str(shipped_base(BuildConfig()))


@pytest.fixture(scope="module")
def queries():
    return load_queries("lab", limit=32)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def weights(path: Path) -> bytes:
    return (Path(path) / "model.safetensors").read_bytes()


def kill_at(step: int):
    """A TrainerCallback that stops a run as a kill would, right after the checkpoint of `step` is written."""
    from transformers import TrainerCallback

    class KillAt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise KeyboardInterrupt

    return KillAt()


def log_without_times(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in lines(Path(path) / "log.jsonl")]


# --- teacher ---------------------------------------------------------------------------------------------------------


def test_teacher_keeps_exactly_what_the_grader_accepts(tmp_path, queries):
    from rtransfer.engines.hf import HFEngine

    engine, out = HFEngine.load(BASE, batch_size=48), tmp_path / "traces.jsonl"
    params = SamplingParams(temperature=1.0, max_new_tokens=48)
    result = run_teacher(engine, queries[:16], out, samples=3, params=params)
    records = RunDir(str(out) + ".run").records(BENCHMARK)
    gold = {q.id: q.answer for q in queries}
    expected = {
        (r.doc_id, r.sample)
        for r in records
        if grade_math(r.response, gold[r.doc_id]).score == 1.0 and r.extra["finish_reason"] == "stop"
    }
    traces = lines(out)
    assert len(records) == 48 and 0 < len(expected) < 48  # the base solves some, not all
    assert {(t["query_id"], t["sample"]) for t in traces} == expected and result.accepted == len(expected)
    by_key = {(r.doc_id, r.sample): r.response for r in records}
    assert all(t["completion"] == by_key[t["query_id"], t["sample"]] for t in traces)
    assert sum(total for _, total in result.by_source.values()) == 48
    again = run_teacher(engine, queries[:16], out, samples=3, params=params)  # resumed: nothing generated twice
    assert len(RunDir(str(out) + ".run").records(BENCHMARK)) == 48 and again.accepted == result.accepted


class Scripted(AnswersInOrder):
    """An engine that answers from a script: (text, finish_reason) per prompt."""

    def __init__(self, answers):
        self.answers = answers

    def generate(self, prompts, params, seeds):
        return [
            Generation(text=t, tokens=5, finish_reason=f) for t, f in (self.answers[p[-1]["content"]] for p in prompts)
        ]

    def describe(self):
        return {"engine": "scripted", "model": "scripted"}


def test_teacher_rejects_wrong_and_unfinished_answers(tmp_path, queries):
    q = queries[:3]
    engine = Scripted(
        {
            q[0].prompt: (f"So \\boxed{{{q[0].answer}}}.", "stop"),
            q[1].prompt: (f"So \\boxed{{{q[1].answer}}}.", "length"),  # right, but cut off: never kept
            q[2].prompt: ("So \\boxed{123456}.", "stop"),
        }
    )
    result = run_teacher(engine, q, tmp_path / "t.jsonl")
    assert [t["query_id"] for t in lines(tmp_path / "t.jsonl")] == [q[0].id] and (result.accepted, result.total) == (
        1,
        3,
    )


def test_lab_teacher_traces_think_and_no_think(cli, tmp_path):
    for thinking in ("on", "off"):
        out = tmp_path / f"{thinking}.jsonl"
        code, stdout, err = cli(
            "train",
            "teacher",
            "--teacher",
            "lab",
            "--limit",
            "20",
            "--samples",
            "2",
            "--thinking",
            thinking,
            "--out",
            out,
        )
        assert code == 0, err
        assert "40 of 40 solutions accepted (100.0 %)" in stdout and "lab_arith: kept 20 of 20" in stdout
        traces = read_traces(out)
        assert all(t.completion.startswith("<think>") == (thinking == "on") for t in traces)


# --- SFT -------------------------------------------------------------------------------------------------------------


def test_sft_trains_on_the_completion_only_in_the_engines_rendering(tmp_path, queries):
    from rtransfer.engines.hf import HFEngine
    from rtransfer.train.sft import sft_trainer

    traces = [
        Trace(q.id, q.prompt, f"Let me check. So the final answer is \\boxed{{{q.answer}}}.") for q in queries[:4]
    ]
    recipe = load_recipe("sft", overrides=["max_steps=1"])
    trainer, dropped = sft_trainer(BASE, traces, recipe, TrainDir(tmp_path / "t"))
    assert dropped == 0
    tok, engine = trainer.processing_class, HFEngine.load(BASE)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    for row, trace in enumerate(traces):
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row] == 1
        assert tok.decode(ids[labels != -100]) == trace.completion + tok.eos_token  # loss on the answer and its end
        prompt = tok.decode(ids[(labels == -100) & mask])
        assert prompt == engine.render([{"role": "user", "content": trace.prompt}])  # what eval shows the model


def test_sft_resumes_bit_identical_after_a_kill(tmp_path):

    from rtransfer.train.sft import train_sft

    traces = read_traces(lab_traces(tmp_path))
    recipe = load_recipe("sft", overrides=["max_steps=6", "save_every=3", "batch_size=4", "log_every=1"])

    full = train_sft(BASE, traces, recipe, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train_sft(BASE, traces, recipe, tmp_path / "killed", callbacks=[kill_at(3)])
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    resumed = train_sft(BASE, traces, recipe, tmp_path / "killed")
    assert weights(resumed) == weights(full) and weights(full) != weights(BASE)
    assert log_without_times(resumed) == log_without_times(full) and len(log_without_times(full)) == 6
    info = json.loads((resumed / "train.json").read_text())
    assert info["resumed_from_step"] == 3 and info["steps"] == 6 and info["recipe"]["method"] == "sft"
    assert info["versions"]["trl"] and info["base_fingerprint"] and info["data"]["traces"] == len(traces)


def lab_traces(tmp_path: Path) -> Path:
    queries = load_queries("lab", limit=24)
    return run_teacher(LabTeacher(queries, think=False), queries, tmp_path / "traces.jsonl").traces


# --- on-policy SFT ---------------------------------------------------------------------------------------------------

ONPOLICY = ["max_steps=4", "save_every=2", "batch_size=16", "rollouts=4", "log_every=1", "max_completion_length=48"]


def test_onpolicy_loss_is_sft_on_the_kept_answers(tmp_path, queries):
    """Advantage = kept (correct and finished), the loss mask holds the kept answers only, and the gradient is
    the NLL gradient of those answers' tokens, normalised over their count (SFT's token mean)."""
    import torch

    from rtransfer.train.grpo import completion_text
    from rtransfer.train.onpolicy import onpolicy_trainer

    recipe = load_recipe("onpolicy", overrides=[*ONPOLICY, "max_completion_length=64"])
    trainer = onpolicy_trainer(BASE, queries, recipe, TrainDir(tmp_path / "o"))
    rows = [trainer.train_dataset[i // 4] for i in range(16)]  # 4 prompts × 4 samples, as TRL's sampler feeds it
    torch.manual_seed(0)
    inputs = trainer._generate_and_score_completions(rows)
    texts = trainer.processing_class.batch_decode(inputs["completion_ids"], skip_special_tokens=True)
    eos = trainer.processing_class.eos_token_id
    finished = [(ids == eos).any().item() for ids in inputs["completion_ids"]]
    kept = [
        grade_math(completion_text(text), row["answer"]).score == 1.0 and done
        for text, row, done in zip(texts, rows, finished, strict=True)
    ]
    assert 0 < sum(kept) < 16  # both kinds in the batch, or the test shows nothing
    assert inputs["advantages"].tolist() == [float(k) for k in kept]
    mask = inputs["completion_mask"]
    assert [bool(m.any()) for m in mask] == kept and int(inputs["num_items_in_batch"]) == int(mask.sum())

    model = trainer.model
    model.zero_grad()
    shapes = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    loss = trainer._compute_loss(model, inputs)
    hook.remove()
    loss.backward()
    ours = [p.grad.clone() for p in model.parameters()]
    # The forward ran on the kept answers alone, cut after the longest of them (kept_rows): the same gradient.
    longest = max(int(m.nonzero().max()) + 1 for m in mask if m.any())
    assert shapes == [(sum(kept), inputs["prompt_ids"].size(1) + longest)]
    model.zero_grad()
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    logits = model(input_ids=ids, attention_mask=torch.cat([inputs["prompt_mask"], mask], dim=1)).logits
    n = inputs["completion_ids"].size(1)
    logps = torch.log_softmax(logits[:, -n - 1 : -1].float(), dim=-1)
    token_logps = logps.gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)
    nll = -(token_logps * mask).sum() / mask.sum()
    nll.backward()
    assert loss.item() == pytest.approx(nll.item(), rel=1e-5)
    for got, want in zip(ours, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_onpolicy_forward_keeps_as_many_rows_as_asked_and_leaves_unknown_batches_whole():
    import torch

    from rtransfer.train.onpolicy import kept_rows

    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]])
    batch = {
        "prompt_ids": torch.arange(6).reshape(3, 2),
        "prompt_mask": torch.ones(3, 2),
        "completion_ids": torch.arange(12).reshape(3, 4),
        "completion_mask": mask,
        "advantages": torch.tensor([1.0, 0.0, 1.0]),
        "num_items_in_batch": mask.sum(),
    }
    cut = kept_rows(batch)
    assert cut["completion_ids"].tolist() == [[0, 1, 2], [8, 9, 10]] and cut["prompt_ids"].tolist() == [[0, 1], [4, 5]]
    assert cut["advantages"].tolist() == [1.0, 1.0] and int(cut["num_items_in_batch"]) == 5
    none = kept_rows({**batch, "completion_mask": torch.zeros(3, 4, dtype=torch.long)})
    assert none["completion_ids"].tolist() == [[0]] and none["prompt_ids"].shape == (1, 2)
    # Another process kept 3: this one fills up with its first rejected row, masked (nothing to the loss).
    filled = kept_rows(batch, rows=3)
    assert filled["completion_mask"].tolist() == mask[:, :3].tolist() and filled["advantages"].tolist() == [1, 0, 1]
    assert kept_rows({**batch, "pixel_values": torch.zeros(3, 8)})["completion_ids"].shape == (3, 4)


def test_onpolicy_resumes_bit_identical_after_a_kill(tmp_path, queries):
    from rtransfer.train.onpolicy import train_onpolicy

    recipe = load_recipe("onpolicy", overrides=[*ONPOLICY, "lr=1e-3"])
    full = train_onpolicy(BASE, queries, recipe, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train_onpolicy(BASE, queries, recipe, tmp_path / "killed", callbacks=[kill_at(2)])
    resumed = train_onpolicy(BASE, queries, recipe, tmp_path / "killed")
    assert weights(resumed) == weights(full) != weights(BASE)
    log = log_without_times(full)
    assert log_without_times(resumed) == log and len(log) == 4
    assert all(row["loss"] > 0 and 0 <= row["kept_share"] <= 1 for row in log)


# --- GRPO ------------------------------------------------------------------------------------------------------------

GRPO = ["max_steps=4", "save_every=2", "batch_size=16", "rollouts=4", "log_every=1", "max_completion_length=48"]


def test_grpo_rewards_are_the_graders_grades(tmp_path, queries):
    from transformers import TrainerCallback

    from rtransfer.train.grpo import completion_text, grpo_trainer

    gold = {q.prompt: q.answer for q in queries}
    seen = []
    recipe = load_recipe("grpo", overrides=GRPO)
    trainer = grpo_trainer(BASE, queries, recipe, TrainDir(tmp_path / "g"))

    class Capture(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            logs = trainer._logs
            seen.extend(zip(logs["prompt"], logs["completion"], logs["rewards"]["correctness_reward"], strict=True))

    trainer.add_callback(Capture())
    trainer.train()
    assert len(seen) == 4 * 16
    for prompt, completion, reward in seen:
        assert reward == grade_math(completion_text(completion), gold[prompt[-1]["content"]]).score
    assert {reward for _, _, reward in seen} == {0.0, 1.0}


@pytest.mark.parametrize("sampler", ["trl", "rtransfer"])
def test_grpo_resumes_bit_identical_after_a_kill(tmp_path, queries, sampler):
    from rtransfer.train.grpo import train_grpo

    recipe = load_recipe("grpo", overrides=[*GRPO, f"sampler={sampler}"])

    full = train_grpo(BASE, queries, recipe, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train_grpo(BASE, queries, recipe, tmp_path / "killed", callbacks=[kill_at(2)])
    resumed = train_grpo(BASE, queries, recipe, tmp_path / "killed")
    assert weights(resumed) == weights(full) != weights(BASE)
    assert log_without_times(resumed) == log_without_times(full)
    assert {"reward_mean", "reward_std", "zero_std_groups", "completion_length"} <= set(lines(full / "log.jsonl")[0])


def test_rtransfer_rollouts_are_one_seeded_sample_per_row_of_trls_prompts(tmp_path, queries):
    """TRL's rollout_func contract: the prompt ids TRL itself would feed, one completion per row in order (the rows
    already repeat each prompt `rollouts` times), the end-of-turn token kept where an answer ended; draws that
    depend on the step and the row, not on torch's RNG."""
    import torch

    from rtransfer.train.grpo import grpo_trainer

    recipe = load_recipe("grpo", overrides=[*GRPO, "sampler=rtransfer"])
    trainer = grpo_trainer(BASE, queries, recipe, TrainDir(tmp_path / "g"))
    prompts = [[{"role": "user", "content": q.prompt}] for q in queries[:4] for _ in range(4)]
    out = trainer.rollout_func(prompts, trainer)
    assert out["prompt_ids"] == trainer._tokenize_prompts(prompts)[0] and out["logprobs"] is None
    completions, eos = out["completion_ids"], set(trainer.eos_token_ids)
    assert len(completions) == 16 and all(0 < len(ids) <= 48 for ids in completions)
    assert not any(eos & set(ids[:-1]) for ids in completions) and any(ids[-1] in eos for ids in completions)
    assert len({tuple(ids) for ids in completions[:4]}) > 1  # a prompt's rollouts are drawn apart
    torch.manual_seed(123)  # torch's RNG plays no part
    assert trainer.rollout_func(prompts, trainer)["completion_ids"] == completions
    trainer.state.global_step = 1
    assert trainer.rollout_func(prompts, trainer)["completion_ids"] != completions


# --- the command: lab defaults, checkpoint evaluation, recipes, errors ---------------------------------------------


def test_train_sft_on_the_lab_with_checkpoint_evaluation(cli, tmp_path):
    out = tmp_path / "sft"
    args = [
        "train",
        "sft",
        "--model",
        "lab",
        "--thinking",
        "off",
        "--out",
        out,
        "--set",
        "max_steps=4",
        "--set",
        "save_every=2",
        "--set",
        "max_queries=16",
        "--eval-every",
        "2",
        "--eval-suite",
        "lab_arith",
    ]
    code, stdout, err = cli(*args)
    assert code == 0, err
    assert "trained sft" in stdout and (out / "traces.jsonl").exists() and (out / "config.json").exists()
    for run in ("step-2", "step-4", "final"):
        scores = json.loads((out / "evals" / run / "scores.json").read_text())["benchmarks"]
        assert scores["lab_arith"]["n"] == 200
    before = weights(out)
    code, stdout, err = cli(*args)  # finished: a rerun trains nothing
    assert code == 0 and weights(out) == before, err
    code, _, err = cli(*args[:-6], "--set", "max_steps=5")
    assert code == 2 and "another recipe, base or data" in err


@pytest.mark.parametrize("name", ["lab", "qwen3-0.6b", "unireason"])
@pytest.mark.parametrize("method", ["sft", "onpolicy", "grpo", "opd"])
def test_shipped_recipes_validate_in_a_hub_free_dry_run(cli, tmp_path, name, method):
    data = "ReasoningTransferability/math_sft_40K" if method == "sft" else "ReasoningTransferability/math_rl_48k"
    code, out, err = cli(
        "train",
        method,
        "--model",
        "Qwen/Qwen3-14B-Base",
        "--config",
        name,
        "--data",
        data,
        "--out",
        tmp_path / "d",
        "--dry-run",
    )
    if (name, method) == ("lab", "opd"):  # the lab recipe's teacher is the lab teacher model: for lab bases only
        assert code == 2 and "teacher = lab distils into a lab base only" in err and err.count("\n") == 1
        return
    assert code == 0, err
    plan = json.loads(out)
    assert plan["recipe"]["method"] == method and plan["data"] == {"source": data} and plan["lab"] is False
    assert recipe_path(name).suffix == ".toml"


def test_the_lab_recipe_file_is_the_defaults():
    from rtransfer.train.config import RECIPES

    assert all(load_recipe(method, recipe_path("lab")) == load_recipe(method) for method in RECIPES)


def test_the_paper_recipe_is_the_papers():
    grpo = load_recipe("grpo", recipe_path("unireason"))
    assert (grpo.lr, grpo.rollouts, grpo.epsilon, grpo.epsilon_high, grpo.beta) == (1e-6, 16, 0.2, 0.28, 0.0)
    # 140 verl steps of 512 prompts, each 4 optimiser updates at mini-batch 128: 560 of TRL's optimiser steps
    assert (grpo.loss_type, grpo.max_completion_length, grpo.max_steps) == ("dapo", 20480, 560)
    sft = load_recipe("sft", recipe_path("unireason"))
    assert (sft.lr, sft.scheduler, sft.warmup, sft.epochs, sft.max_length) == (5e-5, "cosine", 0.1, 1.5, 16384)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "epochs=many"], "epochs = 'many' is not a float"),
        (["--set", "bogus=1"], "unknown SFTRecipe field 'bogus'"),
        (["--set", "lr"], "expected FIELD=VALUE"),
        (["--set", "batch_size=0"], "batch_size must be > 0"),
        (["--config", "nowhere.toml"], "neither a file nor a shipped recipe"),
    ],
)
def test_bad_recipes_are_one_line_errors(cli, tmp_path, args, message):
    code, _, err = cli("train", "sft", "--model", "lab", "--out", tmp_path / "d", *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_bad_data_and_recipe_files_are_one_line_errors(cli, tmp_path):
    bad_recipe = tmp_path / "r.toml"
    bad_recipe.write_text("[grpo]\nrollouts = 4\nbatch_size = 10\n")
    code, _, err = cli("train", "grpo", "--model", "lab", "--config", bad_recipe, "--out", tmp_path / "d")
    assert code == 2 and "batch_size × steps_per_generation = 10 is not a multiple of rollouts 4" in err
    bad_recipe.write_text("[grpo]\nlearning_rate = 1e-6\n")
    code, _, err = cli("train", "grpo", "--model", "lab", "--config", bad_recipe, "--out", tmp_path / "d")
    assert code == 2 and f"{bad_recipe} [grpo]: unknown GRPORecipe field 'learning_rate'" in err
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?"}\n')
    code, _, err = cli("train", "grpo", "--model", "lab", "--data", queries, "--out", tmp_path / "d")
    assert code == 2 and "q.jsonl:2: the query has no answer" in err
    traces = tmp_path / "t.jsonl"
    traces.write_text('{"prompt": "1+1?", "completion": "2"}\n{"prompt": "2+2?"}\n')
    code, _, err = cli("train", "sft", "--model", "lab", "--data", traces, "--out", tmp_path / "d")
    assert code == 2 and "t.jsonl:2: no completion text" in err
    code, _, err = cli("train", "onpolicy", "--model", str(tmp_path), "--out", tmp_path / "d")
    assert code == 2 and "not a lab base: give the training data with --data" in err
    code, _, err = cli("train", "sft", "--model", "lab", "--data", traces, "--thinking", "off", "--out", tmp_path / "d")
    assert code == 2 and "--thinking chooses the lab teacher's traces" in err
    code, _, err = cli("train", "teacher", "--teacher", "lab", "--data", queries, "--out", tmp_path / "t.jsonl")
    assert code == 2 and "q.jsonl:2: the query has no answer" in err


def test_teacher_on_a_model_and_a_local_query_file(cli, tiny_model, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        "".join(json.dumps({"id": f"p{i}", "problem": f"{i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(4))
    )
    out = tmp_path / "traces.jsonl"
    code, stdout, err = cli(
        "train",
        "teacher",
        "--teacher",
        tiny_model,
        "--data",
        queries,
        "--samples",
        "2",
        "--max-new-tokens",
        "8",
        "--out",
        out,
    )
    assert code == 0, err
    records = RunDir(str(out) + ".run").records(BENCHMARK)
    assert sorted((r.doc_id, r.sample) for r in records) == [(f"p{i}", k) for i in range(4) for k in range(2)]
    assert records[0].prompt[-1]["content"] == "Problem: 0 + 1?\nMark your solution with \\boxed\nAnswer:"
    accepted = sum(r.grade == 1.0 and r.extra["finish_reason"] == "stop" for r in records)  # a random model: ~0
    assert f"{accepted} of 8 solutions accepted" in stdout and len(out.read_text().splitlines()) == accepted


def test_kept_step_weights_skip_a_checkpoint_a_kill_cut_short(tmp_path):
    """A resumed run first keeps what a kill left uncopied: the whole checkpoint, weights only; never the folder
    the kill interrupted mid-save (no trainer_state.json yet), which the resumed run saves again at that step."""
    from rtransfer.train.run import keep_step_weights

    for step, whole in ((2, True), (4, False)):
        checkpoint = tmp_path / "checkpoints" / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "config.json").write_text("{}")
        (checkpoint / "optimizer.pt").write_bytes(b"state")
        if whole:
            (checkpoint / "model.safetensors").write_bytes(b"weights")
            (checkpoint / "trainer_state.json").write_text("{}")
    keep_step_weights(tmp_path, 2).on_train_begin(None, None, None)
    assert sorted(p.name for p in (tmp_path / "steps").iterdir()) == ["step-2"]
    assert sorted(p.name for p in (tmp_path / "steps" / "step-2").iterdir()) == ["config.json", "model.safetensors"]
