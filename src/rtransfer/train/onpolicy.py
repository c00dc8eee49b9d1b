"""On-policy SFT (the ICML version's key ablation): rounds of (the current weights sample K answers per
training query → the math grader keeps the correct, finished ones, each with weight 1 → SFT-loss steps on them).

A plain PyTorch loop on transformers pieces (its scheduler, the model's own masked loss), not TRL: TRL has no
such trainer (IterativeSFTTrainer was removed), and a new SFTTrainer per round would restart the optimizer state
and the learning-rate schedule every round. Here one AdamW and one schedule run over all rounds. Each round's
samples are written to `rounds/round-<r>.jsonl` before any step trains on them, so a run killed mid-round resumes
on the samples of the weights that drew them, and ends bit-identical to an uninterrupted run (CPU, fixed seed).
Sampling goes through the evaluation engine (HFEngine over the weights in memory), with per-sample seeds.
"""

import json
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rtransfer.engines.base import SamplingParams
from rtransfer.evaluate import sample_seed
from rtransfer.grading.math import grade_math
from rtransfer.train.config import THINKING, OnPolicyRecipe
from rtransfer.train.data import Query, data_hash, kept
from rtransfer.train.outputs import TrainDir, checkpoint_step, load_model


def total_steps(recipe: OnPolicyRecipe) -> int:
    return recipe.max_steps if recipe.max_steps > 0 else recipe.rounds * recipe.steps_per_round


def sample_round(engine, queries: Sequence[Query], recipe: OnPolicyRecipe, round_: int) -> list[dict[str, Any]]:
    """The round's samples from the engine's current weights: K answers for each of the round's queries, graded."""
    picked = random.Random(f"{recipe.seed}:round:{round_}").sample(
        range(len(queries)), min(recipe.queries_per_round, len(queries))
    )
    jobs = [(queries[i], k) for i in picked for k in range(recipe.samples_per_query)]
    params = SamplingParams(temperature=recipe.temperature, top_p=recipe.top_p, max_new_tokens=recipe.max_new_tokens)
    seeds = [sample_seed(recipe.seed, f"onpolicy:{round_}", q.id, k) for q, k in jobs]
    generations = engine.generate([[{"role": "user", "content": q.prompt}] for q, _ in jobs], params, seeds)
    samples = []
    for (query, k), gen in zip(jobs, generations, strict=True):
        grade = grade_math(gen.text, query.answer).score
        samples.append(
            {
                "query_id": query.id,
                "sample": k,
                "prompt": query.prompt,
                "response": gen.text,
                "grade": grade,
                "finish_reason": gen.finish_reason,
                "tokens": gen.tokens,
                "kept": kept(grade, gen.finish_reason),
            }
        )
    return samples


def _round_file(target: TrainDir, round_: int) -> Path:
    return target.path / "rounds" / f"round-{round_}.jsonl"


def _samples_of_round(target: TrainDir, engine, queries, recipe, round_: int) -> list[dict[str, Any]]:
    path = _round_file(target, round_)
    if path.exists():  # written whole (tmp + rename) by an earlier, killed run: these weights drew them
        return [json.loads(line) for line in path.read_text().splitlines()]
    engine.model.eval()
    samples = sample_round(engine, queries, recipe, round_)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    tmp.replace(path)
    return samples


