"""Off-policy SFT on teacher traces with TRL's SFTTrainer, the loss on the completion tokens only.

The prompt is rendered by the model's own chat template exactly as the evaluation engine renders it (generation
prompt included, `enable_thinking` only when the recipe sets it), and handed to TRL as text: TRL then masks it
and trains on the completion plus the end-of-turn token. Rendering it ourselves rather than giving TRL
conversational rows keeps one renderer for training and evaluation; a template that renders a finished assistant
turn differently from a generation prompt (the lab's, with thinking off) would otherwise train on a context the
model never sees at inference.

A trace longer than the recipe's max_length is dropped before training and counted in train.json
(`dropped_too_long`): cut to fit, it would lose its final answer and end-of-turn token and teach an unfinished
answer. With `padding_free` (flash attention only), TRL flattens each batch into one sequence with per-trace
position ids, so no compute goes to padding.

What a run saw (train.json's `seen`, train/outputs.py) is counted from the batches themselves: the loss tokens are
the batch's labels other than -100 (past the first position, as the shifted loss counts them), and each sequence
is recognised by its token ids (a digest of the tokenized row), since TRL's batches carry no row index.
"""

import hashlib
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

from rtransfer.errors import DataError
from rtransfer.train.config import SFTRecipe
from rtransfer.train.data import Trace, data_record
from rtransfer.train.outputs import Count, TrainDir, chat_kwargs, fit, load_model, log_callback, trainer_arguments


def render_prompt(tokenizer, prompt: str, recipe) -> str:
    messages = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **chat_kwargs(recipe))


def sft_rows(tokenizer, traces: Sequence[Trace], recipe: SFTRecipe) -> tuple[list[dict[str, str]], int]:
    """The prompt/completion rows TRL trains on, and how many traces were dropped for exceeding max_length (prompt,
    completion and end-of-turn token, tokenized as TRL tokenizes them)."""
    rows, dropped = [], 0
    for trace in traces:
        prompt = render_prompt(tokenizer, trace.prompt, recipe)
        ids = tokenizer(prompt + trace.completion, add_special_tokens=False)["input_ids"]
        if len(ids) + 1 > recipe.max_length:  # + the end-of-turn token TRL appends
            dropped += 1
            continue
        # query_id stays out of the batches (the trainer keeps only the model's columns): for `sft_count`.
        rows.append({"prompt": prompt, "completion": trace.completion, "query_id": trace.query_id})
    return rows, dropped


def sft_trainer(base: str, traces: Sequence[Trace], recipe: SFTRecipe, target: TrainDir, callbacks: Sequence = ()):
    """TRL's SFTTrainer over `traces`, writing checkpoints and logs into `target`; also the number of traces dropped
    for their length."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(  # before the model loads (zero.Init)
        **trainer_arguments(recipe, target, recipe.max_steps),
        num_train_epochs=recipe.epochs,
        # Long traces are dropped above; padding-free batches need max_length unset (TRL would not enforce it).
        max_length=None if recipe.padding_free else recipe.max_length,
        padding_free=recipe.padding_free,
        completion_only_loss=True,
        packing=False,
    )
    model, tokenizer = load_model(base, recipe)
    rows, dropped = sft_rows(tokenizer, traces, recipe)
    if not rows:
        raise DataError(f"every one of the {len(traces)} traces is longer than max_length {recipe.max_length}")
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[log_callback(target), *callbacks],
    )
    return trainer, dropped


def train_sft(base: str, traces: Sequence[Trace], recipe: SFTRecipe, out: Path, callbacks: Sequence = ()) -> Path:
    """Train `base` on `traces` into the training directory `out`; resumes from its newest checkpoint."""
    target = TrainDir(out)
    step = target.start(recipe, base, data_record(traces, "traces"))
    if step is None:  # this run has finished before
        return target.path
    trainer, dropped = sft_trainer(base, traces, recipe, target, callbacks)
    extra = {"dropped_too_long": dropped, "trained_traces": len(traces) - dropped}
    return fit(target, trainer, step, sft_count(trainer.train_dataset), extra)


def sft_count(dataset) -> Count:
    """What one SFT micro-batch trains on (outputs.Count): the query ids of its traces, found by their token ids in
    the trainer's tokenized `dataset` (its rows keep sft_rows's query_id), the traces, and their loss tokens."""
    query_of = {}
    for batch in dataset.select_columns(["input_ids", "query_id"]).iter(batch_size=1024):
        for ids, query in zip(batch["input_ids"], batch["query_id"], strict=True):
            query_of[_digest(ids)] = query

    def count(_, batch):
        sequences = batch_sequences(batch)
        queries = [query_of.get(key, key) for key in map(_digest, sequences)]  # unknown: the sequence itself
        return queries, len(sequences), int((batch["labels"][..., 1:] != -100).sum())

    return count


def batch_sequences(batch) -> list[list[int]]:
    """The token ids of each trace in a collated batch: a padded row's attended tokens, or, in a padding-free batch
    (one flattened row), the runs that start where position_ids go back to 0."""
    if "attention_mask" in batch:
        rows = zip(batch["input_ids"], batch["attention_mask"], strict=True)
        return [ids[mask.bool()].tolist() for ids, mask in rows]
    ids, positions = batch["input_ids"].reshape(-1).tolist(), batch["position_ids"].reshape(-1).tolist()
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(ids)]
    return [ids[a:b] for a, b in pairwise(starts)]


def _digest(ids) -> str:
    return hashlib.blake2b(",".join(map(str, ids)).encode(), digest_size=16).hexdigest()
