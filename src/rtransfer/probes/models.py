"""Loading a probe's two models as the study's evaluation loads them, in one compute dtype, and the bf16-rounded
copy that serves as the probes' noise floor."""

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from rtransfer.engines.hf import HFEngine
from rtransfer.errors import DataError

# The probe CLI's short names, mapped to the engine's dtype names.
DTYPE_ALIASES = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16"}
FLOOR_MEASURES = "the base against its own copy with every weight rounded to bfloat16, both computed in {dtype}"


def load_engine(
    model: str,
    *,
    dtype: str = "auto",
    device: str | None = None,
    device_map: str | None = None,
    thinking: bool | None = None,
):
    """An HFEngine (model, tokenizer, chat template and its thinking, device placement), so probes load models as
    `eval` does."""

    dtype = DTYPE_ALIASES.get(dtype, dtype)
    return HFEngine.load(model, dtype=dtype, device=device, device_map=device_map, thinking=thinking)


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def load_pair(
    base: str,
    tuned: str,
    *,
    dtype: str = "auto",
    device: str | None = None,
    device_map: str | None = None,
    thinking: bool | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """The base's and the tuned model's engines, loaded as the evaluation loads them (dtype, device or device map,
    chat thinking), then held in ONE compute dtype; and the record of it for the result file.

    With dtype "auto" each model comes in the dtype it was saved in, and a study's base (bf16) and its arms (often
    saved in fp32) then differ: d, CKA and KL would mix the update with fp32-vs-bf16 arithmetic. The pair is not
    refused, since the mismatch is only known once an arm is trained and a refusal would fail a study's probes
    after its training; the narrower model is cast to `torch.promote_types` of the two (bf16 with fp32: fp32), a
    lossless widening, so both run the same arithmetic and what differs is the weights. The record names both
    loaded dtypes, the compute dtype and which model was cast.
    """
    import torch

    kwargs = {"dtype": dtype, "device": device, "device_map": device_map, "thinking": thinking}
    b, t = load_engine(base, **kwargs), load_engine(tuned, **kwargs)
    loaded = {"base": dtype_name(b.model.dtype), "tuned": dtype_name(t.model.dtype)}
    common = torch.promote_types(b.model.dtype, t.model.dtype)
    cast = []
    for role, engine in (("base", b), ("tuned", t)):
        if engine.model.dtype != common:
            engine.model.to(common)  # a dtype-only move: placement (device map included) stays as loaded
            cast.append(role)
    record = {
        "requested": DTYPE_ALIASES.get(dtype, dtype),
        "loaded": loaded,
        "compute": dtype_name(common),
        "cast": cast,
        "placement": {"base": placement(b.model), "tuned": placement(t.model)},
    }
    return b, t, record


def placement(model: Any) -> dict[str, str] | str:
    """Where a loaded model's weights are: its device map (module → device) when it has one, else its device."""
    device_map = getattr(model, "hf_device_map", None)
    if device_map:
        return {k: str(v) for k, v in device_map.items()}
    return str(next(model.parameters()).device)


@contextlib.contextmanager
def forward_mode() -> Iterator[None]:
    """The context of every probe forward pass: inference mode, and oneDNN off. With oneDNN on, torch 2.13's CPU
    build on 2 threads gave the padded texts of a batch other hidden states (3.6e-4 of their mean size; d moved in
    its 4th digit) in one to two fresh processes out of ten, while one thread, one text per batch and oneDNN off
    agreed bit for bit in every run (bench/probe_repeatability.py). MKL's own matrix products still do the work; the
    flag does nothing on CUDA. Its TF32 and precision settings are left as they are (None): flags() would set
    allow_tf32, which on Intel CPUs prints a notice about Intel GPUs at every probe."""
    import torch

    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False, allow_tf32=None, fp32_precision=None):
        yield


def rounded_copy(model: Any) -> tuple[Any | None, str]:
    """A copy of `model` with every weight rounded to bfloat16 (kept in the model's dtype): the smallest change
    a checkpoint conversion makes, so a probe's value for (model, copy) is what numerics alone produce.

    Returns (copy, what the floor measures), or (None, why it is not measured): a model computed in bfloat16 is
    its own bf16 rounding, so the pair would be identical and its "floor" a 0 that measures nothing. float16 is
    rounded (bf16 keeps 3 fewer mantissa bits), so its floor is measured.
    """
    import torch

    if model.dtype == torch.bfloat16:
        return None, (
            "not measured: the models are computed in bfloat16, where the bf16-rounded copy is the base itself; "
            'load them in float32 to measure it (--dtype fp32, or [eval] dtype = "float32" in a study)'
        )
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.copy_(p.to(torch.bfloat16).to(p.dtype))
    return twin, FLOOR_MEASURES.format(dtype=dtype_name(model.dtype))


def same_vocabulary(a: Any, b: Any) -> None:
    """Token probes compare distributions token by token: both tokenizers must map ids to the same strings."""
    if a.get_vocab() != b.get_vocab():
        raise DataError("base and tuned tokenizers differ; token probes need the same vocabulary")
