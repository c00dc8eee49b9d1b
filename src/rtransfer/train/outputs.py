"""The training directory every method writes, and what the methods share around TRL.

DIR/                      a normal HF model directory (the final weights and tokenizer): every command takes
                          it as --model
DIR/train.json            recipe, base model and fingerprint, data hash, seed, library versions, times
DIR/log.jsonl             one line per logged step: loss, lr, grad norm, rewards, lengths, KL, wall time
DIR/checkpoints/          checkpoint-<step>/ folders; a killed run resumes from the newest (each holds
                          data_seen-<rank>.json: what that process had trained on by then)

Under `accelerate launch` every process runs this code; only the main process writes the directory's files
(train.json, log.jsonl, the final model), so 8 GPUs write each log line once. The final model is gathered from
every process first (ZeRO-3 and FSDP shard it; train/gather.py) and written in the base's dtype.

What a run trained on, train.json's `seen` (`Seen`): the arms of a study are compared at equal data only if they
saw comparable amounts, and what a recipe asks for (epochs, steps, prompts per step, rollouts) is not what a run
trained on (traces dropped for their length, on-policy answers not kept, the last partial batch of an epoch). So
each process counts the batches that enter its optimiser steps, as the trainer prepares them (`watch_data`): its
own shard of every global batch, no collective inside the training loop. The counts are kept in every checkpoint,
per process, written before the trainer's own files (a checkpoint with trainer_state.json has them), so a resumed
run counts on from there; at the end one gather sums the processes' counts and unites their query ids.
"""

import json
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtransfer.errors import ModelLoadError, RunMismatchError, first_line
from rtransfer.online import hub_kernels, hub_offline, offline_message
from rtransfer.records import now
from rtransfer.runs import fingerprint, versions, write_json_atomic
from rtransfer.train import ranks
from rtransfer.train.config import THINKING, Recipe, describe, weights_part
from rtransfer.train.gather import base_dtype, dtype_name, full_state_dict, save_pretrained_full

# TRL's log names → ours (TRL prefixes some by mode; `train_` summaries at the end are skipped).
LOG_KEYS = {
    "loss": "loss",
    "learning_rate": "lr",
    "grad_norm": "grad_norm",
    "reward": "reward_mean",
    "reward_std": "reward_std",
    "frac_reward_zero_std": "zero_std_groups",
    "completions/mean_length": "completion_length",
    "mean_token_accuracy": "token_accuracy",
    "kl": "kl",
    "entropy": "entropy",
    "kept_share": "kept_share",  # on-policy SFT: the step's answers that were correct and finished
}


