"""Training recipes: one dataclass per method, every knob named and documented (TRL's style).

A recipe is loaded from a TOML or YAML file, then overridden on the command line with `--set FIELD=VALUE`. In the
file, fields at top level apply to every method and a `[sft]`/`[onpolicy]`/`[grpo]` table to its method (over the
top-level ones). Unknown tables and fields, a file with tables for other methods only, and values of the wrong type
are one-line errors before anything loads a model. `recipe_fields(method)` lists every field with its type, default
and help (the metadata below, the one source): `rtransfer train METHOD --help` prints it. The defaults are the lab
recipes; the paper's Qwen3-14B-Base and a small real-model recipe ship under rtransfer/data/recipes/.
"""

import dataclasses
import difflib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from importlib.resources import files
from pathlib import Path
from typing import Any

from rtransfer.errors import RtransferError, first_line


class RecipeError(RtransferError):
    pass


@dataclass
class Recipe:
    """What every method shares: the optimiser, the schedule, checkpoints, the seed."""

    lr: float = field(default=1e-4, metadata={"help": "peak learning rate (AdamW)"})
    scheduler: str = field(
        default="cosine", metadata={"help": "transformers lr_scheduler_type: cosine, linear, constant"}
    )
    warmup: float = field(default=0.1, metadata={"help": "warm-up: a ratio of the steps if < 1, else a step count"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    batch_size: int = field(default=16, metadata={"help": "sequences per device per optimiser step"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    max_steps: int = field(default=-1, metadata={"help": "optimiser steps; -1: from epochs (SFT)"})
    save_every: int = field(default=50, metadata={"help": "a checkpoint every N steps (a killed run resumes there)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept on disk"})
    log_every: int = field(default=5, metadata={"help": "a log.jsonl line every N steps, and one at the last step"})
    seed: int = field(default=0, metadata={"help": "data order, sampling and initial RNG state"})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (GPUs); the CPU trains in fp32"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for memory (large models)"})
    thinking: str = field(
        default="default",
        metadata={"help": "the chat template's enable_thinking: on, off, or default (the template's own)"},
    )
    max_queries: int = field(default=0, metadata={"help": "train on N queries or traces drawn with the seed (0: all)"})
    model_dtype: str = field(
        default="float32",
        metadata={
            "help": "the dtype the model is loaded in on a GPU: float32 (fp32 master weights; bf16 as autocast) or "
            "bfloat16 (ZeRO-3/FSDP keep their own fp32 master copy); the CPU always trains in float32"
        },
    )
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "transformers attention: sdpa, eager, flash_attention_2, ..."}
    )
    # Fixed, not the machine's or the schedule's: another thread count sums floating-point numbers in another order,
    # and on some CPUs (Intel Xeon, measured) that changes the trained weights; so an arm trained alone, two at once
    # or under a launcher comes out the same. 1: arms train side by side a core each (the lab's fastest schedule on
    # 2 cores) and a launched run wants one thread per process.
    threads: int = field(
        default=1, metadata={"help": "torch threads per training process on a CPU (ignored on a GPU); part of the key"}
    )


@dataclass
class SFTRecipe(Recipe):
    """Off-policy SFT on teacher traces: TRL's SFTTrainer, loss on the completion tokens only."""

    # Lab default 1e-3. The lab base gives the teacher's foreign tokens 15-24 nats each; at 1e-4, 250 steps left it
    # half-way (the trace's opening still at 3 nats) and broke its arithmetic on the way (lab math -42 points for the
    # no-think traces, docs/lab.md); at 1e-3 it learns the traces. Chosen on lab math alone.
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW)"})
    # Lab default 3: one pass over the think traces left lab math where it was (+0), three raised it by 35 points
    # (docs/lab.md); both SFT arms get the same recipe.
    epochs: float = field(default=3.0, metadata={"help": "passes over the traces (when max_steps is -1)"})
    max_length: int = field(
        default=1024, metadata={"help": "prompt + completion tokens; longer traces are dropped and counted"}
    )
    padding_free: bool = field(
        default=False,
        metadata={"help": "batches without padding (needs a flash-attention attn_implementation); no cross-talk"},
    )
    teacher_samples: int = field(default=1, metadata={"help": "traces drawn per query when the teacher runs first"})


