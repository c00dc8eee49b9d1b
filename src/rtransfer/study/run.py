"""`run_study`: one base → arms trained on math → every model evaluated → scores and TI → probes → the report.

It composes the library's stages (train.run.train, evaluate.evaluate_spec, probes.pipeline, transfer, report)
and never the commands. Every stage writes into the study directory and is content-keyed (study/stages.py).

DIR/manifest.json        config, versions, seeds, the models, every stage's key and time
DIR/models/<model>/      training directories (absent for a survey); checkpoint evals in evals/step-<N>/
DIR/runs/<model>/        evaluation run directories
DIR/probes/<model>/      latent.json, tokens.json: base vs the model
DIR/scores.json          one row per model and benchmark, with the score's CI
DIR/ti.json              as `rtransfer ti --json`, σ pooled over the study's models
DIR/report.html, report.md, tables/, figures/
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtransfer.errors import RtransferError
from rtransfer.lab.build import LAB_MODELS, lab_config, resolve_model
from rtransfer.study.config import StudyConfig
from rtransfer.study.stages import Ledger, Stage, key_of

KINDS = ("train", "eval", "probes", "ti", "report")


class StudyError(RtransferError):
    pass


@dataclass
class Model:
    """One model of the study: the base, a trained arm (per seed), or a survey's checkpoint."""

    name: str
    arm: str  # "base", the arm's name, or (survey) the model's own name
    method: str  # "" for the base; sft, onpolicy, grpo; survey: base, SFT, RL, reference
    seed: int | None = None
    thinking: str | None = None  # an sft arm: the teacher's traces (on: think, off: no-think); survey: as below
    # The chat template's enable_thinking when the model is evaluated (on, off; None: the template's default). An
    # arm is evaluated as its recipe renders prompts in training (the recipe's `thinking`), never by its
    # teacher's mode: the base and every arm answer the same prompts.
    chat_thinking: str | None = None
    source: str = ""  # what is evaluated: a directory or hub id (a trained arm: its training directory)
    base: str | None = None  # the name of the model it is compared with
    job: Any = None  # the TrainJob of a trained arm
    launch: tuple[str, ...] = ()

    @property
    def trained(self) -> bool:
        return self.job is not None


def identity(model: str) -> dict[str, str]:
    """What names a model's content without loading it: a lab base's build key, a local directory's
    fingerprint, or the hub id."""
    if model in LAB_MODELS:
        return {"lab": lab_config(quick=model == "lab:quick").key()}
    if Path(model).exists():
        from rtransfer.runs import fingerprint

        return {"path": str(Path(model).resolve()), "fingerprint": fingerprint(model)}
    return {"hub": model}


def plan_models(config: StudyConfig, out: Path, base: str) -> list[Model]:
    from rtransfer.train.run import TrainJob, job_recipe

    if config.survey:
        return [
            Model(
                m.name,
                m.name,
                m.method,
                thinking=m.thinking,
                chat_thinking=m.thinking,
                source=m.model,
                base=m.base or None,
            )
            for m in config.models
        ]
    models = [Model("base", "base", "", source=base)]
    for arm in config.arms:
        for seed in range(config.seeds):
            name = arm.name if config.seeds == 1 else f"{arm.name}-s{seed}"
            job = TrainJob(
                method=arm.method,
                model=base,
                out=out / "models" / name,
                config=arm.recipe or config.recipe,
                data=arm.data,
                seed=None if config.seeds == 1 else seed,
                overrides=list(arm.set),
                thinking=arm.thinking,
            )
            recipe = job_recipe(job)  # validated here, before anything runs
            every = config.eval.eval_every
            if every and every % recipe.save_every:
                raise StudyError(
                    f"arm {arm.name}: eval_every {every} is not a multiple of its save_every {recipe.save_every}"
                )
            model = Model(
                name,
                arm.name,
                arm.method,
                seed=recipe.seed,
                thinking=arm.thinking,
                chat_thinking=None if recipe.thinking == "default" else recipe.thinking,
                source=str(job.out),
                base="base",
                job=job,
                launch=tuple(arm.launch),
            )
            models.append(model)
    return models


