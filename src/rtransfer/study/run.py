"""`run_study`: one base → arms trained on math → every model evaluated → scores and TI → probes → the report.

The study is planned (study/plan.py: one spec per node, written to DIR/plan.json), then executed
(study/execute.py: every node through `rtransfer.jobs.run`), each node content-keyed and recorded by the ledger
(study/ledger.py), so a rerun redoes only what changed.

DIR/plan.json            every node: its spec, its key, what it reads
DIR/manifest.json        config, versions, the models, every node's key and time
DIR/models/<model>/      training directories (absent for a survey); checkpoint evals in evals/step-<N>/
DIR/runs/<model>/        evaluation run directories
DIR/probes/<model>/      latent.json, tokens.json: base vs the model
DIR/scores.json          one row per model and benchmark, with the score's CI
DIR/ti.json              as `rtransfer ti --json`, with the study's [ti] settings
DIR/comparisons.json     arm differences, seed spread and step curves, with the same settings
DIR/report.html, report.md, tables/, figures/
"""

import os
import re
import shlex
from pathlib import Path
from typing import Any

from rtransfer.engines.serve import check_command, render
from rtransfer.errors import RtransferError
from rtransfer.jobs.train import job as train_job
from rtransfer.runs import versions
from rtransfer.specs import StepEvalSpec, TrainSpec
from rtransfer.study.config import StudyConfig
from rtransfer.study.execute import execute, launch_command, quiet_loading, serve_of
from rtransfer.study.ledger import Ledger, Node
from rtransfer.study.plan import KINDS, StudyError, model_entry, plan
from rtransfer.train.run import check


def run_study(config: StudyConfig, out: Path, only: tuple[str, ...] = (), dry_run: bool = False) -> dict[str, Any]:
    """Run (or resume) the study into `out`; with dry_run, write DIR/plan.json, validate it and say what would
    run, running nothing else. `only` restricts the run to those node kinds; what they read must already be done."""
    unknown = set(only) - set(KINDS)
    if unknown:
        raise StudyError(f"--only {', '.join(sorted(unknown))}: choose from {', '.join(KINDS)}")
    out = Path(out)
    planned = plan(config, out, dry_run)
    manifest_path = out / "manifest.json"
    planned.write(out / "plan.json")
    if dry_run:
        return dry_run_summary(planned.nodes, Ledger.read(manifest_path), out)
    header = {
        "study": config.name,
        "config": config.as_dict(),
        "seeds": sorted({m.seed for m in planned.models if m.seed is not None}),
        "versions": versions(),
        "base": {"model": planned.base, **planned.base_identity},
        "models": {m.name: model_entry(m, config) for m in planned.models},
    }
    ledger = Ledger.open(manifest_path, header, planned.nodes)
    quiet_loading()
    selected = [n for n in planned.nodes if not only or n.kind in only]
    _check_needs(selected, planned.nodes, ledger)
    serve = config.eval.serve
    execute(selected, ledger, config.train_jobs, out, tuple(serve.devices[: serve.parallel]) or ("",) * serve.parallel)
    return ledger.data


def _check_needs(selected: list[Node], nodes: list[Node], ledger: Ledger) -> None:
    chosen = {n.name for n in selected}
    by_name = {n.name: n for n in nodes}
    for node in selected:
        for need in node.needs:
            if need not in chosen and ledger.status(by_name[need]) != "done":
                raise StudyError(f"{node.name} reads {need}, which is not done: run it first (or drop --only)")


def dry_run_summary(nodes: list[Node], ledger: Ledger, out: Path) -> dict[str, Any]:
    """Every node's status and key, each training node validated (recipe, data, colocate sizing), each server
    command checked, each model evaluated in process weighed against this machine's memory, all without a model
    or the hub. What cannot run is listed under "problems", one line each."""
    summary: dict[str, Any] = {"plan": str(out / "plan.json"), "stages": [], "training": {}, "servers": {}}
    problems: dict[str, list[str]] = {}  # one line per cause, naming the nodes it stops
    for node in nodes:
        summary["stages"].append({"stage": node.name, "status": ledger.status(node), "key": node.key})
        serve = serve_of(node.spec)
        model = getattr(node.spec, "model", None)
        if serve is not None:
            served = "CHECKPOINT" if isinstance(node.spec, StepEvalSpec) else node.spec.engine.model
            try:
                summary["servers"][node.name] = shlex.join(render(serve, served, serve.port or 8000))
                check_command(serve, served)
            except RtransferError as err:
                problems.setdefault(str(err), []).append(node.name)
        elif getattr(node.spec, "engine", None) is not None and node.spec.engine.engine == "hf" and model:
            problem = too_large(node.spec.engine)
            if problem:
                problems.setdefault(problem, []).append(node.name)
        if isinstance(node.spec, TrainSpec):
            try:
                checked = check(train_job(node.spec))  # the TrainJob the run would be given
            except RtransferError as err:
                problems.setdefault(str(err), []).append(node.name)
                continue
            checked["processes"] = node.spec.processes
            checked["budget"] = data_budget(node.spec)
            if node.spec.launch:
                checked["command"] = launch_command(node, out)
            summary["training"][node.spec.model.name] = checked
    summary["problems"] = [f"{', '.join(names)}: {cause}" for cause, names in problems.items()]
    return summary


def data_budget(spec: TrainSpec) -> dict[str, Any]:
    """What an arm will see, from its recipe and process count (batch_size is per process): the queries it may draw
    from, and per optimiser step the sequences (SFT traces; sampled completions) and the prompts they answer."""
    r = spec.recipe
    per_step = r["batch_size"] * r["grad_accum"] * spec.processes
    budget: dict[str, Any] = {"queries": r["max_queries"] or "all", "sequences per step": per_step}
    if "rollouts" in r:  # one optimiser step per generation batch
        prompts = per_step // r["rollouts"]
        budget.update({"prompts per step": prompts, "steps": r["max_steps"], "query draws": prompts * r["max_steps"]})
    else:
        budget.update({"epochs": r["epochs"]} if r["max_steps"] < 0 else {"steps": r["max_steps"]})
    return budget


def too_large(engine) -> str | None:
    """Why a model evaluated in process cannot fit this machine (its weights against the GPUs' memory, or the
    RAM without a GPU), or None; a hub model's size is estimated from the parameter count in its name."""
    import torch  # the machine's GPUs

    size = model_bytes(engine.model, engine.dtype)
    if size is None:
        return None
    if torch.cuda.is_available():
        memory = sum(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
        where = f"{torch.cuda.device_count()} GPU(s)"
    else:
        memory, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "RAM (no GPU)"
    if size <= memory * 0.9:
        return None
    return (
        f"{engine.model} needs ~{size / 2**30:.0f} GiB for its weights alone, more than this machine's "
        f"{memory / 2**30:.0f} GiB of {where}: serve it ([eval.serve] or [eval.servers])"
    )


def model_bytes(model: str, dtype: str) -> int | None:
    """A model's weights in bytes: a local directory's weight files, or a hub id's parameter count ("14B") ×
    the bytes of `dtype` (2 for auto); None when neither tells."""
    path = Path(model)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.glob("*") if f.suffix in (".safetensors", ".bin"))
    found = re.search(r"(\d+(?:\.\d+)?)[Bb](?![a-z])", model.rsplit("/", 1)[-1])
    if found is None:
        return None
    return int(float(found.group(1)) * 1e9 * (4 if dtype == "float32" else 2))