@dataclass
class RolloutRecipe(Recipe):
    """What the methods that train on the policy's own samples share (on-policy SFT, GRPO, on-policy
    distillation): the budget, the sampling, and vLLM's placement (HF generate without it)."""

    batch_size: int = field(default=128, metadata={"help": "completions per device per step (prompts × rollouts)"})
    # Lab default: 50 steps, where the lab training reward has long levelled off (docs/training.md, "The RL budget").
    max_steps: int = field(default=50, metadata={"help": "optimiser steps"})
    temperature: float = field(default=1.0, metadata={"help": "rollout temperature"})
    top_p: float = field(default=1.0, metadata={"help": "rollout nucleus sampling"})
    max_completion_length: int = field(default=160, metadata={"help": "rollout budget in tokens"})
    use_vllm: bool = field(default=False, metadata={"help": "rollouts on vLLM (GPU): see docs/training.md"})
    vllm_mode: str = field(default="colocate", metadata={"help": "vLLM mode: colocate or server"})
    vllm_server_base_url: str = field(default="", metadata={"help": "server mode: the trl vllm-serve URL"})
    # Colocate sizing (train/sizing.py checks it in the dry run): vLLM takes gpu_memory_utilization × the GPU's
    # memory for its bf16 weights / tensor_parallel_size plus its KV cache, beside the training process.
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata={"help": "colocate: the share of each GPU's memory vLLM takes (weights + KV cache)"}
    )
    vllm_tensor_parallel_size: int = field(
        default=1, metadata={"help": "colocate: GPUs one vLLM engine spans (divides the process count)"}
    )
    vllm_enable_sleep_mode: bool = field(
        default=False,
        metadata={"help": "colocate: vLLM frees its weights and KV cache between generations, for the training step"},
    )
    vllm_max_model_length: int = field(
        default=0,
        metadata={"help": "vLLM's context: prompt budget + max_completion_length (0: the model's positions)"},
    )
    gpu_memory_gib: float = field(
        default=0.0,
        metadata={"help": "GPU memory per device the colocate check assumes (GiB); 0: the visible GPU's, if any"},
    )


@dataclass
class SamplingRecipe(RolloutRecipe):
    """What the methods that draw several samples per prompt and grade them share (on-policy SFT, GRPO): TRL's
    GRPO machinery draws `rollouts` completions per prompt, with HF generate, rtransfer's decoder or vLLM."""

    rollouts: int = field(default=8, metadata={"help": "completions per prompt (num_generations)"})
    steps_per_generation: int = field(
        default=1,
        metadata={
            "help": "micro-batches per generation batch (TRL: generation batch = batch_size × processes × this; "
            "equal to grad_accum, one optimiser step per generation)"
        },
    )
    sampler: str = field(
        default="trl",
        metadata={
            "help": "who draws the rollouts without vLLM: trl (its generate()) or rtransfer (engines/decode.py "
            "through TRL's rollout_func; one process or DDP)"
        },
    )
    vllm_importance_sampling_correction: bool = field(
        default=True,
        metadata={"help": "with vLLM: TRL's truncated importance sampling between vLLM's and the trainer's log-probs"},
    )


@dataclass
class OnPolicyRecipe(SamplingRecipe):
    """On-policy SFT: each step, the current weights sample `rollouts` answers per prompt, the math grader keeps the
    correct, finished ones, and one SFT step trains on them (TRL's GRPO machinery, advantage = kept ∈ {0, 1})."""

    # Lab defaults: fresh samples before every step (the most on-policy schedule), 32 prompts × 4 samples, as the
    # first prototype that raised lab math; chosen on the math gain alone (docs/training.md).
    rollouts: int = field(default=4, metadata={"help": "answers sampled per prompt (num_generations)"})