def run_study(config: StudyConfig, out: Path, only: tuple[str, ...] = (), dry_run: bool = False) -> dict[str, Any]:
    """Run (or resume) the study into `out`; with dry_run, validate and say what would run, running nothing.
    `only` restricts the run to those stage kinds; what they read must already be done."""
    from rtransfer.runs import versions

    unknown = set(only) - set(KINDS)
    if unknown:
        raise StudyError(f"--only {', '.join(sorted(unknown))}: choose from {', '.join(KINDS)}")
    out = Path(out)
    base, models, base_identity, stages = _plan(config, out, dry_run)
    manifest_path = out / "manifest.json"
    if dry_run:
        ledger = Ledger(manifest_path, _read(manifest_path))
        return dry_run_plan(stages, ledger, models)
    header = {
        "study": config.name,
        "config": config.as_dict(),
        "seeds": sorted({m.seed for m in models if m.seed is not None}),
        "versions": versions(),
        "base": {"model": base, **base_identity},
        "models": {m.name: _model_entry(m, config) for m in models},
    }
    ledger = Ledger.open(manifest_path, header)
    names = {s.name for s in stages}  # a stage of a model no longer in the config is forgotten (its files stay)
    ledger.data["stages"] = {k: v for k, v in ledger.data["stages"].items() if k in names}
    _quiet_loading()
    selected = [s for s in stages if not only or s.kind in only]
    _check_needs(selected, stages, ledger)
    chosen = {s.name for s in selected}
    for stage in stages:  # checkpoint evaluations of training that --only skips now, done earlier
        if stage.kind == "train" and stage.name not in chosen and ledger.status(stage) == "done":
            _record_steps(ledger, stage, ledger.data["stages"][stage.name].get("info") or {})
    numbers = {s.name: f"[{i}/{len(selected)}]" for i, s in enumerate(selected, 1)}
    together = [s for s in selected if s.kind == "train" and not s.inputs["launch"] and ledger.status(s) != "done"]
    if config.train_jobs < 2 or len(together) < 2:
        together = []
    _train_together(config, out, together, ledger, numbers)
    trained = {s.name for s in together}
    for stage in selected:
        if stage.name in trained:
            continue  # trained just now, and said so
        info = ledger.run(stage, numbers[stage.name])
        if stage.kind == "train":
            _record_steps(ledger, stage, info)
    return ledger.data


def _plan(config: StudyConfig, out: Path, dry_run: bool = False):
    """(base, models, the base's identity, stages): what the study and a training child both build."""
    base = config.base if dry_run or config.survey else resolve_model(config.base)
    models = plan_models(config, out, base)
    # A lab base is named by its build key (known before it is built, so a dry run sees the real keys).
    base_identity = identity(config.base if config.base in LAB_MODELS else base)
    return base, models, base_identity, build_stages(config, out, models, base, base_identity)


# Longest first (GRPO and on-policy SFT sample every step, SFT never), so the longest arm does
# not start last. Only the order of starting: no stage reads another's outputs.
METHOD_COST = {"grpo": 0, "onpolicy": 1, "sft": 2}


def _train_together(config: StudyConfig, out: Path, stages: list[Stage], ledger: Ledger, numbers: dict) -> None:
    """The training stages, config.train_jobs at a time, each in a child process with its share of the cores
    (and its output in DIR/logs/<stage>.log); the ledger is written here only, as each one starts and ends."""
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    if not stages:
        return
    jobs = min(config.train_jobs, len(stages))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    queue = sorted(stages, key=lambda s: METHOD_COST.get(s.inputs["method"], len(METHOD_COST)))
    (out / "logs").mkdir(parents=True, exist_ok=True)
    running: dict = {}
    # A fresh process per arm (spawned: no copy of this one's torch state), as `rtransfer train` would be.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=spawn, max_tasks_per_child=1) as pool:
        while queue or running:
            while queue and len(running) < jobs:
                stage = queue.pop(0)
                log = out / "logs" / f"{stage.name.replace(':', '-')}.log"
                before = ledger.begin(stage, numbers[stage.name], f" ({jobs} at once, {threads} thread(s); {log})")
                future = pool.submit(_train_child, config, out, stage.name, stage.key, threads, log, os.getpid())
                running[future] = (stage, before)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                stage, before = running.pop(future)
                info, seconds = future.result()  # a failed arm raises here; the others finish first (the with)
                ledger.finish(stage, before, seconds, info, numbers[stage.name])
                _record_steps(ledger, stage, info)


