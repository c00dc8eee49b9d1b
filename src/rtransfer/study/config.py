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
class EvalConfig:
    suite: str = "lab"  # a suite (lab, paper, ...) or comma-separated benchmark names
    data_dir: str = ""  # local benchmark files ("" : the packaged lab data / the hub)
    limit: int = 0  # only the first N documents per benchmark (0: all)
    batch_size: int = 64  # prompts per generate() call (hf engine)
    dtype: str = "auto"  # hf engine: auto, bfloat16, float16, float32
    device_map: str = ""  # hf engine: "auto" spreads a large model over the GPUs ("" : one device)
    eval_every: int = 0  # also evaluate every N steps' checkpoint (a multiple of save_every; 0: never)
    # OpenAI-compatible servers per model name (vLLM, SGLang); a model without an entry runs in process (hf).
    servers: dict[str, list[str]] = field(default_factory=dict)
    api_key_env: str = ""  # the environment variable that holds the servers' key


@dataclass
class ProbeConfig:
    latent: bool = True  # PCA shift d of hidden states, base vs each arm
    tokens: bool = True  # KL and rank shift on each arm's own answers (from its eval records)
    benchmarks: list[str] = field(default_factory=list)  # [] : the evaluated benchmarks
    samples: int = 50  # the first N documents per benchmark
    bootstrap: int = 1000  # replicates for the probes' CIs
    noise_floor: bool = True  # the same measures against a rounded copy of the base


@dataclass
class StudyConfig:
    name: str = "lab"
    base: str = "lab"  # the base model: "lab", "lab:quick", a local directory or a hub id
    recipe: str = "lab"  # the recipe file or shipped recipe name every arm uses unless it names its own
    seeds: int = 1  # training seeds per arm (0, 1, ... N-1); with N > 1 models are named <arm>-s<seed>
    arms: list[Arm] = field(default_factory=list)
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
            values[key] = _dataclass(SECTIONS[key], value, f"{where}: [{key}]")
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
    is appended to every arm of that method, so the quick study trains the same arms for a few steps."""
    table = dict(table)
    per_method = table.pop("set", {})
    if not isinstance(per_method, dict) or any(m not in METHODS for m in per_method):
        raise StudyConfigError(f"{where}: [quick.set] maps a method ({', '.join(METHODS)}) to FIELD=VALUE lists")
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key in SECTIONS:
            current = asdict(getattr(config, key))
            changes[key] = _dataclass(SECTIONS[key], {**current, **value}, f"{where}: [quick.{key}]")
        else:
            changes.update(_checked(StudyConfig, {key: value}, f"{where}: [quick]"))
    arms = [replace(a, set=[*a.set, *per_method.get(a.method, [])]) for a in config.arms]
    return replace(config, **changes, arms=arms, quick=True)


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
    known = {f.name for f in fields(cls)} - {"source", "arms", "models", *SECTIONS}
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
    if config.eval.eval_every and launched:
        # A kept step's weights are copied from its checkpoint folder, which ZeRO-3 and FSDP fill with shards, not a
        # model directory; which launches leave a loadable one is not checked here, so none is assumed.
        raise StudyConfigError(
            f"[eval] eval_every: arms trained through a launcher ({', '.join(launched)}) cannot evaluate checkpoints "
            "in training; evaluate their kept checkpoints with `rtransfer eval` afterwards"
        )
    if config.eval.limit < 0 or config.eval.batch_size < 1 or config.eval.eval_every < 0:
        raise StudyConfigError("[eval]: limit and eval_every must be >= 0, batch_size >= 1")
    if config.probes.samples < 1 or config.probes.bootstrap < 0:
        raise StudyConfigError("[probes]: samples must be >= 1 and bootstrap >= 0")
    if config.ti.bootstrap < 0:  # index, sigma and confidence: checked by TIConfig itself
        raise StudyConfigError("[ti]: bootstrap must be >= 0")
    unknown_servers = set(config.eval.servers) - {"base", *names}
    if unknown_servers:
        raise StudyConfigError(f"[eval.servers]: no model named {', '.join(sorted(unknown_servers))}")