@dataclass
class GRPORecipe(SamplingRecipe):
    """GRPO with the grader's correctness as the reward: TRL's GRPOTrainer."""

    # Lab defaults: 16 prompts × 8 rollouts per step as the first prototype.
    beta: float = field(default=0.0, metadata={"help": "KL coefficient; 0 loads no reference model"})
    epsilon: float = field(default=0.2, metadata={"help": "lower clip range ε"})
    epsilon_high: float = field(default=0.28, metadata={"help": "upper clip range ε_high (DAPO's clip-higher)"})
    loss_type: str = field(
        default="dapo", metadata={"help": "loss aggregation: dapo (token mean), grpo, dr_grpo, bnpo, cispo"}
    )
    scale_rewards: str = field(default="group", metadata={"help": "advantage scaling: group, batch or none"})
    num_iterations: int = field(default=1, metadata={"help": "policy updates per generation batch (μ)"})
    mask_truncated_completions: bool = field(default=False, metadata={"help": "drop unfinished rollouts from the loss"})


@dataclass
class DistillRecipe(RolloutRecipe):
    """On-policy distillation (Agarwal et al. 2306.13649, "GKD"): each step the student samples one answer per
    prompt and learns the teacher's next-token distribution at every token of it (TRL's DistillationTrainer)."""

    # Lab defaults: the RL arms' budget (50 steps, lr 1e-4, completions of 160 tokens) and their 128 completions a
    # step, one per prompt; chosen before any distillation run, so that the on-policy arms differ in their signal.
    batch_size: int = field(default=128, metadata={"help": "prompts per device per step, one completion each"})
    teacher: str = field(
        default="lab",
        metadata={
            "help": "the teacher: a model dir or hub id with the student's vocabulary, or lab (the lab teacher "
            "model of a lab base: rtransfer lab build --teacher)"
        },
    )
    beta: float = field(
        default=1.0,
        metadata={"help": "the divergence: 1 reverse KL(student||teacher), 0 forward KL, in between generalized JSD"},
    )


RECIPES: dict[str, type[Recipe]] = {
    "sft": SFTRecipe,
    "onpolicy": OnPolicyRecipe,
    "grpo": GRPORecipe,
    "opd": DistillRecipe,
}
THINKING = {"on": True, "off": False, "default": None}


def recipe_path(name: str) -> Path:
    """A shipped recipe file by name (lab, qwen3-0.6b, unireason), or the given path."""
    shipped = Path(str(files("rtransfer") / "data" / "recipes" / f"{name}.toml"))
    if shipped.exists():
        return shipped
    path = Path(name)
    if not path.exists():
        known = sorted(p.stem for p in shipped.parent.glob("*.toml"))
        raise RecipeError(f"recipe {name!r} is neither a file nor a shipped recipe ({', '.join(known)})")
    return path


def read_recipe_file(path: Path) -> dict[str, Any]:
    """The raw tables of a TOML or YAML recipe file."""
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text()) or {}
        else:
            data = tomllib.loads(path.read_text())
    except Exception as err:  # a syntax error, whatever the parser: one line naming the file
        raise RecipeError(f"{path}: cannot read the recipe: {first_line(err)}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe file is a table of fields")
    return data


def load_recipe(method: str, path: Path | None = None, overrides: list[str] = ()) -> Recipe:
    """The recipe of `method`: its defaults, then the file's top-level fields and `[method]` table, then `--set`
    overrides."""
    cls = RECIPES[method]
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_file_values(method, read_recipe_file(path), str(path)))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise RecipeError(f"--set {item!r}: expected FIELD=VALUE")
        values.update(_checked(cls, {key.strip(): _parse_value(text)}, "--set"))
    recipe = cls(**values)
    validate(recipe)
    return recipe


def _file_values(method: str, data: dict[str, Any], where: str) -> dict[str, Any]:
    """The fields a recipe file gives `method`: top-level ones, then its table's. A table that names no method
    (`[SFT]`, `[train]`) would otherwise be skipped without a word and the defaults trained."""
    # A YAML `sft:` with every field commented out is an empty table, not a field named sft.
    tables = {k: v or {} for k, v in data.items() if isinstance(v, dict) or (k in RECIPES and v is None)}
    known = [f"[{m}]" for m in RECIPES]
    for name in tables:
        if name not in RECIPES:
            close = _close(name, RECIPES)
            hint = f"; did you mean [{close}]?" if close else ""
            raise RecipeError(f"{where}: unknown table [{name}] (known: {', '.join(known)}){hint}")
    top = {k: v for k, v in data.items() if k not in tables}
    if tables and method not in tables and not top:
        present = ", ".join(f"[{m}]" for m in tables)
        raise RecipeError(f"{where}: no [{method}] table (the file has {present}); add one, or fields at top level")
    cls = RECIPES[method]
    values = _checked(cls, top, where)
    values.update(_checked(cls, tables.get(method, {}), f"{where} [{method}]"))
    return values


