"""vLLM placement for the sampling methods: the recipe's vLLM fields as TRL arguments, and a dry-run check that a
colocated vLLM engine can hold the model at all.

Why a check of our own: in colocate mode TRL starts one vLLM engine per `vllm_tensor_parallel_size` training
processes, inside them, and vLLM takes `vllm_gpu_memory_utilization` × the GPU's memory for the model's weights
and its KV cache. When that share cannot hold them, vLLM fails only after the training model has loaded, minutes
into a multi-GPU job ("No available memory for the cache blocks", or "max seq len ... larger than the maximum
number of tokens that can be stored in KV cache"). The check needs no weights: the base's config (a local folder,
or the local Hugging Face cache for a hub id; never a download) is instantiated on the `meta` device and its
parameters counted.

The estimate is a lower bound of what vLLM needs on each GPU, so that a refusal is certain:
  - weights: parameters × 2 bytes (vLLM serves bf16, also for an fp32 checkpoint) / tensor-parallel size
    (embeddings and the LM head are split too; norms, replicated, are negligible);
  - KV cache: one sequence of vLLM's context (vllm_max_model_length, else the model's max_position_embeddings),
    2 (K and V) × layers × KV heads per GPU (KV heads / TP, at least 1: vLLM replicates them beyond that)
    × head_dim × 2 bytes (bf16 cache), which vLLM requires to fit in the cache at start-up.
vLLM also needs activation memory (its profile run over 4,096 batched tokens, as TRL sets it) and CUDA graphs,
and the training process holds its own share of the GPU when vLLM starts; none of these are counted.

Use: `check_colocate(recipe, base)` in the dry run raises SizingError for settings that cannot work, and returns
a note when it could not check (no GPU memory known, no local config); `vllm_arguments(recipe)` goes into TRL's
GRPOConfig.
"""

import functools
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rtransfer.errors import first_line
from rtransfer.train.config import RecipeError, RolloutRecipe, SamplingRecipe

GIB = 2**30
SERVED_BYTES = 2  # bf16 weights and KV cache (vLLM's dtype "auto" for a bf16 or fp32 checkpoint)


class SizingError(RecipeError):
    pass


def vllm_arguments(recipe: RolloutRecipe) -> dict[str, Any]:
    """The recipe's vLLM fields as TRL GRPOConfig (or DistillationConfig) keyword arguments. The server URL and the
    context length are passed only when set, so that TRL's own defaults (host:port, the model's context) apply
    otherwise."""
    args: dict[str, Any] = {
        "use_vllm": recipe.use_vllm,
        "vllm_mode": recipe.vllm_mode,
        "vllm_gpu_memory_utilization": recipe.vllm_gpu_memory_utilization,
        "vllm_tensor_parallel_size": recipe.vllm_tensor_parallel_size,
        "vllm_enable_sleep_mode": recipe.vllm_enable_sleep_mode,
    }
    if isinstance(recipe, SamplingRecipe):  # GRPO's machinery only; distillation samples without log-probs
        args["vllm_importance_sampling_correction"] = recipe.vllm_importance_sampling_correction
    if recipe.vllm_server_base_url:
        args["vllm_server_base_url"] = recipe.vllm_server_base_url
    if recipe.vllm_max_model_length > 0:
        args["vllm_max_model_length"] = recipe.vllm_max_model_length
    return args


@dataclass(frozen=True)
class ModelShape:
    """What the sizing needs from a model's config, read without its weights."""

    name: str
    parameters: int
    layers: int | None  # None: the config does not say (the KV cache is then not estimated)
    attention_heads: int | None
    kv_heads: int | None
    head_dim: int | None
    max_positions: int | None  # the context vLLM derives when vllm_max_model_length is 0


