"""A study's configuration: one base, the arms trained from it (or, for a survey, the models to score), how they
are evaluated and probed, and the TI's bootstrap. Read from TOML or YAML, validated before anything runs.

Every field is documented in the dataclasses below and in the shipped configs (rtransfer/data/studies/). A
config's `[quick]` table holds the overrides `--quick` applies: a seconds-long smoke version of the same study.
"""

from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

from rtransfer.comparisons import Settings as TIConfig  # [ti]: what the compare stage computes with, declared once
from rtransfer.errors import RtransferError
from rtransfer.train.config import checked_fields, read_recipe_file
from rtransfer.train.methods import METHODS

TEACHER_DATA = "teacher:"  # an arm's `data = "teacher:<name>"`: the traces of that [[teachers]] entry
SURVEY_METHODS = ("base", "SFT", "RL", "reference")  # the paper's table: reference rows are shown, never compared


class StudyConfigError(RtransferError):
    pass


@dataclass
class Arm:
    """One training arm: a method on the base's math data."""

    name: str  # the arm's model name in every output (models/<name>, runs/<name>)
    method: str  # sft, onpolicy or grpo
    thinking: str | None = None  # sft on a lab base: the lab teacher's think ("on") or no-think ("off") traces
    recipe: str | None = None  # a recipe file or shipped recipe name; None: the study's `recipe`
    data: str | None = None  # traces (sft) or queries (onpolicy, grpo); None on a lab base: the lab's math split
    set: list[str] = field(default_factory=list)  # recipe overrides, FIELD=VALUE as `rtransfer train --set`
    launch: list[str] = field(default_factory=list)  # a launcher prefix, e.g. ["accelerate", "launch", ...]


@dataclass
class SurveyModel:
    """A model scored but not trained here (a survey): the paper's public checkpoints."""

    name: str  # its name in the outputs (the paper's table name)
    model: str  # hub id or local directory
    base: str = ""  # the name of the model it is compared with; "" for a base or a reference
    method: str = "base"  # base, SFT, RL or reference
    thinking: str | None = None  # the chat template's enable_thinking: on, off, or None (its default)


@dataclass
class Teacher:
    """A teacher model run by the study before the arms: its rejection-sampled solutions to the training queries,
    in DIR/traces/<name>.jsonl, are the data of the SFT arms that say `data = "teacher:<name>"`."""

    name: str
    model: str  # hub id, local directory or lab base
    thinking: str = "default"  # the chat template's enable_thinking when it answers: on, off or default
    queries: str | None = None  # the training queries (None on a lab base: the lab's math split)
    samples: int = 1  # solutions drawn per query (each kept when correct and finished)
    max_new_tokens: int = 0  # the answer budget; 0: the SFT recipe's max_length (a truncated answer is rejected)
    temperature: float = 0.0  # > 0 when samples > 1
    top_p: float = 1.0
    max_queries: int = 0  # the first N queries drawn with the seed (0: all)
    seed: int = 0
    servers: list[str] = field(default_factory=list)  # URLs of servers you run for it (else [eval.serve] / in process)


@dataclass
class ServeConfig:
    """[eval.serve]: servers the study starts, one per model (the teachers' too), evaluates through, then stops."""

    # The command, each part formatted with {model} {port} {host} {dtype} {context} {python} (the running
    # interpreter's bin directory), e.g. ["{python}/vllm", "serve", "{model}", "--port", "{port}", "--dtype",
    # "{dtype}", "--max-model-len={context}"] (a part naming {context} is left out when context is 0).
    # ["vllm"] and ["transformers"] name the shipped templates (engines/serve.py); [] : no servers started.
    command: list[str] = field(default_factory=list)
    parallel: int = 1  # servers at once (each on its own devices)
    devices: list[str] = field(default_factory=list)  # CUDA_VISIBLE_DEVICES per server slot, e.g. ["0,1", "2,3"]
    context: int = 0  # the servers' context (max model length); 0: each model's own
    startup_timeout: float = 1800.0  # seconds a server has to answer /v1/models


