"""Off-policy SFT on teacher traces with TRL's SFTTrainer, the loss on the completion tokens only.

The prompt is rendered by the model's own chat template exactly as the evaluation engine renders it (generation
prompt included, `enable_thinking` only when the recipe sets it), and handed to TRL as text: TRL then masks it
and trains on the completion plus the end-of-turn token. Rendering it ourselves rather than giving TRL
conversational rows keeps one renderer for training and evaluation; a template that renders a finished assistant
turn differently from a generation prompt (the lab's, with thinking off) would otherwise train on a context the
model never sees at inference.
"""

from collections.abc import Sequence
from pathlib import Path

from rtransfer.train.config import SFTRecipe
from rtransfer.train.data import Trace, data_hash
from rtransfer.train.outputs import TrainDir, chat_kwargs, fit, load_model, log_callback, trainer_arguments


def render_prompt(tokenizer, prompt: str, recipe) -> str:
    messages = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **chat_kwargs(recipe))


def sft_dataset(tokenizer, traces: Sequence[Trace], recipe: SFTRecipe):
    from datasets import Dataset

    rows = [{"prompt": render_prompt(tokenizer, t.prompt, recipe), "completion": t.completion} for t in traces]
    return Dataset.from_list(rows)


def sft_trainer(base: str, traces: Sequence[Trace], recipe: SFTRecipe, target: TrainDir, callbacks: Sequence = ()):
    """TRL's SFTTrainer over `traces`, writing checkpoints and logs into `target`."""
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = load_model(base)
    args = SFTConfig(
        **trainer_arguments(recipe, target, recipe.max_steps),
        num_train_epochs=recipe.epochs,
        max_length=recipe.max_length,
        completion_only_loss=True,
        packing=False,
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=sft_dataset(tokenizer, traces, recipe),
        processing_class=tokenizer,
        callbacks=[log_callback(target), *callbacks],
    )


def train_sft(base: str, traces: Sequence[Trace], recipe: SFTRecipe, out: Path, callbacks: Sequence = ()) -> Path:
    """Train `base` on `traces` into the training directory `out`; resumes from its newest checkpoint."""
    target = TrainDir(out)
    step = target.start(recipe, base, {"traces": len(traces), "hash": data_hash(t.__dict__ for t in traces)})
    if step is None:  # this run has finished before
        return target.path
    return fit(target, sft_trainer(base, traces, recipe, target, callbacks), step)