@dataclass
class TrainDir:
    path: Path
    started: float = field(default_factory=time.time)

    def __post_init__(self):
        self.path = Path(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def log_path(self) -> Path:
        return self.path / "log.jsonl"

    def last_checkpoint(self) -> Path | None:
        found = [p for p in self.checkpoints.glob("checkpoint-*") if saved_whole(p)]
        return max(found, key=checkpoint_step, default=None)

    def info(self) -> dict[str, Any] | None:
        path = self.path / "train.json"
        return json.loads(path.read_text()) if path.exists() else None

    def start(self, recipe: Recipe, base: str, data: dict[str, Any]) -> int | None:
        """Record what this run is; returns the step it resumes from (0: a fresh start), or None when this very
        run has already finished (nothing to do). The log keeps only the lines up to the resumed step, so a
        resumed run's log reads as an uninterrupted one's."""
        stored = self.info()
        # How the run executes (save cadence, logging, vLLM placement) may change between attempts; not the rest.
        now_run = (weights_part(describe(recipe)), base, data)
        if stored and (weights_part(stored["recipe"]), stored["base"], stored["data"]) != now_run:
            raise RunMismatchError(
                f"{self.path} holds a training run with another recipe, base or data; choose another --out or delete it"
            )
        if stored and stored.get("finished"):
            return None
        checkpoint = self.last_checkpoint()
        step = checkpoint_step(checkpoint) if checkpoint else 0
        if not ranks.is_main():  # the main process writes what every process has just read
            return step
        if self.log_path.exists():
            kept = [line for line in self.log_path.read_text().splitlines() if json.loads(line)["step"] <= step]
            self.log_path.write_text("".join(line + "\n" for line in kept))
        base_path = Path(base)
        info = {
            "recipe": describe(recipe),
            "base": base,
            "base_fingerprint": fingerprint(base_path) if base_path.exists() else None,
            "data": data,
            "seed": recipe.seed,
            "versions": versions(),
            "started": now(),
            "resumed_from_step": step or None,
            "finished": None,
        }
        write_json_atomic(self.path / "train.json", info)
        return step

    def record(self, **values: Any) -> None:
        """Add `values` to train.json (main process only)."""
        if ranks.is_main():
            write_json_atomic(self.path / "train.json", {**(self.info() or {}), **values})

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not ranks.is_main():  # TRL calls on_log in every process, with the same (reduced) values
            return
        line = {"step": step, **values, "wall_s": round(time.time() - self.started, 3)}
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def finish(self, trainer, extra: dict[str, Any] | None = None) -> Path:
        """Write the trained model, gathered from every process, in the base's dtype, with the tokenizer and the
        finished train.json. Every process calls it (the gather is collective); the main process writes."""

        state = full_state_dict(trainer.model_wrapped, trainer.accelerator)
        if ranks.is_main():
            info = self.info() or {}
            dtype = base_dtype(info.get("base") or trainer.model.name_or_path)
            save_pretrained_full(trainer.accelerator.unwrap_model(trainer.model), state, self.path, dtype)
            trainer.processing_class.save_pretrained(self.path)
            # Wall time of the process that finished the run (since its resume, if it resumed).
            info.update(
                finished=now(),
                seconds=round(time.time() - self.started, 1),
                saved_dtype=dtype_name(dtype),
                **(extra or {}),
            )
            write_json_atomic(self.path / "train.json", info)
        ranks.wait_for_everyone()  # no process leaves before the model is on disk
        return self.path


def checkpoint_step(checkpoint: Path) -> int:
    """The step of a `checkpoint-<step>` folder (TRL's naming, which the on-policy loop follows)."""
    return int(checkpoint.name.split("-")[1])


def final_step(train_dir: Path) -> int | None:
    """The step a finished training run ended at (train.json's step count, else the last logged step)."""
    if (train_dir / "train.json").exists():
        steps = json.loads((train_dir / "train.json").read_text()).get("steps")
        if steps:
            return int(steps)
    log = train_dir / "log.jsonl"
    if log.exists():
        logged = [json.loads(line)["step"] for line in log.read_text().splitlines() if line.strip()]
        return max(logged) if logged else None
    return None


def saved_whole(checkpoint: Path) -> bool:
    """Whether a checkpoint folder was saved to its end: the trainer writes trainer_state.json after the weights,
    the optimiser and the RNG states, so a kill in the middle of a save leaves a folder without it."""
    return (checkpoint / "trainer_state.json").exists()


# A method's count of one micro-batch: (inputs as the dataloader gave them, the batch as the trainer prepared it)
# -> (the query ids in it, the sequences with a loss token, the loss tokens).
Count = Callable[[Any, Any], tuple[Iterable[str], int, int]]
SEEN_FILE = "data_seen-{rank}.json"  # in each checkpoint folder, one per process


@dataclass
class Seen:
    """What one process has trained on so far: the distinct query ids of its batches, the sequences that had at
    least one loss token, and the loss tokens. A sequence trained twice (a second epoch, num_iterations) counts
    twice; a query, once."""

    queries: set[str] = field(default_factory=set)
    sequences: int = 0
    tokens: int = 0
    counted_from: int = 0  # the step counting began at: > 0 only when a resumed checkpoint held no counts

    def add(self, queries: Iterable[str], sequences: int, tokens: int) -> None:
        self.queries.update(queries)
        self.sequences += int(sequences)
        self.tokens += int(tokens)

    def save(self, checkpoint: Path, rank: int) -> None:
        checkpoint.mkdir(parents=True, exist_ok=True)
        state = {"queries": sorted(self.queries), "sequences": self.sequences, "tokens": self.tokens}
        write_json_atomic(checkpoint / SEEN_FILE.format(rank=rank), state | {"counted_from": self.counted_from})

    def restore(self, checkpoint: Path, rank: int, step: int) -> None:
        """The counts kept in `checkpoint` (this process's), or, from a checkpoint written without them, counting
        from `step` on (train.json then says so)."""
        path = checkpoint / SEEN_FILE.format(rank=rank)
        if not path.exists():
            self.counted_from = step
            return
        state = json.loads(path.read_text())
        self.queries = set(state["queries"])
        self.sequences, self.tokens, self.counted_from = state["sequences"], state["tokens"], state["counted_from"]


def watch_data(trainer, count: Count) -> Seen:
    """Count every training micro-batch of `trainer` with `count` as the trainer prepares it (`_prepare_inputs`,
    which Trainer.training_step calls once per micro-step; GRPO's generates there, so its batch holds the sampled
    completions and their loss mask). Evaluation batches (the model in eval mode) are not counted."""
    seen = Seen()
    prepare = trainer._prepare_inputs

    def counted(inputs):
        prepared = prepare(inputs)
        if trainer.model.training:
            seen.add(*count(inputs, prepared))
        return prepared

    trainer._prepare_inputs = counted
    return seen


def keep_seen(seen: Seen, rank: int):
    """A TrainerCallback writing this process's counts into the checkpoint about to be saved: at the end of a step
    whose save is decided (DefaultFlowCallback, called before ours, sets should_save), before the trainer writes
    its files into the same folder."""
    from transformers import TrainerCallback

    class KeepSeen(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save:
                seen.save(Path(args.output_dir) / f"checkpoint-{state.global_step}", rank)

    return KeepSeen()


def data_seen(trainer, seen: Seen) -> dict[str, Any]:
    """train.json's `seen`: every process's counts summed, their query ids united (a collective: every process
    calls it), and the optimiser steps."""
    from accelerate.utils import gather_object

    parts = gather_object([seen])
    out = {
        "queries": len(set().union(*(p.queries for p in parts))),
        "sequences": sum(p.sequences for p in parts),
        "tokens": sum(p.tokens for p in parts),
        "steps": trainer.state.global_step,
    }
    counted_from = max(p.counted_from for p in parts)
    return out | ({"counted_from_step": counted_from} if counted_from else {})


def epoch_seeded_order(trainer) -> None:
    """Make each epoch's prompt order of TRL's RepeatSampler (GRPO, on-policy SFT, distillation) a function of the
    seed and the epoch. TRL draws every epoch from one generator seeded once, which a resumed run creates anew: from
    the second epoch on, a resumed run trained on another order than the uninterrupted one (measured: distillation
    in epochs of two steps, resumed at step 2, differed from step 3). The epoch is read from the trainer's state
    when an epoch's iteration starts (restored with a checkpoint); the first epoch's order is TRL's own."""
    import math

    from trl.trainer.utils import RepeatSampler

    class EpochSeeded(RepeatSampler):
        def __iter__(self):
            self.generator.manual_seed(self.seed + math.floor((trainer.state.epoch or 0) + 1e-9))
            return super().__iter__()

    make = trainer._get_train_sampler

    def sampler(*args, **kwargs):
        made = make(*args, **kwargs)
        if type(made) is RepeatSampler and made.shuffle and made.seed is not None:
            made.__class__ = EpochSeeded
        return made

    trainer._get_train_sampler = sampler


def fit(target: TrainDir, trainer, step: int, count: Count, extra: dict[str, Any] | None = None) -> Path:
    """Train a TRL trainer to its end, from the newest checkpoint when `step` says the run resumes; `count` counts
    what each micro-batch trains on (train.json's `seen`)."""
    epoch_seeded_order(trainer)

    model_dtype = dtype_name(next(trainer.model.parameters()).dtype)
    target.record(execution={**ranks.execution(trainer.accelerator), "model_dtype": model_dtype}, **(extra or {}))
    rank = trainer.accelerator.process_index
    seen = watch_data(trainer, count)
    checkpoint = target.last_checkpoint() if step else None
    if checkpoint:
        seen.restore(checkpoint, rank, step)
    trainer.add_callback(keep_seen(seen, rank))
    with warnings.catch_warnings():  # TRL's own calls of transformers' renamed checkpointing API, once per process
        warnings.filterwarnings(
            "ignore", message=r"`\w*gradient_checkpointing\w*` is deprecated", category=FutureWarning
        )
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return target.finish(trainer, {"steps": trainer.state.global_step, "seen": data_seen(trainer, seen)})


def chat_kwargs(recipe: Recipe) -> dict[str, Any]:
    """The chat template's switches: enable_thinking only when the recipe sets it, as `eval --thinking` does."""
    thinking = THINKING[recipe.thinking]
    return {} if thinking is None else {"enable_thinking": thinking}


def trainer_arguments(recipe: Recipe, out: TrainDir, max_steps: int) -> dict[str, Any]:
    """The transformers TrainingArguments that every TRL method shares."""
    import torch
    from transformers import TrainingArguments

    # transformers 5.25 renamed gradient_checkpointing (the old name warns); earlier 5.x know only the old one
    checkpointing = "activation_checkpointing"
    if checkpointing not in TrainingArguments.__dataclass_fields__:
        checkpointing = "gradient_checkpointing"
    return {
        "output_dir": str(out.checkpoints),
        "learning_rate": recipe.lr,
        "lr_scheduler_type": recipe.scheduler,
        "warmup_steps": recipe.warmup,  # transformers 5: a float < 1 is a ratio (warmup_ratio is gone)
        "weight_decay": recipe.weight_decay,
        "max_grad_norm": recipe.max_grad_norm,
        "per_device_train_batch_size": recipe.batch_size,
        "gradient_accumulation_steps": recipe.grad_accum,
        "max_steps": max_steps,
        "save_steps": recipe.save_every,
        "save_total_limit": recipe.keep_checkpoints,
        "logging_steps": recipe.log_every,
        "seed": recipe.seed,
        "data_seed": recipe.seed,
        "bf16": recipe.bf16 and torch.cuda.is_available(),  # the CPU trains in fp32 (TRL's CPU path)
        "use_cpu": not torch.cuda.is_available(),
        checkpointing: recipe.gradient_checkpointing,
        "report_to": "none",
        "dataloader_num_workers": 0,
        "save_only_model": False,  # optimizer, scheduler and RNG states: a resumed run continues exactly
    }


def log_callback(out: TrainDir):
    """A TrainerCallback that copies TRL's logs into log.jsonl under our names, and logs the last step whatever
    log_every says (a run shorter than log_every would otherwise log no loss at all)."""
    from transformers import TrainerCallback

    class LogToTrainDir(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            values = {ours: logs[theirs] for theirs, ours in LOG_KEYS.items() if logs and theirs in logs}
            if values:
                out.log(state.global_step, values)

    return LogToTrainDir()


def load_model(base: str, recipe: Recipe):
    """Model and tokenizer of `base` for training: fp32 on the CPU, the recipe's model_dtype on a GPU (bf16 then
    runs as mixed precision over fp32 weights, or, under ZeRO-3/FSDP, over their own fp32 master copy). Call it
    after the trainer's config exists: TrainingArguments arms DeepSpeed's zero.Init, which from_pretrained then
    uses to load each rank's shard only."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, recipe.model_dtype) if torch.cuda.is_available() else torch.float32
    # A hub id without a connection: the local cache only, at once (the hub libraries retry for 49 s).
    offline = None if Path(base).expanduser().exists() else hub_offline()
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=bool(offline))
        model = AutoModelForCausalLM.from_pretrained(
            base,
            dtype=dtype,
            attn_implementation=recipe.attn_implementation,
            local_files_only=bool(offline),
            **hub_kernels(),
        )
    except (OSError, ValueError, ImportError) as err:
        if offline:
            raise ModelLoadError(offline_message(base, offline)) from None
        raise ModelLoadError(f"cannot load model {base!r}: {first_line(err)}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
