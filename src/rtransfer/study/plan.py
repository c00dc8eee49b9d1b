"""The study as a plan: `plan(config, out)` turns a study config into its models (ModelRefs) and its nodes, each
one spec (rtransfer.specs) and the nodes it reads, written to DIR/plan.json before anything runs. To know what a
study runs, with which settings, read that file.

Every evaluation of one model derives from one EngineSpec (`engine_spec`): its final evaluation, its checkpoints'
evaluations and its probes share chat thinking, batch size, dtype and placement by construction.

    teacher:<name>  TeacherSpec     DIR/traces/<name>.jsonl       (and its answers in <name>.jsonl.run/)
    train:<arm>     TrainSpec       DIR/models/<arm>/             (and, with eval_every or checkpoints, steps/step-N)
    eval:<model>    EvalSpec        DIR/runs/<model>/
    steps:<arm>     StepEvalSpec    DIR/models/<arm>/evals/step-N/   (kind "eval": the TI over training steps)
    probes:<model>  ProbeSpec       DIR/probes/<model>/
    ti              CompareSpec     DIR/scores.json, ti.json, comparisons.json
    report          ReportSpec      DIR/report.html, report.md, tables/, figures/
"""

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rtransfer.benchmarks.registry import resolve_suite
from rtransfer.engines.factory import EngineSpec
from rtransfer.engines.serve import TRANSFORMERS, VLLM, ServeSpec
from rtransfer.errors import RtransferError
from rtransfer.lab.build import LAB_MODELS, config_of, lab_config, resolve_model, teacher_config
from rtransfer.runs import file_hash, fingerprint, write_json_atomic
from rtransfer.specs import (
    TEACHER_TRACES,
    CompareSpec,
    EvalSpec,
    ModelRef,
    ProbeSpec,
    ReportSpec,
    StepEvalSpec,
    TeacherSpec,
    TrainSpec,
    key_of,
)
from rtransfer.study.config import TEACHER_DATA, EvalConfig, StudyConfig, Teacher
from rtransfer.study.launch import launch_processes
from rtransfer.study.ledger import Node
from rtransfer.train.config import THINKING, describe, split_recipe
from rtransfer.train.data import hub_revision, is_local, split_source
from rtransfer.train.methods import METHODS
from rtransfer.train.run import TrainJob, job_recipe

KINDS = ("teacher", "train", "eval", "probes", "ti", "report")  # what --only selects
REPORT_VERSION = 2  # bump when the report's content changes, so a finished study renders it again
SHIPPED_COMMANDS = {("vllm",): VLLM, ("transformers",): TRANSFORMERS}  # [eval.serve] command = ["vllm"]
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
    return {"hub": model, "revision": hub_revision(model, "model")}


def teacher_identity(teacher: str, base: str) -> dict[str, str]:
    """What names a distillation teacher's content: `lab`, the lab teacher model of the lab base `base`, by its
    build key (known before it is built); any other, as identity() names a model."""
    if teacher != "lab":
        return identity(teacher)
    config = lab_config(quick=base == "lab:quick") if base in LAB_MODELS else config_of(Path(base))
    return {"lab_teacher": teacher_config(config).key()}