def _train_child(config: StudyConfig, out: Path, name: str, key: str, threads: int, log: Path, parent: int):
    """In a fresh process: the training stage `name` of the study, on `threads` torch threads, its output into
    `log`. Dies with the study's process (a killed study leaves no arm training on, to collide with the rerun)."""
    import os
    import sys
    import time

    from rtransfer.processes import die_with_parent

    die_with_parent(parent)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    with open(log, "a") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (the process's own streams)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    import torch

    torch.set_num_threads(threads)
    _quiet_loading()
    stage = next(s for s in _plan(config, out)[3] if s.name == name)
    if stage.key != key:  # the same config and directory cannot plan another stage: a bug, not bad input
        raise StudyError(f"{name}: the child planned key {stage.key}, the study {key}")
    started = time.time()
    info = stage.run() or {}
    return info, time.time() - started


def _record_steps(ledger: Ledger, stage: Stage, info: dict[str, Any]) -> None:
    ledger.data["models"][stage.name.split(":", 1)[1]]["steps"] = info.get("steps", {})
    ledger.save()


def _quiet_loading() -> None:
    """No progress bar per model load (the probes load three models per arm): the stage lines say what runs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _read(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text()) if path.exists() else {"stages": {}}


def _model_entry(model: Model, config: StudyConfig) -> dict[str, Any]:
    probes = {}
    if model.base is not None and not config.survey:
        probes = {p: f"probes/{model.name}/{p}.json" for p in ("latent", "tokens") if getattr(config.probes, p)}
    return {
        "arm": model.arm,
        "method": model.method,
        "thinking": model.thinking,
        "chat_thinking": model.chat_thinking,
        "seed": model.seed,
        "source": model.source,
        "base": model.base,
        "run_dir": f"runs/{model.name}",
        "train_dir": f"models/{model.name}" if model.trained else None,
        "steps": {},
        "probes": probes,
    }


def _check_needs(selected: list[Stage], stages: list[Stage], ledger: Ledger) -> None:
    chosen = {s.name for s in selected}
    for stage in selected:
        for need in stage.needs:
            upstream = next(s for s in stages if s.name == need)
            if need not in chosen and ledger.status(upstream) != "done":
                raise StudyError(f"{stage.name} reads {need}, which is not done: run it first (or drop --only)")


def dry_run_plan(stages: list[Stage], ledger: Ledger, models: list[Model]) -> dict[str, Any]:
    from rtransfer.train.run import check

    plan = {"stages": [], "training": {}}
    for stage in stages:
        plan["stages"].append({"stage": stage.name, "status": ledger.status(stage), "key": stage.key})
    for m in models:
        if m.trained:
            checked = check(m.job)
            if m.launch:
                checked["command"] = train_command(m)
            plan["training"][m.name] = checked
    return plan


def train_command(model: Model) -> list[str]:
    """The launcher command of an arm trained in its own processes (accelerate, torchrun, ...)."""
    job = model.job
    launch = [_shipped_config(part) for part in model.launch]
    command = [*launch, "-m", "rtransfer.cli", "train", job.method, "--model", job.model, "--out", str(job.out)]
    command += ["--config", job.config] if job.config else []
    command += ["--data", job.data] if job.data else []
    command += ["--seed", str(job.seed)] if job.seed is not None else []
    command += ["--thinking", job.thinking] if job.thinking else []
    for item in job.overrides:
        command += ["--set", item]
    return command


def _shipped_config(part: str) -> str:
    """{zero3} / {fsdp2} / {ddp} in a launch prefix: the path of the accelerate config shipped with rtransfer."""
    if part.startswith("{") and part.endswith("}"):
        from importlib.resources import files

        path = Path(str(files("rtransfer") / "data" / "accelerate" / f"{part[1:-1]}.yaml"))
        if not path.exists():
            raise StudyError(f"launch: no shipped accelerate config {part} (ddp, fsdp2, zero3)")
        return str(path)
    return part


def build_stages(
    config: StudyConfig, out: Path, models: list[Model], base: str, base_identity: dict[str, str]
) -> list[Stage]:
    from rtransfer.study import steps

    stages: list[Stage] = []
    weights: dict[str, str] = {}  # model name → the key of what defines its weights
    for m in models:
        if m.trained:
            stages.append(steps.train_stage(m, config, base_identity))
            weights[m.name] = stages[-1].key
        else:
            weights[m.name] = key_of(base_identity if m.name == "base" and not config.survey else identity(m.source))
    evals = {m.name: steps.eval_stage(m, config, out, weights[m.name]) for m in models}
    stages += evals.values()
    if not config.survey and (config.probes.latent or config.probes.tokens):
        stages += [steps.probe_stage(m, config, out, base, weights, evals) for m in models if m.base is not None]
    stages.append(steps.ti_stage(models, config, out, evals))
    stages.append(steps.report_stage(out, stages))
    return stages