@dataclass(frozen=True)
class Estimate:
    """A colocated vLLM engine's memory on each GPU, in GiB (see the module docstring for what is counted)."""

    budget_gib: float  # vllm_gpu_memory_utilization × GPU memory
    gpu_gib: float
    gpu_source: str  # where the GPU memory came from
    weights_gib: float  # bf16 weights / tensor-parallel size
    context: int | None  # tokens of one vLLM sequence
    kv_gib: float  # the KV cache of one `context`-token sequence (0 when the config does not say)

    @property
    def needed_gib(self) -> float:
        return self.weights_gib + self.kv_gib

    @property
    def sequences(self) -> int:
        """Full-context sequences the KV cache could hold at once, at most (activations are not counted)."""
        return max(0, int((self.budget_gib - self.weights_gib) // self.kv_gib)) if self.kv_gib else 0

    def describe(self) -> dict[str, Any]:
        """For the dry run's output."""
        rounded = {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(self).items()}
        return {**rounded, "needed_gib": round(self.needed_gib, 2), "max_length_sequences": self.sequences}


def check_colocate(recipe: RolloutRecipe, base: str, processes: int | None = None) -> str | None:
    """The dry run's check: raises SizingError when a colocated vLLM cannot hold `base` (or its tensor-parallel
    size does not divide the processes); returns colocate_note's "... not checked: ..." line when it cannot tell,
    else None."""
    problem = colocate_problem(recipe, base, processes)
    if problem:
        raise SizingError(problem)
    return colocate_note(recipe, base)


def colocate_problem(recipe: RolloutRecipe, base: str, processes: int | None = None) -> str | None:
    """Why a colocated vLLM engine cannot run `base` with the recipe's settings (one line), or None when it can or
    when it cannot be told (`colocate_note` says why). `processes`: the training processes, by default WORLD_SIZE
    when the launcher set it."""
    if not _colocated(recipe):
        return None
    tp = recipe.vllm_tensor_parallel_size
    processes = processes if processes is not None else _launched_processes()
    if processes is not None and processes % tp:
        # TRL's VLLMGeneration groups consecutive ranks into engines of `tp`: every rank must be in one.
        return f"vllm_tensor_parallel_size {tp} does not divide the {processes} training processes (TRL requires it)"
    shape = model_shape(base)
    if shape is None:
        return None
    if shape.attention_heads and shape.attention_heads % tp:
        return f"vllm_tensor_parallel_size {tp} does not divide {shape.name}'s {shape.attention_heads} attention heads"
    if recipe.vllm_max_model_length and shape.max_positions and recipe.vllm_max_model_length > shape.max_positions:
        return (
            f"vllm_max_model_length {recipe.vllm_max_model_length} exceeds {shape.name}'s context of "
            f"{shape.max_positions} tokens (vLLM refuses it)"
        )
    estimate = colocate_estimate(recipe, base)
    if estimate is None or estimate.budget_gib >= estimate.needed_gib:
        return None
    kv = (
        f" plus one {estimate.context}-token sequence's KV cache ({estimate.kv_gib:.1f} GiB)" if estimate.kv_gib else ""
    )
    return (
        f"vLLM colocate: {recipe.vllm_gpu_memory_utilization:g} × {round(estimate.gpu_gib, 1):g} GiB = "
        f"{estimate.budget_gib:.1f} GiB cannot hold {shape.name}'s {estimate.weights_gib * tp:.1f} GiB of bf16 "
        f"weights / tensor parallel {tp}{kv}: at least {estimate.needed_gib:.1f} GiB per GPU; raise "
        'vllm_gpu_memory_utilization or vllm_tensor_parallel_size, or use vllm_mode = "server"'
    )


def colocate_note(recipe: RolloutRecipe, base: str) -> str | None:
    """Why the colocate memory check could not run (no GPU memory known, no local config of `base`), or None when
    it ran or does not apply."""
    if not _colocated(recipe):
        return None
    if gpu_memory(recipe) is None:
        return "vLLM colocate memory not checked: no GPU here; give gpu_memory_gib (the training GPUs' memory)"
    if model_shape(base) is None:
        why = _config_error(base)
        if why:
            return f"vLLM colocate memory not checked: no local config of {base} ({why})"
        return f"vLLM colocate memory not checked: transformers cannot build {base} from its config"
    return None


def colocate_estimate(recipe: RolloutRecipe, base: str) -> Estimate | None:
    """The memory a colocated vLLM engine needs on each GPU next to its budget, or None when not colocated or
    when the GPU memory or the base's config is not known."""
    gpu = gpu_memory(recipe)
    shape = model_shape(base)
    if not _colocated(recipe) or gpu is None or shape is None:
        return None
    gpu_gib, source = gpu
    tp = recipe.vllm_tensor_parallel_size
    context = recipe.vllm_max_model_length or shape.max_positions
    kv_gib = 0.0
    if context and shape.layers and shape.kv_heads and shape.head_dim:
        per_token = 2 * shape.layers * math.ceil(shape.kv_heads / tp) * shape.head_dim * SERVED_BYTES
        kv_gib = context * per_token / GIB
    return Estimate(
        budget_gib=recipe.vllm_gpu_memory_utilization * gpu_gib,
        gpu_gib=gpu_gib,
        gpu_source=source,
        weights_gib=shape.parameters * SERVED_BYTES / tp / GIB,
        context=context,
        kv_gib=kv_gib,
    )


def gpu_memory(recipe: RolloutRecipe) -> tuple[float, str] | None:
    """Each training GPU's memory in GiB and where it came from: the recipe's gpu_memory_gib (what the run is
    planned for, also in a dry run on a machine without that GPU), else this machine's first GPU, else None."""
    if recipe.gpu_memory_gib > 0:
        return recipe.gpu_memory_gib, "gpu_memory_gib"
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return props.total_memory / GIB, props.name


def model_shape(base: str) -> ModelShape | None:
    """The sizes of `base` (a model folder, or a hub id in the local cache) from its config alone, or None when
    there is no local config or it cannot be instantiated."""
    return _model_shape(str(Path(base).expanduser()) if Path(base).expanduser().exists() else base)


@functools.cache
def _model_shape(base: str) -> ModelShape | None:
    config = _config(base)
    if config is None:
        return None
    try:
        parameters = count_parameters(config)
    except Exception:  # an architecture transformers cannot build: not checked, as without a config
        return None
    text = config.get_text_config()
    heads = getattr(text, "num_attention_heads", None)
    hidden = getattr(text, "hidden_size", None)
    head_dim = getattr(text, "head_dim", None) or (hidden // heads if hidden and heads else None)
    return ModelShape(
        name=Path(base.rstrip("/")).name,
        parameters=parameters,
        layers=getattr(text, "num_hidden_layers", None),
        attention_heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        max_positions=_context(text),
    )


def count_parameters(config) -> int:
    """The parameters of a causal LM built from `config` on the meta device: no memory, no weights read. Tied
    embeddings count once, as vLLM stores them once."""
    import torch
    from transformers import AutoModelForCausalLM

    # torch's meta device, not accelerate's init_empty_weights: under transformers 5 the latter leaves tied
    # embeddings untied, and Qwen3-0.6B would count 752M parameters instead of 596M.
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def _context(text_config) -> int | None:
    """The context vLLM derives from a config: max_position_embeddings, times a RoPE scaling factor if any."""
    positions = getattr(text_config, "max_position_embeddings", None)
    if positions is None:
        return None
    for name in ("rope_scaling", "rope_parameters"):
        scaling = getattr(text_config, name, None) or {}
        if isinstance(scaling, dict) and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
            return int(positions * scaling.get("factor", 1))
    return positions


def _config(base: str):
    try:
        return _load_config(base)
    except Exception:  # no local copy, a malformed file, an unknown architecture: _config_error says which
        return None


def _config_error(base: str) -> str | None:
    try:
        _load_config(base)
    except Exception as err:
        if isinstance(err, OSError) and not Path(base).expanduser().exists():  # not "couldn't connect to the hub"
            return "neither a local folder nor in the local Hugging Face cache"
        return first_line(err)
    return None


def _load_config(base: str):
    from transformers import AutoConfig

    # The local cache only: a dry run never downloads.
    return AutoConfig.from_pretrained(base, local_files_only=True)


def _colocated(recipe: RolloutRecipe) -> bool:
    return recipe.use_vllm and recipe.vllm_mode == "colocate"


def _launched_processes() -> int | None:
    """The process count `accelerate launch` and `torchrun` set (train/ranks.py); None in a plain process, where
    the launch to come is not known."""
    size = os.environ.get("WORLD_SIZE")
    return int(size) if size else None
