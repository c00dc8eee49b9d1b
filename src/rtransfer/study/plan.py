"""The study as a plan: `plan(config, out)` turns a study config into its models (ModelRefs) and its nodes, each
one spec (rtransfer.specs) and the nodes it reads, written to DIR/plan.json before anything runs. To know what a
study runs, with which settings, read that file.

Every evaluation of one model derives from one EngineSpec (`engine_spec`): its final evaluation, its checkpoints'
evaluations and its probes share chat thinking, batch size, dtype and placement by construction.

    train:<arm>     TrainSpec       DIR/models/<arm>/             (and, with eval_every, steps/step-N weights)
    eval:<model>    EvalSpec        DIR/runs/<model>/
    steps:<arm>     StepEvalSpec    DIR/models/<arm>/evals/step-N/   (kind "eval": the TI over training steps)
    probes:<model>  ProbeSpec       DIR/probes/<model>/
    ti              CompareSpec     DIR/scores.json, ti.json, comparisons.json
    report          ReportSpec      DIR/report.html, report.md, tables/, figures/
"""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rtransfer.benchmarks.registry import resolve_suite
from rtransfer.engines.factory import EngineSpec
from rtransfer.errors import RtransferError
from rtransfer.lab.build import LAB_MODELS, lab_config, resolve_model
from rtransfer.runs import fingerprint, write_json_atomic
from rtransfer.specs import (
    TEACHER_TRACES,
    CompareSpec,
    EvalSpec,
    ModelRef,
    ProbeSpec,
    ReportSpec,
    StepEvalSpec,
    TrainSpec,
    key_of,
)
from rtransfer.study.config import EvalConfig, StudyConfig
from rtransfer.study.ledger import Node
from rtransfer.train.config import THINKING, describe
from rtransfer.train.run import TrainJob, job_recipe

KINDS = ("train", "eval", "probes", "ti", "report")  # what --only selects
REPORT_VERSION = 2  # bump when the report's content changes, so a finished study renders it again
SURVEY_ROLES = {"base": "base", "SFT": "survey", "RL": "survey", "reference": "reference"}


class StudyError(RtransferError):
    pass


@dataclass
class Plan:
    base: str  # the base's source (resolved, unless a dry run)
    base_identity: dict[str, str]
    models: list[ModelRef]
    nodes: list[Node]

    def to_json(self) -> dict[str, Any]:
        return {
            "base": {"model": self.base, **self.base_identity},
            "models": [asdict(m) for m in self.models],
            "nodes": [n.to_json() for n in self.nodes],
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_json())


def identity(model: str) -> dict[str, str]:
    """What names a model's content without loading it: a lab base's build key, a local directory's
    fingerprint, or the hub id."""
    if model in LAB_MODELS:
        return {"lab": lab_config(quick=model == "lab:quick").key()}
    if Path(model).exists():
        return {"path": str(Path(model).resolve()), "fingerprint": fingerprint(model)}
    return {"hub": model}


def plan(config: StudyConfig, out: Path, dry_run: bool = False) -> Plan:
    """The study's models and nodes; a dry run names the base without building or loading it."""
    out = Path(out)
    base = config.base if dry_run or config.survey else resolve_model(config.base)
    # A lab base is named by its build key (known before it is built, so a dry run sees the real keys).
    base_identity = identity(config.base if config.base in LAB_MODELS else base)
    models, trains = (_survey(config), {}) if config.survey else _arms(config, out, base, base_identity)
    nodes = [Node(f"train:{name}", "train", spec) for name, spec in trains.items()]
    evals: dict[str, EvalSpec] = {}
    for m in models:
        if m.name in trains:
            weights = trains[m.name].key()
            after = {f"train:{m.name}": weights}
        else:
            weights = key_of(base_identity if m.role == "base" and not config.survey else identity(m.source))
            after = {}
        evals[m.name] = eval_spec(config.eval, m, weights, out / "runs" / m.name, after)
        nodes.append(Node(f"eval:{m.name}", "eval", evals[m.name]))
    steps = [_steps(trains[m.name], evals[m.name], config.eval.eval_every) for m in models if m.name in trains]
    if config.eval.eval_every:
        nodes += [Node(f"steps:{s.template.model.name}", "eval", s) for s in steps]
    if not config.survey and (config.probes.latent or config.probes.tokens):
        nodes += [_probes(m, config, out, evals) for m in models if m.base is not None]
    compare = CompareSpec(
        tuple(models),
        asdict(config.ti),
        survey=config.survey,
        out=str(out),
        after={n.name: n.key for n in nodes if n.kind == "eval"},
    )
    nodes.append(Node("ti", "ti", compare))
    nodes.append(Node("report", "report", ReportSpec(REPORT_VERSION, str(out), {n.name: n.key for n in nodes})))
    return Plan(base, base_identity, models, nodes)


