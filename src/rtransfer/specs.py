"""Every unit of a study's work as one frozen, JSON-serialisable description: the spec is what runs, what the
key hashes, what the manifest records and what a child process or a launcher receives (`python -m rtransfer.jobs
SPEC.json`). Nothing hand-kept beside a spec feeds a key, so the two cannot drift.

A spec's `key()` hashes its own content and the keys of the work it reads (`after`: node name -> key), leaving out
where it writes (`out`) and where its model lies on disk when that place is named by a key (a trained arm's
directory is named by its training key). The classes are plain dataclasses rather than pydantic models: they are
few, flat, and read back by `from_json` with the same class (the one shape the study, the manifest and the report
share).
"""

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rtransfer.engines.factory import EngineSpec
from rtransfer.engines.serve import ServeSpec

ROLES = ("base", "arm", "survey", "reference")
# How an engine reaches its model, not what answers: a moved server or a longer timeout keeps an evaluation's key.
# one_thread_per_batch too: the study sets it so that its answers are the same on every schedule, as they were
# before the engine could choose otherwise (engines/calibration.py), so its evaluations keep their keys.
ENGINE_PLACES = (
    "model",
    "tokenizer",
    "base_urls",
    "api_key_env",
    "concurrency",
    "request_timeout",
    "max_attempts",
    "one_thread_per_batch",
)
# How a started server runs, not what it answers with (its dtype and context are keyed).
SERVE_PLACES = ("command", "devices", "host", "port", "startup_timeout", "stop_grace")
# The lab teacher's switch (an arm's `thinking`, `rtransfer train --thinking`) -> the traces as ModelRef names them.
TEACHER_TRACES = {"on": "think", "off": "no-think"}


def key_of(content: Any) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelRef:
    """One model of a study, the only shape the study, its manifest and its report use."""

    name: str  # its label in every output
    source: str  # what is loaded: hub id, directory or lab name (a trained arm: its training directory)
    role: str  # base, arm (trained here), survey (a published tuned model) or reference (shown, never compared)
    base: str | None = None  # the name of the model it is compared with (None: a base or a reference)
    arm: str | None = None  # an arm: the arm this model is one seed of (= name with one seed)
    method: str | None = None  # an arm: its training method (train.methods); a survey model: SFT or RL
    seed: int | None = None  # an arm: its training seed
    teacher_traces: str | None = None  # an off-policy SFT arm on the lab: the teacher's think / no-think traces
    chat_thinking: bool | None = None  # the chat template's enable_thinking when it answers (None: its default)

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"{self.name}: role {self.role!r} is not one of {ROLES}")
        if self.teacher_traces not in (None, *TEACHER_TRACES.values()):
            raise ValueError(
                f"{self.name}: teacher_traces {self.teacher_traces!r} is not one of {tuple(TEACHER_TRACES.values())}"
            )

    @property
    def label(self) -> str:
        return self.name if self.method in (None, self.name) else f"{self.name} ({self.method})"


@dataclass(frozen=True)
class Spec:
    """What every spec has: where it writes and what it reads."""

    kind: ClassVar[str]
    keyed_out: ClassVar[tuple[str, ...]] = ("out",)  # fields naming places, not content: never in the key

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def key(self) -> str:
        content = {"kind": self.kind, **_set_fields(self)}
        for name in self.keyed_out:
            _drop(content, name)
        return key_of(content)

    def outputs(self) -> list[str]:
        """What a stale run of this spec leaves behind, to be removed before it runs again."""
        return [self.out]  # type: ignore[attr-defined]


