"""Loading a probe's models, and the bf16-rounded copy that serves as the probes' noise floor."""

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from rtransfer.engines.hf import HFEngine
from rtransfer.errors import DataError

# The probe CLI's short names, mapped to the engine's dtype names.
DTYPE_ALIASES = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16"}


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


@contextlib.contextmanager
def forward_mode() -> Iterator[None]:
    """The context of every probe forward pass: inference mode, and oneDNN off. With oneDNN on, torch 2.13's CPU
    build on 2 threads gave the padded texts of a batch other hidden states (3.6e-4 of their mean size; d moved in
    its 4th digit) in one to two fresh processes out of ten, while one thread, one text per batch and oneDNN off
    agreed bit for bit in every run (bench/probe_repeatability.py). MKL's own matrix products still do the work; the
    flag does nothing on CUDA."""
    import torch

    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        yield


def rounded_copy(model: Any) -> tuple[Any, str]:
    """A copy of `model` with every weight rounded to bfloat16 (kept in the model's dtype): the smallest change
    a checkpoint conversion makes, so a probe's value for (model, copy) is what numerics alone produce.

    A model already held in a 16-bit dtype is its own bf16 rounding; the note says so (the floor is then 0).
    """
    import torch

    if model.dtype in (torch.bfloat16, torch.float16):
        held = str(model.dtype).removeprefix("torch.")
        note = f"weights already {held}: the rounded copy is identical (floor 0); use --dtype fp32"
        return model, note
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.copy_(p.to(torch.bfloat16).to(p.dtype))
    return twin, "base vs its copy with weights rounded to bfloat16"


def same_vocabulary(a: Any, b: Any) -> None:
    """Token probes compare distributions token by token: both tokenizers must map ids to the same strings."""
    if a.get_vocab() != b.get_vocab():
        raise DataError("base and tuned tokenizers differ; token probes need the same vocabulary")
