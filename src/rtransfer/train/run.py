"""The training stage as one library call: `train(TrainJob(...))`, which `rtransfer train` and the study share.

Given a lab base and no data, each method runs the lab recipe on the lab's math train split; off-policy SFT then
first runs the lab teacher (think or no-think) into DIR/traces.jsonl.
"""

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rtransfer.engines.factory import EngineSpec
from rtransfer.errors import DataError
from rtransfer.evaluate import evaluate_spec
from rtransfer.lab.build import LAB_MODELS
from rtransfer.lab.build import resolve_model as resolve_base  # "lab", "lab:quick": the lab's base (study imports it)
from rtransfer.train import ranks
from rtransfer.train.config import THINKING, Recipe, RolloutRecipe, describe, load_recipe, recipe_path
from rtransfer.train.data import load_queries, read_traces, split_source
from rtransfer.train.methods import METHODS
from rtransfer.train.outputs import checkpoint_step, saved_whole
from rtransfer.train.sizing import check_colocate
from rtransfer.train.teacher import LabTeacher, run_teacher


@dataclass
class TrainJob:
    method: str  # sft, onpolicy or grpo
    model: str  # a model dir or hub id; "lab" (or "lab:quick") for the lab's base
    out: Path
    config: str | None = None  # a recipe file or a shipped recipe name
    data: str | None = None  # queries (onpolicy, grpo) or traces (sft); None on a lab base: the lab's split
    seed: int | None = None  # overrides the recipe's
    overrides: list[str] = field(default_factory=list)  # FIELD=VALUE
    thinking: str | None = None  # sft on the lab: the teacher's think ("on", the default) or no-think ("off") traces
    eval_every: int = 0  # evaluate every N steps' checkpoint into DIR/evals/ (0: never)
    eval_suite: str = "lab"
    recipe: Recipe | None = None  # the resolved recipe (a study's training spec): config, seed and overrides unused


def job_recipe(job: TrainJob) -> Recipe:
    if job.recipe is not None:
        return job.recipe
    overrides = [*job.overrides, *([f"seed={job.seed}"] if job.seed is not None else [])]
    return load_recipe(job.method, recipe_path(job.config) if job.config else None, overrides)


def _validated(job: TrainJob) -> Recipe:
    """The job's recipe, and the checks that need no model and no data."""
    recipe = job_recipe(job)
    if job.eval_every and job.eval_every % recipe.save_every:
        raise DataError(f"--eval-every {job.eval_every} is not a multiple of save_every {recipe.save_every}")
    if job.eval_every and ranks.world_size() > 1:
        # One process evaluating while the others wait in a collective would hit the process group's timeout on
        # any real suite, and every process evaluating writes one run directory N times.
        raise DataError(
            f"--eval-every evaluates inside the training process, which {ranks.world_size()} processes cannot share: "
            "train without it, keep the checkpoints (keep_checkpoints), and evaluate them with `rtransfer eval`"
        )
    if job.data is None and not is_lab(job.model):
        raise DataError(f"{job.model} is not a lab base: give the training data with --data")
    if job.thinking is not None and job.data is not None:
        raise DataError("--thinking chooses the lab teacher's traces; with --data the traces are given")
    if getattr(recipe, "teacher", None) == "lab" and not is_lab(job.model):
        raise DataError(f"teacher = lab distils into a lab base only, and {job.model} is none: set teacher=MODEL")
    return recipe


def is_lab(model: str) -> bool:
    return model in LAB_MODELS or (Path(model) / "lab_build.json").exists()


def check(job: TrainJob) -> dict:
    """What a job would run, validated without loading a model or touching the hub: the recipe, the base, the data,
    and whether vLLM colocate can hold the model. Local data files are read (so a malformed one fails here); hub
    ids are only named."""
    recipe = _validated(job)
    data: dict = {"source": job.data or "lab"}
    # A file not there yet (traces a teacher stage will write) is only named, like a hub id.
    if job.data is not None and Path(split_source(job.data)[0]).exists():
        rows = read_traces(job.data) if METHODS[job.method].data == "traces" else load_queries(job.data, recipe.seed)
        data["rows"] = len(rows)
    plan = {"method": job.method, "base": job.model, "lab": is_lab(job.model), "data": data, "recipe": describe(recipe)}
    note = _colocate_note(recipe, job.model)
    if note:
        plan["notes"] = [note]
    return plan


def _colocate_note(recipe: Recipe, base: str) -> str | None:
    """Raises when a colocated vLLM cannot hold `base` with the recipe's settings; else why it could not be
    checked, or None (train/sizing.py)."""
    if not isinstance(recipe, RolloutRecipe):
        return None

    return check_colocate(recipe, base)