def plan(config: StudyConfig, out: Path, dry_run: bool = False) -> Plan:
    """The study's models and nodes; a dry run names the base without building or loading it."""
    out = Path(out)
    base = config.base if dry_run or config.survey else resolve_model(config.base)
    # A lab base is named by its build key (known before it is built, so a dry run sees the real keys).
    base_identity = identity(config.base if config.base in LAB_MODELS else base)
    teachers = {t.name: _teacher(t, config, out, base, dry_run) for t in config.teachers}
    models, trains = (_survey(config), {}) if config.survey else _arms(config, out, base, base_identity, teachers)
    nodes = [Node(f"teacher:{name}", "teacher", spec) for name, spec in teachers.items()]
    nodes += [Node(f"train:{name}", "train", spec) for name, spec in trains.items()]
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
    steps = [_steps(trains[m.name], evals[m.name], config.eval) for m in models if m.name in trains]
    nodes += [Node(f"steps:{s.template.model.name}", "eval", s) for s in steps if s.every]
    p = config.probes
    if not config.survey and (p.latent or p.tokens or p.drift):
        prompts = drift_prompts(config)
        nodes += [_probes(m, config, out, evals, trains, nodes, prompts) for m in models if m.base is not None]
    compare = CompareSpec(
        tuple(models),
        asdict(config.ti),
        survey=config.survey,
        out=str(out),
        # and the probes that measure an arm's drift: the compare stage fits the drift law on it
        after={n.name: n.key for n in nodes if n.kind == "eval" or (n.kind == "probes" and n.spec.train_dir)},
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


def _arms(
    config: StudyConfig, out: Path, base: str, base_identity: dict, teachers: dict[str, TeacherSpec]
) -> tuple[list[ModelRef], dict]:
    models = [ModelRef("base", base, "base")]
    trains: dict[str, TrainSpec] = {}
    for arm in config.arms:
        data, data_identity, after = arm.data, data_identity_of(arm.data), {}
        if arm.data and arm.data.startswith(TEACHER_DATA):
            teacher = teachers[arm.data.removeprefix(TEACHER_DATA)]
            data, data_identity = teacher.out, {"teacher": teacher.key()}
            after = {f"teacher:{teacher.model.name}": teacher.key()}
        for seed in range(config.seeds):
            name = arm.name if config.seeds == 1 else f"{arm.name}-s{seed}"
            job = TrainJob(
                method=arm.method,
                model=base,
                out=out / "models" / name,
                config=arm.recipe or config.recipe,
                data=data,
                seed=None if config.seeds == 1 else seed,
                overrides=list(arm.set),
                thinking=arm.thinking,
            )
            recipe = job_recipe(job)  # validated here, before anything runs
            every = config.eval.eval_every or (recipe.save_every if config.eval.checkpoints else 0)
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
            if getattr(recipe, "teacher", None):  # a distillation teacher is part of what the arm trains on
                named = config.base if config.base in LAB_MODELS else base
                data_identity = {**data_identity, "teacher_model": teacher_identity(recipe.teacher, named)}
            weights, execution = split_recipe(describe(recipe))
            trains[name] = TrainSpec(
                model,
                base,
                base_identity,
                arm.method,
                weights,
                data,
                data_identity=data_identity,
                teacher_traces=model.teacher_traces,
                keep_every=every,
                launch=tuple(arm.launch),
                processes=launch_processes(arm.launch),
                execution=execution,
                out=str(job.out),
                after=after,
            )
    return models, trains


def data_identity_of(data: str | None) -> dict[str, Any]:
    """What names training data's content: a local file's hash, a hub dataset's id and revision (where known),
    the lab's split. A local file that is not there is refused here, before anything runs."""
    if data is None:
        return {"lab": "math-train"}
    name, column = split_source(data)
    if is_local(name):
        if not Path(name).is_file():
            raise StudyError(f"training data {name} does not exist (a local file; relative to {Path.cwd()})")
        return {"sha256": file_hash(Path(name)), "column": column}
    return {"hub": name, "revision": hub_revision(name), "column": column}


def _teacher(t: Teacher, config: StudyConfig, out: Path, base: str, dry_run: bool) -> TeacherSpec:
    """The teacher's spec: its budget defaults to the SFT recipe's max_length (a trace longer than that is
    dropped in training anyway; a shorter budget rejects the long correct solutions and biases the traces)."""
    source = t.model if dry_run or t.model not in LAB_MODELS else resolve_model(t.model)
    budget = t.max_new_tokens or job_recipe(TrainJob("sft", base, out, config=config.recipe)).max_length
    model = ModelRef(t.name, source, "reference", chat_thinking=THINKING[t.thinking])
    e = config.eval
    engine = engine_spec(e, model, urls=t.servers)
    return TeacherSpec(
        model,
        identity(t.model if t.model in LAB_MODELS else source),
        engine,
        t.queries,
        data_identity_of(t.queries),
        t.samples,
        budget,
        t.temperature,
        top_p=t.top_p,
        max_queries=t.max_queries,
        seed=t.seed,
        serve=serve_spec(e, model) if not t.servers else None,
        logs=str(out / "logs"),
        out=str(out / "traces" / f"{t.name}.jsonl"),
    )


def engine_spec(e: EvalConfig, model: ModelRef, urls: list[str] | None = None) -> EngineSpec:
    """How the study evaluates `model`: through its servers when [eval.servers] names it or [eval.serve] starts
    one (its URL is known when it answers), else in process; with the chat thinking it was trained to answer
    with."""
    urls = e.servers.get(model.name, []) if urls is None else urls
    served = bool(urls) or bool(e.serve.command)
    return EngineSpec(
        model.source,
        engine="openai" if served else "hf",
        base_urls=tuple(urls),
        api_key_env=e.api_key_env or None,
        batch_size=e.batch_size,
        dtype=e.dtype,
        device_map=e.device_map or None,
        one_thread_per_batch=True,  # the same answers whatever threads the schedule gives the stage
        thinking=model.chat_thinking,
        tokenizer=model.source if served and Path(model.source).exists() else None,
    )


def serve_spec(e: EvalConfig, model: ModelRef) -> ServeSpec | None:
    """The server [eval.serve] starts for `model` (None: it has servers of its own, or none are started)."""
    if not e.serve.command or e.servers.get(model.name):
        return None
    s = e.serve
    command = SHIPPED_COMMANDS.get(tuple(s.command), tuple(s.command))
    devices = s.devices[0] if s.devices else ""
    # "auto" would let vLLM serve an arm saved in fp32 in fp16 (its documented rule), where Qwen activations can
    # overflow, and the base in bf16: every started server gets one dtype, bf16 unless the study names one.
    dtype = e.dtype if e.dtype != "auto" else "bfloat16"
    return ServeSpec(command, dtype=dtype, context=s.context, devices=devices, startup_timeout=s.startup_timeout)


def eval_spec(e: EvalConfig, model: ModelRef, weights: str, out: Path, after: dict[str, str]) -> EvalSpec:
    serve = serve_spec(e, model)
    return EvalSpec(
        model,
        engine_spec(e, model),
        e.suite,
        weights,
        data_dir=e.data_dir or None,
        limit=e.limit or None,
        serve=serve,
        logs=str(out.parent.parent / "logs"),  # DIR/runs/<model> -> DIR/logs
        out=str(out),
        after=after,
    )


def _steps(train: TrainSpec, final: EvalSpec, e: EvalConfig) -> StepEvalSpec:
    """The evaluation of `train`'s checkpoints: as its final one, on the first checkpoint_limit documents if fewer."""
    name = train.model.name
    if e.checkpoint_limit and (final.limit is None or e.checkpoint_limit < final.limit):
        final = replace(final, limit=e.checkpoint_limit)
    return StepEvalSpec(
        final, train.out, train.keep_every, out=str(Path(train.out) / "evals"), after={f"train:{name}": train.key()}
    )


def drift_prompts(config: StudyConfig) -> str | None:
    """The training prompts every arm's drift is measured on (one set, so that the arms' points share an axis):
    the queries of the first arm that trains on queries (on-policy SFT, GRPO, distillation), else the lab's math
    split (None)."""
    return next((a.data for a in config.arms if METHODS[a.method].data == "queries"), None)


def _probes(
    model: ModelRef,
    config: StudyConfig,
    out: Path,
    evals: dict[str, EvalSpec],
    trains: dict[str, TrainSpec],
    nodes: list[Node],
    prompts: str | None,
) -> Node:
    p = config.probes
    after = {f"eval:{model.name}": evals[model.name].key(), f"eval:{model.base}": evals[model.base].key()}
    after.update(evals[model.name].after)  # its training, if it was trained here
    drift = p.drift and model.name in trains
    if drift:  # its checkpoints' evaluations: their answers are the reverse KL's
        after.update({n.name: n.key for n in nodes if n.name == f"steps:{model.name}"})
    spec = ProbeSpec(
        model,
        evals[model.name].engine,
        evals[model.base].engine,
        tuple(p.benchmarks or resolve_suite(config.eval.suite)),
        evals[model.name].out,
        asdict(p),
        data_dir=config.eval.data_dir or None,
        train_dir=trains[model.name].out if drift else None,
        queries=prompts if drift else None,
        out=str(out / "probes" / model.name),
        after=after,
    )
    return Node(f"probes:{model.name}", "probes", spec)


def model_entry(model: ModelRef, config: StudyConfig) -> dict[str, Any]:
    """The manifest's record of a model: the ModelRef and where its files are (its `steps` the ledger keeps)."""
    probes = {}
    if model.base is not None and not config.survey:
        kinds = ("latent", "tokens", "drift") if model.role == "arm" else ("latent", "tokens")
        probes = {p: f"probes/{model.name}/{p}.json" for p in kinds if getattr(config.probes, p)}
    return {
        **asdict(model),
        "run_dir": f"runs/{model.name}",
        "train_dir": f"models/{model.name}" if model.role == "arm" else None,
        "steps": {},
        "probes": probes,
    }