def _survey(config: StudyConfig) -> list[ModelRef]:
    return [
        ModelRef(
            m.name,
            m.model,
            SURVEY_ROLES[m.method],
            base=m.base or None,
            method=m.method if SURVEY_ROLES[m.method] == "survey" else None,
            chat_thinking=THINKING[m.thinking or "default"],
        )
        for m in config.models
    ]


def _arms(config: StudyConfig, out: Path, base: str, base_identity: dict) -> tuple[list[ModelRef], dict]:
    models = [ModelRef("base", base, "base")]
    trains: dict[str, TrainSpec] = {}
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
            model = ModelRef(
                name,
                str(job.out),
                "arm",
                base="base",
                arm=arm.name,
                method=arm.method,
                seed=recipe.seed,
                teacher_traces=TEACHER_TRACES.get(arm.thinking or ""),
                chat_thinking=THINKING[recipe.thinking],
            )
            models.append(model)
            trains[name] = TrainSpec(
                model,
                base,
                base_identity,
                arm.method,
                describe(recipe),
                arm.data,
                teacher_traces=model.teacher_traces,
                keep_every=every,
                launch=tuple(arm.launch),
                out=str(job.out),
            )
    return models, trains


def engine_spec(e: EvalConfig, model: ModelRef) -> EngineSpec:
    """How the study evaluates `model`: through its servers when [eval.servers] names it, else in process; with
    the chat thinking it was trained to answer with."""
    urls = e.servers.get(model.name, [])
    return EngineSpec(
        model.source,
        engine="openai" if urls else "hf",
        base_urls=urls,
        api_key_env=e.api_key_env or None,
        batch_size=e.batch_size,
        dtype=e.dtype,
        device_map=e.device_map or None,
        thinking=model.chat_thinking,
        tokenizer=model.source if urls and Path(model.source).exists() else None,
    )


def eval_spec(e: EvalConfig, model: ModelRef, weights: str, out: Path, after: dict[str, str]) -> EvalSpec:
    return EvalSpec(
        model,
        engine_spec(e, model),
        e.suite,
        weights,
        data_dir=e.data_dir or None,
        limit=e.limit or None,
        out=str(out),
        after=after,
    )


def _steps(train: TrainSpec, final: EvalSpec, every: int) -> StepEvalSpec:
    name = train.model.name
    return StepEvalSpec(
        final, train.out, every, out=str(Path(train.out) / "evals"), after={f"train:{name}": train.key()}
    )


def _probes(model: ModelRef, config: StudyConfig, out: Path, evals: dict[str, EvalSpec]) -> Node:
    p = config.probes
    after = {f"eval:{model.name}": evals[model.name].key(), f"eval:{model.base}": evals[model.base].key()}
    after.update(evals[model.name].after)  # its training, if it was trained here
    spec = ProbeSpec(
        model,
        evals[model.name].engine,
        evals[model.base].engine,
        tuple(p.benchmarks or resolve_suite(config.eval.suite)),
        evals[model.name].out,
        asdict(p),
        data_dir=config.eval.data_dir or None,
        out=str(out / "probes" / model.name),
        after=after,
    )
    return Node(f"probes:{model.name}", "probes", spec)


def model_entry(model: ModelRef, config: StudyConfig) -> dict[str, Any]:
    """The manifest's record of a model: the ModelRef and where its files are (its `steps` the ledger keeps)."""
    probes = {}
    if model.base is not None and not config.survey:
        probes = {p: f"probes/{model.name}/{p}.json" for p in ("latent", "tokens") if getattr(config.probes, p)}
    return {
        **asdict(model),
        "run_dir": f"runs/{model.name}",
        "train_dir": f"models/{model.name}" if model.role == "arm" else None,
        "steps": {},
        "probes": probes,
    }