def _examples(engine, samples: list[dict[str, Any]], max_length: int) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) of each kept sample: the prompt as the engine renders it, the answer, end of turn.
    The answer is re-tokenized from its text; for byte-level BPE that is the sampled tokens in canonical form."""
    out = []
    eos = engine.tokenizer.eos_token_id
    for s in samples:
        if s["kept"]:
            prompt = engine.encode(engine.render([{"role": "user", "content": s["prompt"]}]))
            answer = engine.tokenizer(s["response"], add_special_tokens=False)["input_ids"] + [eos]
            out.append(((prompt + answer)[:max_length], len(prompt)))
    return out


def _batch(examples: list[tuple[list[int], int]], pad: int):
    import torch

    width = max(len(ids) for ids, _ in examples)
    ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in examples])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in examples])
    labels = ids.clone()
    for row, (x, n_prompt) in enumerate(examples):
        labels[row, :n_prompt] = -100  # loss on the answer only
        labels[row, len(x) :] = -100
    return ids, mask, labels


def _save(target: TrainDir, model, tokenizer, optimizer, scheduler, step: int, keep: int) -> None:
    """A checkpoint that is also a model directory (weights and tokenizer), written whole or not at all."""
    import torch

    folder = target.checkpoints / f"checkpoint-{step}"
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    done = sorted(target.checkpoints.glob("checkpoint-*[0-9]"), key=checkpoint_step)
    for old in done[:-keep]:
        shutil.rmtree(old)


def _restore(checkpoint: Path, optimizer, scheduler) -> None:
    import torch

    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))


def train_onpolicy(
    base: str,
    queries: Sequence[Query],
    recipe: OnPolicyRecipe,
    out: Path,
    callbacks: Sequence[Callable[[int], None]] = (),
) -> Path:
    """Train `base` on its own correct answers into the training directory `out`; resumes from a checkpoint.
    `callbacks` are called with the step number after each optimizer step."""
    import torch
    from transformers import get_scheduler

    from rtransfer.engines.hf import HFEngine

    target = TrainDir(out)
    step = target.start(recipe, base, {"queries": len(queries), "hash": data_hash(q.__dict__ for q in queries)})
    if step is None:  # this run has finished before
        return target.path
    checkpoint = target.last_checkpoint() if step else None
    model, tokenizer = load_model(str(checkpoint or base))  # a checkpoint is a model directory
    device = "cuda" if torch.cuda.is_available() else "cpu"  # one process: no sharding (docs/training.md)
    model.to(device)
    if recipe.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    torch.manual_seed(recipe.seed)
    total = total_steps(recipe)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    warmup = round(recipe.warmup * total) if recipe.warmup < 1 else int(recipe.warmup)
    scheduler = get_scheduler(recipe.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    if checkpoint:
        _restore(checkpoint, optimizer, scheduler)
    engine = HFEngine.from_loaded(
        model, tokenizer, model_id=base, batch_size=recipe.generation_batch_size, thinking=THINKING[recipe.thinking]
    )
    per_round = recipe.steps_per_round
    while step < total:
        round_ = step // per_round
        samples = _samples_of_round(target, engine, queries, recipe, round_)
        examples = _examples(engine, samples, recipe.max_length)
        order = list(range(len(examples)))
        random.Random(f"{recipe.seed}:order:{round_}").shuffle(order)
        kept_share = len(examples) / len(samples)
        lengths = [s["tokens"] for s in samples if s["kept"]]
        model.train()
        for current in range(step, min(total, (round_ + 1) * per_round)):
            values: dict[str, Any] = {"round": round_, "kept_share": kept_share}
            if examples:
                within = (current - round_ * per_round) * recipe.batch_size * recipe.grad_accum
                loss_sum = 0.0
                for micro in range(recipe.grad_accum):
                    start = within + micro * recipe.batch_size
                    picked = [examples[order[(start + j) % len(order)]] for j in range(recipe.batch_size)]
                    ids, mask, labels = (t.to(device) for t in _batch(picked, tokenizer.pad_token_id))
                    with torch.autocast(device, dtype=torch.bfloat16, enabled=recipe.bf16 and device == "cuda"):
                        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss / recipe.grad_accum
                    loss.backward()
                    loss_sum += loss.item()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
                values.update(loss=loss_sum, grad_norm=float(grad_norm), completion_length=sum(lengths) / len(lengths))
            values["lr"] = scheduler.get_last_lr()[0]
            scheduler.step()
            done = current + 1
            if done % recipe.log_every == 0 or done == total:
                target.log(done, values)
            if done % recipe.save_every == 0 and done < total:
                _save(target, model, tokenizer, optimizer, scheduler, done, recipe.keep_checkpoints)
            for callback in callbacks:
                callback(done)
        step = done
    model.eval()
    return target.finish(model, tokenizer, {"steps": step})