def _set_fields(obj: Any) -> Any:
    """A dataclass as a dict of the fields that differ from their defaults (nested ones too): a field added to a
    spec later, at its default, leaves every earlier key as it was, so upgrading rtransfer reruns nothing."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING) or value != default:
                out[f.name] = _set_fields(value)
        return out
    if isinstance(obj, list | tuple):
        return [_set_fields(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _set_fields(v) for k, v in obj.items()}
    return obj


def _drop(content: dict, dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if rest:
        inner = content.get(head)
        for item in inner if isinstance(inner, list | tuple) else [inner]:
            if isinstance(item, dict):
                _drop(item, rest)
    else:
        content.pop(head, None)


@dataclass(frozen=True)
class EvalSpec(Spec):
    """A model on benchmarks into one run directory. Every evaluation of a study's model (final, checkpoints,
    the probes' reading of its answers) derives from one EvalSpec, so thinking and batch size cannot diverge."""

    kind: ClassVar[str] = "eval"
    keyed_out: ClassVar[tuple[str, ...]] = (
        "out",
        "logs",
        "model.source",
        *(f"engine.{p}" for p in ENGINE_PLACES),
        *(f"serve.{p}" for p in SERVE_PLACES),
    )
    model: ModelRef
    engine: EngineSpec  # engine.model is what is loaded (model.source, or a checkpoint's weights)
    suite: str  # a suite name or comma-separated benchmarks
    weights: str  # the key of what defines the weights (a training key, or the identity of a base)
    data_dir: str | None = None
    limit: int | None = None
    serve: ServeSpec | None = None  # a server the job starts for the model, then evaluates through (engine openai)
    logs: str = ""  # where a started server's log goes (DIR/logs)
    out: str = ""
    after: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepEvalSpec(Spec):
    """The kept checkpoints of one training run (DIR/steps/step-N), each evaluated as `template` says into
    DIR/evals/step-N, named `<model>@step-N`: the TI over training steps."""

    kind: ClassVar[str] = "steps"
    keyed_out: ClassVar[tuple[str, ...]] = (
        "out",
        "train_dir",
        *(f"template.{name}" for name in EvalSpec.keyed_out),
    )
    template: EvalSpec  # the model's final evaluation: the same engine settings and suite ([eval] checkpoint_limit)
    train_dir: str
    every: int
    out: str = ""  # DIR/evals
    after: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSpec(Spec):
    """One training run of a method from a base into a training directory."""

    kind: ClassVar[str] = "train"
    # Where the base and the data lie (their identities are keyed), and how the run executes: the launcher (its
    # process count is keyed, as `processes`: it sets the global batch) and the recipe's execution fields.
    keyed_out: ClassVar[tuple[str, ...]] = ("out", "base", "data", "model.source", "launch", "execution")
    model: ModelRef
    base: str  # the base's source, resolved (a path or hub id): named in the key by base_identity
    base_identity: dict[str, str]
    method: str  # a key of train.methods.METHODS
    recipe: dict[str, Any]  # what of the resolved recipe defines the weights (train.config.split_recipe)
    data: str | None  # traces (sft) or queries; None on a lab base: the lab's math split
    data_identity: dict[str, Any] = field(default_factory=dict)  # its content hash, hub revision or teacher's key
    teacher_traces: str | None = None  # the lab teacher's think / no-think traces (sft on the lab)
    keep_every: int = 0  # keep every N-th step's weights in DIR/steps/step-N for evaluation (0: none)
    launch: tuple[str, ...] = ()  # a launcher prefix: run as [*launch, "-m", "rtransfer.jobs", SPEC.json]
    processes: int = 1  # training processes (the launcher's count): batch_size is per process
    execution: dict[str, Any] = field(default_factory=dict)  # the recipe's execution fields (save, log, vLLM)
    out: str = ""
    after: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TeacherSpec(Spec):
    """A teacher model's solutions to the training queries, rejection-sampled (train.teacher.run_teacher) into
    DIR/traces/<name>.jsonl: the data of the off-policy SFT arms that say `data = "teacher:<name>"`."""

    kind: ClassVar[str] = "teacher"
    keyed_out: ClassVar[tuple[str, ...]] = (
        "out",
        "logs",
        "queries",
        "model.source",
        *(f"engine.{p}" for p in ENGINE_PLACES),
        *(f"serve.{p}" for p in SERVE_PLACES),
    )
    model: ModelRef  # role "reference": the teacher (its source a hub id, a directory or a server's model name)
    identity: dict[str, Any]  # what names the teacher's weights (a directory's fingerprint, a hub id and revision)
    engine: EngineSpec  # how it answers (chat thinking, dtype, placement); its servers when [eval.serve] starts one
    queries: str | None  # the training queries (None on a lab base: the lab's math split)
    queries_identity: dict[str, Any]
    samples: int  # solutions drawn per query
    max_new_tokens: int  # the answer budget (truncated answers are rejected)
    temperature: float
    top_p: float = 1.0
    max_queries: int = 0  # the first N queries drawn with the seed (0: all)
    seed: int = 0
    serve: ServeSpec | None = None  # a server the job starts for the teacher (None: engine as it is)
    logs: str = ""  # where a started server's log goes (DIR/logs)
    out: str = ""  # DIR/traces/<name>.jsonl (its records in <out>.run/)
    after: dict[str, str] = field(default_factory=dict)

    def outputs(self) -> list[str]:
        return [self.out, f"{self.out}.run"]