def _close(name, known) -> str | None:
    """The known name that `name` differs from by case only, else one close to it (a typo), else None."""
    same = [k for k in known if k.lower() == str(name).lower()]
    close = same or difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.8)
    return close[0] if close else None


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"true": True, "false": False}.get(text.lower(), text)


def _checked(cls: type[Recipe], table: dict[str, Any], where: str) -> dict[str, Any]:
    return checked_fields(cls, table, where, RecipeError, what=f"{cls.__name__} field")


def checked_fields(
    cls, table: dict[str, Any], where: str, error: type[Exception], known: set[str] | None = None, what: str = "field"
) -> dict[str, Any]:
    """The entries of a TOML/YAML table for dataclass `cls`: known fields (`known`, default all) of the right type
    only, else one-line `error`s. An int is accepted where a float is asked; a list must hold strings. Recipes
    and study configs both read their files through it."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)} if known is None else known
    out = {}
    for key, value in table.items():
        if key not in known:
            close = _close(key, sorted(known))
            hint = f"; did you mean {close!r}?" if close else ""
            raise error(f"{where}: unknown {what} {key!r} (known: {', '.join(sorted(known))}){hint}")
        allowed = _allowed(hints[key])
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise error(f"{where}: {key} = {value!r} is not a {' or '.join(t.__name__ for t in allowed)}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise error(f"{where}: {key} must be a list of strings")
        out[key] = value
    return out


def _allowed(kind) -> tuple[type, ...]:
    """The runtime types an annotation admits: `str | None` → (str, NoneType), `list[str]` → (list,)."""
    parts = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    return tuple(typing.get_origin(p) or p for p in parts)


def validate(recipe: Recipe) -> None:
    """Values that cannot train, caught before a model loads."""
    positive = [f.name for f in fields(recipe) if f.name in POSITIVE and getattr(recipe, f.name) <= 0]
    if positive:
        raise RecipeError(f"{type(recipe).__name__}: {', '.join(positive)} must be > 0")
    if recipe.thinking not in THINKING:
        raise RecipeError(f"thinking = {recipe.thinking!r}: choose on, off or default")
    if recipe.model_dtype not in ("float32", "bfloat16"):
        raise RecipeError(f"model_dtype = {recipe.model_dtype!r}: choose float32 or bfloat16")
    if isinstance(recipe, SFTRecipe) and recipe.padding_free and "flash" not in recipe.attn_implementation:
        # Padding-free batches are one flattened sequence: only flash attention keeps the traces apart.
        raise RecipeError(
            f"padding_free needs a flash-attention attn_implementation (e.g. flash_attention_2), "
            f"not {recipe.attn_implementation!r}"
        )
    if isinstance(recipe, OnPolicyRecipe) and recipe.steps_per_generation != recipe.grad_accum:
        raise RecipeError(
            f"on-policy SFT trains one pass per generation batch: steps_per_generation "
            f"({recipe.steps_per_generation}) must equal grad_accum ({recipe.grad_accum})"
        )
    if isinstance(recipe, GRPORecipe) and recipe.rollouts < 2:
        raise RecipeError("GRPO needs rollouts >= 2: a group of one has no advantage")
    if isinstance(recipe, DistillRecipe):
        if not 0 <= recipe.beta <= 1:
            raise RecipeError(f"beta = {recipe.beta}: 0 (forward KL) to 1 (reverse KL)")
        if not recipe.teacher.strip():
            raise RecipeError("teacher is empty: a model dir, a hub id, or lab")
    if isinstance(recipe, SamplingRecipe):
        generation = recipe.batch_size * recipe.steps_per_generation  # per process; TRL's own check
        if generation % recipe.rollouts:
            raise RecipeError(
                f"batch_size × steps_per_generation = {generation} is not a multiple of rollouts {recipe.rollouts}"
            )
        if isinstance(recipe, GRPORecipe) and recipe.loss_type not in ("dapo", "grpo", "dr_grpo", "bnpo", "cispo"):
            raise RecipeError(f"loss_type {recipe.loss_type!r}: choose dapo, grpo, dr_grpo, bnpo or cispo")
        if recipe.sampler not in SAMPLERS:
            raise RecipeError(f"sampler {recipe.sampler!r}: choose {' or '.join(SAMPLERS)}")
        if recipe.sampler == "rtransfer" and recipe.use_vllm:
            raise RecipeError('sampler = "rtransfer" and use_vllm = true: choose one to draw the rollouts')
    if isinstance(recipe, RolloutRecipe):
        if recipe.vllm_mode not in ("colocate", "server"):
            raise RecipeError(f"vllm_mode {recipe.vllm_mode!r}: choose colocate or server")
        if not 0 < recipe.vllm_gpu_memory_utilization <= 1:
            raise RecipeError(f"vllm_gpu_memory_utilization = {recipe.vllm_gpu_memory_utilization}: a share in (0, 1]")
        if recipe.vllm_max_model_length < 0 or recipe.gpu_memory_gib < 0:
            raise RecipeError("vllm_max_model_length and gpu_memory_gib must be >= 0 (0: the model's, the GPU's)")
        if 0 < recipe.vllm_max_model_length <= recipe.max_completion_length:
            # vLLM counts the prompt inside its context: no room would be left for one.
            raise RecipeError(
                f"vllm_max_model_length {recipe.vllm_max_model_length} leaves no room for a prompt beside "
                f"max_completion_length {recipe.max_completion_length}"
            )


SAMPLERS = ("trl", "rtransfer")
POSITIVE = {
    "lr",
    "batch_size",
    "grad_accum",
    "save_every",
    "threads",
    "keep_checkpoints",
    "log_every",
    "epochs",
    "max_length",
    "teacher_samples",
    "rollouts",
    "num_iterations",
    "steps_per_generation",
    "max_completion_length",
    "vllm_tensor_parallel_size",
}


# How a run is executed, not what it computes: a checkpoint's cadence, logging, vLLM's placement and memory,
# activation recomputation. A study's training key and a resumed run's check leave them out, so changing one
# never reruns (or refuses to resume) days of training. Every other field defines the weights.
EXECUTION_FIELDS = (
    "save_every",
    "keep_checkpoints",
    "log_every",
    "gradient_checkpointing",
    "vllm_mode",
    "vllm_server_base_url",
    "vllm_gpu_memory_utilization",
    "vllm_tensor_parallel_size",
    "vllm_enable_sleep_mode",
    "gpu_memory_gib",
)


def describe(recipe: Recipe) -> dict[str, Any]:
    return {"method": next(k for k, v in RECIPES.items() if v is type(recipe)), **dataclasses.asdict(recipe)}


def weights_part(description: dict[str, Any]) -> dict[str, Any]:
    """What of a recipe's description defines the trained weights (EXECUTION_FIELDS left out)."""
    return split_recipe(description)[0]


def split_recipe(description: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A recipe's description as (what defines the weights, how the run executes): `from_description` takes
    the two merged."""
    execution = {k: v for k, v in description.items() if k in EXECUTION_FIELDS}
    return {k: v for k, v in description.items() if k not in EXECUTION_FIELDS}, execution


def from_description(description: dict[str, Any]) -> Recipe:
    """The recipe `describe` described (a training spec carries its recipe so)."""
    values = dict(description)
    return RECIPES[values.pop("method")](**values)


@dataclass
class FieldInfo:
    name: str
    type: str  # float, int, str, bool
    default: Any
    help: str


def recipe_fields(method: str) -> list[FieldInfo]:
    """Every field of `method`'s recipe, in the dataclass's order, with the help text of its metadata: what
    `--set FIELD=VALUE` and a recipe file accept."""
    cls = RECIPES[method]
    hints = typing.get_type_hints(cls)
    return [
        FieldInfo(f.name, " or ".join(t.__name__ for t in _allowed(hints[f.name])), f.default, f.metadata["help"])
        for f in fields(cls)
    ]
