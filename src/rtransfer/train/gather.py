"""The final model of a sharded run, gathered onto the main process and written in the base model's dtype.

Why not `model.save_pretrained(path)`: under DeepSpeed ZeRO-3 every parameter's `.data` is an empty tensor (the
shard lives in `ds_tensor`), so it writes size-0 tensors; under FSDP2 the parameters are DTensor shards, and
transformers 5.24 raises in safetensors on rank 0 after config.json is written (a directory with no weights).

Why not `trainer.save_model(path)` either: it writes what it holds as is. Under DDP that is the fp32 weights the
recipes train, so a bf16 base would give fp32 arms (twice the disk, and `vllm serve` then picks fp16); under FSDP2
with SHARDED_STATE_DICT (data/accelerate/fsdp2.yaml) it writes no weights at all. Casting to the base's dtype needs
the gathered dict in hand before the write.

What each sharding takes (`full_state_dict`, a collective: every rank calls it):
- DeepSpeed (accelerate's distributed type DEEPSPEED): `Accelerator.get_state_dict(engine)`. Under ZeRO-3 that is
  DeepSpeed's `_zero3_consolidated_16bit_state_dict`: layer by layer onto rank 0, 16-bit, CPU, shared weights kept
  shared, None on the other ranks. It needs `zero3_save_16bit_model: true` (data/accelerate/zero3.yaml).
- FSDP2, or any model with DTensor parameters: torch's `get_model_state_dict(full_state_dict=True,
  cpu_offload=True)`, as accelerate does for FSDP2: full tensors on rank 0, an empty dict elsewhere. The
  parameters are looked at directly: on a CPU-only machine the Trainer's accelerator reports MULTI_CPU, and a model
  sharded with `fully_shard` by hand is invisible to it.
- anything else (one process, DDP, ZeRO-1/2 without accelerate): the unwrapped model's own state dict.
"""

import copy
import json
from collections import defaultdict
from pathlib import Path

import torch

from rtransfer.errors import RtransferError


class GatherError(RtransferError):
    """A sharded model whose full weights this configuration cannot gather."""


def full_state_dict(model, accelerator=None) -> dict[str, torch.Tensor] | None:
    """The full, unsharded state dict as CPU tensors on the main process, None on every other process. Every
    process must call it (the gathers are collectives). `model` may be the wrapped or the unwrapped model."""
    if accelerator is not None and _is_deepspeed(accelerator):
        state = _deepspeed_state_dict(model, accelerator)
    elif _has_dtensors(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        state = unwrap(model).state_dict()
    if not _is_main():
        return None
    return _on_cpu(_share_tied(state, unwrap(model)))


def save_pretrained_full(model, state_dict: dict[str, torch.Tensor], path, dtype: torch.dtype) -> None:
    """Write the HF model directory at `path` from a gathered `state_dict`: floating tensors cast to `dtype`,
    config.json saying that dtype, generation_config.json beside it. Main process only."""
    model = unwrap(model)
    model.save_pretrained(path, state_dict=_cast(state_dict, dtype), is_main_process=True)
    # save_pretrained writes the live parameters' dtype into config.json; the weights written are `dtype`.
    config = copy.deepcopy(model.config)
    config.dtype = dtype_name(dtype)
    config.save_pretrained(path)


def base_dtype(base: str) -> torch.dtype:
    """The dtype the base model's config.json declares (`dtype`, or the older `torch_dtype`), float32 when it
    declares none. Reads no weights; a hub id is looked up in the local cache only, and is float32 when absent."""
    config = _config_file(base)
    if config is None:
        return torch.float32
    data = json.loads(config.read_text())
    name = data.get("dtype") or data.get("torch_dtype")
    dtype = getattr(torch, name.removeprefix("torch."), None) if isinstance(name, str) else None
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def unwrap(model):
    """The transformers model inside DDP, a DeepSpeed engine or torch.compile (FSDP2 shards in place)."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_torch_compile=False)


def _is_deepspeed(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def _deepspeed_state_dict(model, accelerator) -> dict[str, torch.Tensor] | None:
    # accelerate gathers through the engine (it asks it zero_gather_16bit_weights_on_model_save()); the Trainer's
    # `model` is the module inside it, `model_wrapped` the engine.
    engine = model if hasattr(model, "zero_gather_16bit_weights_on_model_save") else _engine_of(model, accelerator)
    if accelerator.state.deepspeed_plugin.zero_stage == 3 and not engine.zero_gather_16bit_weights_on_model_save():
        raise GatherError(
            "DeepSpeed ZeRO-3 cannot write the final model: set zero3_save_16bit_model: true in the accelerate "
            "config (as data/accelerate/zero3.yaml does)"
        )
    return accelerator.get_state_dict(engine)


def _engine_of(model, accelerator):
    wrapped = accelerator.deepspeed_engine_wrapped
    if wrapped is None or wrapped.engine.module is not model:
        raise RuntimeError("this model was not prepared by the accelerator's DeepSpeed engine")
    return wrapped.engine


def _has_dtensors(model) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def _is_main() -> bool:
    # torch's rank, not the accelerator's: the gathers put their result on torch's rank 0, and an Accelerator built
    # without cpu=True in a CPU process group reports DistributedType.NO and is_main_process on every rank.
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def _share_tied(state: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """Tied parameters (lm_head and the embeddings) as one tensor under each of their names, which is how
    save_pretrained recognises them and writes only one. torch's full-state-dict gather returns separate copies."""
    names = defaultdict(list)
    for name, param in model.named_parameters(remove_duplicate=False):
        names[id(param)].append(name)
    state = dict(state)
    for group in names.values():
        present = [name for name in group if name in state]
        for name in present[1:]:
            state[name] = state[present[0]]
    return state


def _on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return _map_shared(state, lambda t: t.detach().cpu())


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return _map_shared(state, lambda t: t.to(dtype) if t.is_floating_point() else t)


def _map_shared(state: dict[str, torch.Tensor], fn) -> dict[str, torch.Tensor]:
    # One result per tensor object, so that names sharing a tensor still share one after the map.
    done: dict[int, torch.Tensor] = {}
    for tensor in state.values():
        if id(tensor) not in done:
            done[id(tensor)] = fn(tensor)
    return {name: done[id(tensor)] for name, tensor in state.items()}


def _config_file(base: str) -> Path | None:
    local = Path(base).expanduser()
    if local.exists():
        found = local / "config.json"
        return found if found.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(base, "config.json")
    except ValueError:  # not a hub id either (HFValidationError)
        return None
    return Path(cached) if isinstance(cached, str) else None