@dataclass
class EvalConfig:
    suite: str = "lab"  # a suite (lab, paper, ...) or comma-separated benchmark names
    data_dir: str = ""  # local benchmark files ("" : the packaged lab data / the hub)
    limit: int = 0  # only the first N documents per benchmark (0: all)
    batch_size: int = 64  # prompts per generate() call (hf engine)
    dtype: str = "auto"  # hf engine: auto, bfloat16, float16, float32
    device_map: str = ""  # hf engine: "auto" spreads a large model over the GPUs ("" : one device)
    eval_every: int = 0  # also evaluate every N steps' checkpoint (a multiple of save_every; 0: never)
    checkpoints: bool = False  # also evaluate every checkpoint each arm saves (at its own save_every); or eval_every
    # Checkpoints on the first N documents per benchmark only (0, or more than limit: as the final evaluations). The
    # TI over steps is then measured on those documents at every point, the final model's included (paired).
    checkpoint_limit: int = 0
    # OpenAI-compatible servers per model name (vLLM, SGLang); a model without an entry runs in process (hf).
    servers: dict[str, list[str]] = field(default_factory=dict)
    api_key_env: str = ""  # the environment variable that holds the servers' key
    serve: ServeConfig = field(default_factory=ServeConfig)  # servers started by the study


@dataclass
class ProbeConfig:
    latent: bool = True  # PCA shift d of hidden states, base vs each arm
    tokens: bool = True  # KL and rank shift on each arm's own answers (from its eval records)
    benchmarks: list[str] = field(default_factory=list)  # [] : the evaluated benchmarks
    samples: int = 50  # the first N documents per benchmark
    bootstrap: int = 1000  # replicates for the probes' CIs
    noise_floor: bool = True  # the same measures against a rounded copy of the base
    # The drift law (rtransfer.drift_law): each trained arm's drift from the base at every evaluated point (its
    # checkpoints and final model), forward KL on `drift_prompts` training prompts among the measures.
    drift: bool = True
    drift_prompts: int = 64
    # Documents per benchmark for the drift's reverse KL and latent d at each point: fewer than `samples`, since the
    # law needs many points more than precise ones (2 s a point on the lab instead of 7 at 50).
    drift_samples: int = 20


@dataclass
class StudyConfig:
    name: str = "lab"
    base: str = "lab"  # the base model: "lab", "lab:quick", a local directory or a hub id
    recipe: str = "lab"  # the recipe file or shipped recipe name every arm uses unless it names its own
    seeds: int = 1  # training seeds per arm (0, 1, ... N-1); with N > 1 models are named <arm>-s<seed>
    arms: list[Arm] = field(default_factory=list)
    teachers: list[Teacher] = field(default_factory=list)  # run before the arms that train on their traces
    models: list[SurveyModel] = field(default_factory=list)  # a survey: no arms, these models instead
    eval: EvalConfig = field(default_factory=EvalConfig)
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    ti: TIConfig = field(default_factory=TIConfig)
    # Training stages run at once, each in its own process on cores / train_jobs torch threads (arms trained in
    # this process only; launched arms run one at a time). Not part of any stage's key: a model trained on 1 or 2
    # threads is the same to the bit (measured on the lab arms, and tested).
    train_jobs: int = 1
    source: str = ""  # the file it was read from (informational)
    quick: bool = False  # the [quick] version (--quick): a smoke test, whatever the base; the report says so

    @property
    def survey(self) -> bool:
        return bool(self.models)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


SECTIONS = {"eval": EvalConfig, "probes": ProbeConfig, "ti": TIConfig}


def config_path(name: str | None) -> Path:
    """A shipped study config by name (lab, qwen3-0.6b, unireason, survey), or the given file."""
    shipped_dir = Path(str(files("rtransfer") / "data" / "studies"))
    shipped = shipped_dir / f"{name or 'lab'}.toml"
    if shipped.exists():
        return shipped
    path = Path(name)
    if not path.exists():
        known = sorted(p.stem for p in shipped_dir.glob("*.toml"))
        raise StudyConfigError(f"study config {name!r} is neither a file nor a shipped config ({', '.join(known)})")
    return path


def load_study(
    name: str | None = None, quick: bool = False, seeds: int | None = None, train_jobs: int | None = None
) -> StudyConfig:
    """The study config `name` (a shipped name or a file), with its [quick] overrides when `quick`."""
    path = config_path(name)
    data = read_recipe_file(path)
    quick_table = data.pop("quick", {})
    if not isinstance(quick_table, dict):
        raise StudyConfigError(f"{path}: [quick] must be a table")
    config = _build(data, str(path))
    if quick:
        config = _apply_quick(config, quick_table, str(path))
    if seeds is not None:
        config = replace(config, seeds=seeds)
    if train_jobs is not None:
        config = replace(config, train_jobs=train_jobs)
    validate(config)
    return config


