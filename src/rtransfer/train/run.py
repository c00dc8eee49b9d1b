"""The training stage as one library call: `train(TrainJob(...))`, which `rtransfer train` and the study share.

Given a lab base and no data, each method runs the lab recipe on the lab's math train split; off-policy SFT then
first runs the lab teacher (think or no-think) into DIR/traces.jsonl.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from rtransfer.errors import DataError
from rtransfer.lab.build import LAB_MODELS
from rtransfer.lab.build import resolve_model as resolve_base  # "lab", "lab:quick": the lab's base (study imports it)
from rtransfer.train import ranks
from rtransfer.train.config import Recipe, SamplingRecipe, describe, load_recipe, recipe_path
from rtransfer.train.outputs import checkpoint_step


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


def job_recipe(job: TrainJob) -> Recipe:
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
    return recipe


def is_lab(model: str) -> bool:
    return model in LAB_MODELS or (Path(model) / "lab_build.json").exists()


def check(job: TrainJob) -> dict:
    """What a job would run, validated without loading a model or touching the hub: the recipe, the base, the data,
    and whether vLLM colocate can hold the model. Local data files are read (so a malformed one fails here); hub
    ids are only named."""
    from rtransfer.train.data import split_source

    recipe = _validated(job)
    data: dict = {"source": job.data or "lab"}
    # A file not there yet (traces a teacher stage will write) is only named, like a hub id.
    if job.data is not None and Path(split_source(job.data)[0]).exists():
        from rtransfer.train.data import load_queries, read_traces

        rows = read_traces(job.data) if job.method == "sft" else load_queries(job.data, recipe.seed)
        data["rows"] = len(rows)
    plan = {"method": job.method, "base": job.model, "lab": is_lab(job.model), "data": data, "recipe": describe(recipe)}
    note = _colocate_note(recipe, job.model)
    if note:
        plan["notes"] = [note]
    return plan


def _colocate_note(recipe: Recipe, base: str) -> str | None:
    """Raises when a colocated vLLM cannot hold `base` with the recipe's settings; else why it could not be
    checked, or None (train/sizing.py)."""
    if not isinstance(recipe, SamplingRecipe):
        return None
    from rtransfer.train.sizing import check_colocate

    return check_colocate(recipe, base)


def train(job: TrainJob, callbacks=()) -> Path:
    """Run one training job to its end (or resume it); returns the training directory. `callbacks` are
    transformers TrainerCallbacks."""
    recipe = _validated(job)  # before any model loads
    base = resolve_base(job.model)
    _colocate_note(recipe, base)  # on a GPU machine: against its real memory, before minutes of loading
    out = Path(job.out)
    if job.eval_every:

        def evaluate_checkpoint(checkpoint: Path, run: Path) -> None:
            name = checkpoint_name(out.name, checkpoint_step(checkpoint))
            evaluate_model(checkpoint, run, job.eval_suite, name=name, method=job.method)

        callbacks = [*callbacks, checkpoint_evaluator(out, job.eval_every, evaluate_checkpoint)]
    if job.method == "sft":
        from rtransfer.train.sft import train_sft

        result = train_sft(base, sft_traces(job, recipe, out), recipe, out, callbacks)
    else:
        from rtransfer.train.data import load_queries

        queries = load_queries(job.data, recipe.seed, recipe.max_queries)
        if job.method == "onpolicy":
            from rtransfer.train.onpolicy import train_onpolicy

            result = train_onpolicy(base, queries, recipe, out, callbacks)
        else:
            from rtransfer.train.grpo import train_grpo

            result = train_grpo(base, queries, recipe, out, callbacks)
    if job.eval_every:
        evaluate_model(result, out / "evals" / "final", job.eval_suite, name=out.name, method=job.method)
    return result


def sft_traces(job: TrainJob, recipe, out: Path):
    from rtransfer.train.data import read_traces

    if job.data is not None:
        return read_traces(job.data, recipe.seed, recipe.max_queries)
    from rtransfer.train.data import load_queries
    from rtransfer.train.teacher import LabTeacher, run_teacher

    queries = load_queries(None, recipe.seed, recipe.max_queries)
    think = (job.thinking or "on") == "on"
    traces = out / "traces.jsonl"
    if ranks.is_main():  # one teacher run per training directory; the other processes read its traces
        traces = run_teacher(
            LabTeacher(queries, think), queries, traces, samples=recipe.teacher_samples, seed=recipe.seed
        ).traces
    ranks.wait_for_everyone()
    return read_traces(traces)


def checkpoint_name(model: str, step: int) -> str:
    """The model name of a checkpoint's evaluation: `<training dir or arm>@step-<N>`, so that the checkpoints of
    several runs can be compared in one `rtransfer ti` call (the final model is named `<training dir or arm>`)."""
    return f"{model}@step-{step}"


def evaluate_model(model_dir: Path, run_dir: Path, suite: str, name: str, method: str | None = None) -> dict:
    """A trained model (or checkpoint) on a suite or comma-separated benchmarks, in process, named `name` and
    made by `method` in the run's manifest."""
    from rtransfer.engines.factory import EngineSpec
    from rtransfer.evaluate import evaluate_spec

    return evaluate_spec(EngineSpec(str(model_dir), batch_size=64), run_dir, suite, name=name, method=method)


def checkpoint_evaluator(out: Path, every: int, evaluate_checkpoint):
    """A callback evaluating each checkpoint whose step is a multiple of `every`, into DIR/evals/step-<N>: the TI
    can then be plotted against training steps.
    `evaluate_checkpoint(checkpoint, run_dir)` does the evaluation."""
    from transformers import TrainerCallback

    def evaluate_step(step: int) -> None:
        checkpoint = out / "checkpoints" / f"checkpoint-{step}"
        if step % every == 0 and checkpoint.exists():
            evaluate_checkpoint(checkpoint, out / "evals" / f"step-{step}")

    class EvaluateCheckpoints(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            evaluate_step(state.global_step)

    return EvaluateCheckpoints()


def read_log(out: Path) -> list[dict]:
    path = Path(out) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