@dataclass(frozen=True)
class ProbeSpec(Spec):
    """Base vs one model: the latent shift and the token-level shift on the model's own eval answers; for a
    model trained here, its drift at every evaluated point (probes.drift) when settings["drift"] says so."""

    kind: ClassVar[str] = "probes"
    keyed_out: ClassVar[tuple[str, ...]] = (
        "out",
        "answers",
        "train_dir",
        "model.source",
        *(f"{engine}.{p}" for engine in ("engine", "base_engine") for p in ENGINE_PLACES),
    )
    model: ModelRef
    engine: EngineSpec  # the model's, as its evaluation has it (chat thinking, dtype, placement)
    base_engine: EngineSpec  # the base's, as its evaluation has it
    benchmarks: tuple[str, ...]
    answers: str  # the model's eval run directory (the token probe scores its answers)
    settings: dict[str, Any]  # study.config.ProbeConfig, as a dict
    data_dir: str | None = None
    train_dir: str | None = None  # a model trained here: its checkpoints (steps/) and their evaluations (evals/)
    queries: str | None = None  # the drift's training prompts (train.data.load_queries; None: the lab's math split)
    out: str = ""
    after: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompareSpec(Spec):
    """Scores, TIs and every comparison of the study (arm differences, seed spread, step curves), with the
    study's [ti] settings, computed once: scores.json, ti.json, comparisons.json."""

    kind: ClassVar[str] = "compare"
    keyed_out: ClassVar[tuple[str, ...]] = ("out", "models.source")
    models: tuple[ModelRef, ...]
    ti: dict[str, Any]  # study.config.TIConfig, as a dict
    survey: bool = False
    out: str = ""  # the study directory
    after: dict[str, str] = field(default_factory=dict)

    def outputs(self) -> list[str]:
        return [f"{self.out}/{n}" for n in ("scores.json", "ti.json", "comparisons.json")]


@dataclass(frozen=True)
class ReportSpec(Spec):
    """The study's report, rendered from its files."""

    kind: ClassVar[str] = "report"
    version: int
    out: str = ""  # the study directory
    after: dict[str, str] = field(default_factory=dict)

    def outputs(self) -> list[str]:
        return [f"{self.out}/{n}" for n in ("report.html", "report.md", "tables", "figures")]


SPECS: dict[str, type[Spec]] = {
    c.kind: c for c in (EvalSpec, StepEvalSpec, TrainSpec, TeacherSpec, ProbeSpec, CompareSpec, ReportSpec)
}


def from_json(data: dict[str, Any]) -> Spec:
    """A spec back from its to_json() (the kind names the class)."""
    data = dict(data)
    return _build(SPECS[data.pop("kind")], data)


def model_from_json(data: dict[str, Any]) -> ModelRef:
    """A ModelRef from a manifest's model entry (which may carry more: its files)."""
    return _build(ModelRef, {f.name: data[f.name] for f in dataclasses.fields(ModelRef) if f.name in data})


def _build(cls, data: dict[str, Any]):
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _value(hints[f.name], data[f.name])
    return cls(**values)


def _value(hint, value):
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if origin is tuple:
        (item, *_) = typing.get_args(hint) or (Any,)
        return tuple(_value(item, v) for v in value)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _value(inner[0], value) if len(inner) == 1 else value
    return value