def _build(data: dict[str, Any], where: str) -> StudyConfig:
    values: dict[str, Any] = {"source": where}
    for key, value in data.items():
        if key in SECTIONS:
            values[key] = _section(key, value, f"{where}: [{key}]")
        elif key == "teachers":
            values[key] = [
                _dataclass(Teacher, t, f"{where}: teachers[{i}]") for i, t in enumerate(_table_list(value, key))
            ]
        elif key == "arms":
            values[key] = [_dataclass(Arm, a, f"{where}: arms[{i}]") for i, a in enumerate(_table_list(value, key))]
        elif key == "models":
            values[key] = [
                _dataclass(SurveyModel, m, f"{where}: models[{i}]") for i, m in enumerate(_table_list(value, key))
            ]
        else:
            values.update(_checked(StudyConfig, {key: value}, where))
    return StudyConfig(**values)


def _apply_quick(config: StudyConfig, table: dict[str, Any], where: str) -> StudyConfig:
    """[quick]: top-level fields and sections replace the config's; `set` (a table of method → FIELD=VALUE list)
    is appended to every arm of that method, so the quick study trains the same arms for a few steps; `teachers`
    (a table of teacher fields) applies to every teacher."""
    table = dict(table)
    per_method = table.pop("set", {})
    teacher_values = _checked(Teacher, table.pop("teachers", {}), f"{where}: [quick.teachers]")
    if not isinstance(per_method, dict) or any(m not in METHODS for m in per_method):
        raise StudyConfigError(f"{where}: [quick.set] maps a method ({', '.join(METHODS)}) to FIELD=VALUE lists")
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key in SECTIONS:
            current = asdict(getattr(config, key))
            if key == "eval" and isinstance(value, dict) and isinstance(value.get("serve"), dict):
                value = {**value, "serve": {**current["serve"], **value["serve"]}}
            changes[key] = _section(key, {**current, **value}, f"{where}: [quick.{key}]")
        else:
            changes.update(_checked(StudyConfig, {key: value}, f"{where}: [quick]"))
    arms = [replace(a, set=[*a.set, *per_method.get(a.method, [])]) for a in config.arms]
    teachers = [replace(t, **teacher_values) for t in config.teachers]
    return replace(config, **changes, arms=arms, teachers=teachers, quick=True)


def _section(key: str, table: Any, where: str):
    """[eval], [probes] or [ti]; [eval.serve] is a table inside [eval]."""
    if key == "eval" and isinstance(table, dict) and "serve" in table:
        serve = _dataclass(ServeConfig, table["serve"], f"{where.removesuffix(']')}.serve]")
        return replace(_dataclass(EvalConfig, {k: v for k, v in table.items() if k != "serve"}, where), serve=serve)
    return _dataclass(SECTIONS[key], table, where)