def train(job: TrainJob, callbacks=()) -> Path:
    """Run one training job to its end (or resume it); returns the training directory. `callbacks` are
    transformers TrainerCallbacks."""
    recipe = _validated(job)  # before any model loads
    if ranks.is_main():  # a lab base is built on first use: once, not by every process of a launch at once
        resolve_base(job.model)
    ranks.wait_for_everyone()
    base = resolve_base(job.model)
    _colocate_note(recipe, base)  # on a GPU machine: against its real memory, before minutes of loading
    out = Path(job.out)
    thinking = THINKING[recipe.thinking]  # checkpoints answer as the recipe renders prompts in training
    if job.eval_every:
        # here: importing integrations.trl loads transformers, which planning a study (TrainJob) does not need
        from rtransfer.integrations.trl import TransferCallback

        transfer = TransferCallback(
            base=base,
            suite=job.eval_suite,
            every=job.eval_every,
            at_end=False,  # the final model is evaluated below, under the training directory's own name
            out=out / "evals",
            name=out.name,
            method=job.method,
            thinking=thinking,
        )
        callbacks = [*callbacks, transfer]
    method = METHODS[job.method]
    if method.data == "traces":
        data = sft_traces(job, recipe, out)
    else:
        data = load_queries(job.data, recipe.seed, recipe.max_queries)
    with fixed_threads(recipe.threads):
        result = method.train_function()(base, data, recipe, out, callbacks)
    if job.eval_every:
        evaluate_model(
            result, out / "evals" / "final", job.eval_suite, name=out.name, method=job.method, thinking=thinking
        )
    ranks.finish()  # the run ends here in every process of a launch, and so does its process group
    return result


@contextlib.contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """On a CPU, torch on exactly `threads` threads for the block (the recipe's: see Recipe.threads), whatever
    the process had; given back after it. A GPU's sums do not depend on it: left alone there."""
    import torch

    if torch.cuda.is_available():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sft_traces(job: TrainJob, recipe, out: Path):
    if job.data is not None:
        return read_traces(job.data, recipe.seed, recipe.max_queries)

    queries = load_queries(None, recipe.seed, recipe.max_queries)
    think = (job.thinking or "on") == "on"
    traces = out / "traces.jsonl"
    if ranks.is_main():  # one teacher run per training directory; the other processes read its traces
        traces = run_teacher(
            LabTeacher(queries, think), queries, traces, samples=recipe.teacher_samples, seed=recipe.seed
        ).traces
    ranks.wait_for_everyone()
    return read_traces(traces)


def evaluate_model(
    model_dir: Path, run_dir: Path, suite: str, name: str, method: str | None = None, thinking: bool | None = None
) -> dict:
    """A trained model (or checkpoint) on a suite or comma-separated benchmarks, in process, named `name` and
    made by `method` in the run's manifest, its prompts rendered with the chat template's `thinking`."""
    spec = EngineSpec(str(model_dir), batch_size=64, thinking=thinking)
    return evaluate_spec(spec, run_dir, suite, name=name, method=method)


STEP_STATE = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin")  # resuming, not weights


def keep_step_weights(out: Path, every: int):
    """A callback copying the weights of every checkpoint whose step is a multiple of `every` into
    DIR/steps/step-<N> (a model directory without the optimizer state), before the trainer rotates checkpoints
    away: the study evaluates them after training. The main process copies; a resumed run first copies what a kill
    left uncopied (never a checkpoint the kill cut short: the resumed run saves that step again)."""
    import shutil

    from transformers import TrainerCallback

    def keep(checkpoint: Path) -> None:
        target = out / "steps" / f"step-{checkpoint_step(checkpoint)}"
        if not ranks.is_main() or target.exists() or checkpoint_step(checkpoint) % every or not saved_whole(checkpoint):
            return
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(checkpoint, partial, ignore=lambda _, names: [n for n in names if _training_state(n)])
        partial.rename(target)

    class KeepStepWeights(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            for checkpoint in sorted((out / "checkpoints").glob("checkpoint-*"), key=checkpoint_step):
                keep(checkpoint)

        def on_save(self, args, state, control, **kwargs):
            keep(out / "checkpoints" / f"checkpoint-{state.global_step}")

    return KeepStepWeights()


def _training_state(name: str) -> bool:
    return name in STEP_STATE or name.startswith(("rng_state", "global_step", "data_seen"))


def kept_steps(out: Path, every: int) -> list[tuple[int, Path]]:
    """(step, weights) of the kept checkpoints whose step is a multiple of `every`, in order."""
    found = [(int(p.name.removeprefix("step-")), p) for p in (out / "steps").glob("step-*") if p.name[5:].isdigit()]
    return sorted((step, p) for step, p in found if step % every == 0)


def read_log(out: Path) -> list[dict]:
    path = Path(out) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