def _table_list(value: Any, key: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise StudyConfigError(f"{key} must be a list of tables ([[{key}]] in TOML)")
    return value


def _dataclass(cls, table: Any, where: str):
    if not isinstance(table, dict):
        raise StudyConfigError(f"{where} must be a table")
    values = _checked(cls, table, where)
    missing = [f.name for f in fields(cls) if f.default is f.default_factory is MISSING and f.name not in values]
    if missing:
        raise StudyConfigError(f"{where}: missing {', '.join(missing)}")
    return cls(**values)


def _checked(cls, table: dict[str, Any], where: str) -> dict[str, Any]:
    """Known fields of the right type only; the sections and lists of tables are read by _build."""
    known = {f.name for f in fields(cls)} - {"source", "arms", "teachers", "models", "serve", *SECTIONS}
    return checked_fields(cls, table, where, StudyConfigError, known)


def validate(config: StudyConfig) -> None:
    """What cannot run, caught before a model loads."""
    if config.seeds < 1:
        raise StudyConfigError(f"seeds must be at least 1, not {config.seeds}")
    if config.train_jobs < 1:
        raise StudyConfigError(f"train_jobs must be at least 1, not {config.train_jobs}")
    if config.arms and config.models:
        raise StudyConfigError("a study has arms (trained here) or models (a survey), not both")
    if not config.arms and not config.models:
        raise StudyConfigError("a study needs arms to train or, for a survey, models to score")
    names = [a.name for a in config.arms] + [m.name for m in config.models]
    seen = {n for n in names if names.count(n) > 1}
    if seen or "base" in {a.name for a in config.arms}:
        raise StudyConfigError(f"model names must be unique and not 'base': {', '.join(sorted(seen)) or 'base'}")
    for arm in config.arms:
        if arm.method not in METHODS:
            raise StudyConfigError(f"arm {arm.name}: method {arm.method!r} (choose {', '.join(METHODS)})")
        if arm.thinking not in (None, "on", "off"):
            raise StudyConfigError(f"arm {arm.name}: thinking {arm.thinking!r} (choose on or off)")
    survey = {m.name: m for m in config.models}
    for m in config.models:
        if m.method not in SURVEY_METHODS:
            raise StudyConfigError(f"model {m.name}: method {m.method!r} (choose {', '.join(SURVEY_METHODS)})")
        if m.method in ("SFT", "RL") and m.base not in survey:
            raise StudyConfigError(f"model {m.name}: its base {m.base!r} is not one of the study's models")
    launched = [a.name for a in config.arms if a.launch]
    if config.eval.eval_every and config.eval.checkpoints:
        raise StudyConfigError("[eval]: eval_every (a fixed cadence) or checkpoints (each arm's own), not both")
    if (config.eval.eval_every or config.eval.checkpoints) and launched:
        # A kept step's weights are copied from its checkpoint folder, which ZeRO-3 and FSDP fill with shards, not a
        # model directory; which launches leave a loadable one is not checked here, so none is assumed.
        raise StudyConfigError(
            f"[eval] eval_every / checkpoints: arms trained through a launcher ({', '.join(launched)}) cannot "
            "evaluate checkpoints in training; evaluate their kept checkpoints with `rtransfer eval` afterwards"
        )
    if min(config.eval.limit, config.eval.eval_every, config.eval.checkpoint_limit) < 0 or config.eval.batch_size < 1:
        raise StudyConfigError("[eval]: limit, checkpoint_limit and eval_every must be >= 0, batch_size >= 1")
    probes = config.probes
    if min(probes.samples, probes.drift_prompts, probes.drift_samples) < 1 or probes.bootstrap < 0:
        raise StudyConfigError("[probes]: samples, drift_prompts and drift_samples must be >= 1, bootstrap >= 0")
    if config.ti.bootstrap < 0:  # index, sigma and confidence: checked by TIConfig itself
        raise StudyConfigError("[ti]: bootstrap must be >= 0")
    _validate_teachers(config)
    serve = config.eval.serve
    if serve.parallel < 1 or serve.context < 0 or serve.startup_timeout <= 0:
        raise StudyConfigError("[eval.serve]: parallel must be >= 1, context >= 0 and startup_timeout > 0")
    if serve.devices and len(serve.devices) < serve.parallel:
        raise StudyConfigError(
            f"[eval.serve]: {serve.parallel} servers at once need {serve.parallel} device groups, not {serve.devices}"
        )
    unknown_servers = set(config.eval.servers) - {"base", *names, *(t.name for t in config.teachers)}
    if unknown_servers:
        raise StudyConfigError(f"[eval.servers]: no model named {', '.join(sorted(unknown_servers))}")


def _validate_teachers(config: StudyConfig) -> None:
    teachers = {t.name: t for t in config.teachers}
    if len(teachers) < len(config.teachers):
        raise StudyConfigError("teacher names must be unique")
    for t in config.teachers:
        if t.thinking not in ("on", "off", "default"):
            raise StudyConfigError(f"teacher {t.name}: thinking {t.thinking!r} (choose on, off or default)")
        if t.samples < 1 or t.max_new_tokens < 0 or t.max_queries < 0 or t.temperature < 0:
            raise StudyConfigError(f"teacher {t.name}: samples >= 1, max_new_tokens, max_queries, temperature >= 0")
        if t.samples > 1 and t.temperature == 0:
            raise StudyConfigError(f"teacher {t.name}: {t.samples} samples per query at temperature 0 are one answer")
    for arm in config.arms:
        name = (arm.data or "").removeprefix(TEACHER_DATA)
        if arm.data and arm.data.startswith(TEACHER_DATA):
            if name not in teachers:
                known = ", ".join(teachers) or "none"
                raise StudyConfigError(
                    f"arm {arm.name}: data {arm.data!r} names no [[teachers]] entry (known: {known})"
                )
            if METHODS[arm.method].data != "traces":
                raise StudyConfigError(f"arm {arm.name}: a teacher's traces are SFT data, not {arm.method} queries")
