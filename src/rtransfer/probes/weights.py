"""How sparse and how low-rank an update is: the tuned weights against the base's, tensor by tensor.

Per tensor: the share of weights left exactly unchanged; the share unchanged within the bf16 rounding of the base
(the rule: the tuned value rounds to the same bfloat16 number as the base's, so a change smaller than a bf16
checkpoint can hold counts as unchanged); the relative Frobenius norm ‖W_tuned − W_base‖ / ‖W_base‖; for matrices,
the update's numerical rank (numpy's matrix_rank rule on the float32 update: singular values above
σ_max · max(m, n) · eps_float32) and its effective rank exp(H(σ / Σσ)) (Roy & Vetterli, 2007). Then per layer
(`model.layers.<i>.`) and in total, weighted by the tensors' sizes.

Streaming: the safetensors files are opened lazily and one tensor of each model is in memory at a time, so a 14B
pair never needs both models loaded. The rank needs every singular value (torch.linalg.svdvals, on `device`: a
GPU takes a 14B model's 5120-wide matrices, a CPU is slow on them), so matrices above `rank_limit` elements are
skipped on the CPU's account, and the result says so: rank None with a `rank_note`, the limit and the count of
skipped matrices. A randomized low-rank SVD (torch.svd_lowrank) is no substitute: it finds the top singular values
only, while a full fine-tuning update is numerically full rank and the effective rank weighs every value.

A base stored in bf16 against an arm stored in fp32 (or the reverse) makes "unchanged exactly" a statement about
storage as much as training; the result names both models' stored dtypes and, when they differ, says that the
bf16 share is the comparable one.
"""

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from rtransfer.errors import DataError, first_line
from rtransfer.online import hub_offline, offline_message

RANK_LIMIT = 2**22  # elements: a 2048 × 2048 matrix; larger ones skip the SVD unless asked (or on a GPU, raised)
_LAYER = re.compile(r"\.layers\.(\d+)\.")


def weight_files(model: str) -> dict[str, Path]:
    """Tensor name → the safetensors file holding it, for a local model directory or a hub id (downloaded)."""
    root = Path(model).expanduser()
    if not root.exists():
        if model.startswith((".", "/", "~")):
            raise DataError(f"model path {model!r} does not exist")
        from huggingface_hub import snapshot_download

        offline = hub_offline()
        try:
            root = Path(
                snapshot_download(model, allow_patterns=["*.safetensors", "*.json"], local_files_only=bool(offline))
            )
        except (OSError, ValueError) as err:
            if offline:
                raise DataError(offline_message(model, offline)) from None
            raise DataError(f"cannot download {model!r}: {first_line(err)}") from None
    index = root / "model.safetensors.index.json"
    if index.exists():
        return {name: root / file for name, file in json.loads(index.read_text())["weight_map"].items()}
    single = root / "model.safetensors"
    if not single.exists():
        raise DataError(f"{root}: no model.safetensors (or index); the weight probe reads safetensors only")
    from safetensors import safe_open

    with safe_open(str(single), "pt") as f:
        return dict.fromkeys(f.keys(), single)


class _Reader:
    """One tensor at a time from a model's safetensors files (memory-mapped; each file opened once)."""

    def __init__(self, files: dict[str, Path]):
        self.files, self.handles = files, {}

    def __getitem__(self, name: str):
        from safetensors import safe_open

        path = self.files[name]
        if path not in self.handles:
            self.handles[path] = safe_open(str(path), "pt")
        return self.handles[path].get_tensor(name)


def tensor_drift(base, tuned, rank_limit: int = RANK_LIMIT, device: str | None = None) -> dict[str, Any]:
    """The drift figures of one tensor (torch tensors of the same shape), computed on `device` (default: where
    the tensors are). rank_limit 0: no limit."""
    import torch

    if base.shape != tuned.shape:
        raise DataError(f"shapes differ: {tuple(base.shape)} vs {tuple(tuned.shape)}")
    b, t = base.to(device=device, dtype=torch.float32), tuned.to(device=device, dtype=torch.float32)
    delta = t - b
    n = b.numel()
    norm_b = float(torch.linalg.vector_norm(b.double()))
    norm_d = float(torch.linalg.vector_norm(delta.double()))
    out: dict[str, Any] = {
        "shape": list(b.shape),
        "n": n,
        "unchanged": int((t == b).sum()),
        "unchanged_bf16": int((t.to(torch.bfloat16) == b.to(torch.bfloat16)).sum()),
        "norm_base": norm_b,
        "norm_delta": norm_d,
        "relative_norm": norm_d / norm_b if norm_b else (0.0 if norm_d == 0 else float("inf")),
    }
    if b.ndim == 2:
        if rank_limit and n > rank_limit:
            out["rank"] = out["effective_rank"] = None
            out["rank_note"] = f"not computed: {n} elements, above the rank limit of {rank_limit}"
        elif norm_d == 0:
            out["rank"], out["effective_rank"] = 0, 0.0
        else:
            s = torch.linalg.svdvals(delta).double().cpu().numpy()
            tol = s.max() * max(delta.shape) * np.finfo(np.float32).eps
            p = s / s.sum()
            p = p[p > 0]
            out["rank"] = int((s > tol).sum())
            out["effective_rank"] = float(np.exp(-(p * np.log(p)).sum()))
    return out


def _aggregate(entries: list[dict[str, Any]]) -> dict[str, Any]:
    n = sum(e["n"] for e in entries)
    norm_b = np.sqrt(sum(e["norm_base"] ** 2 for e in entries))
    norm_d = np.sqrt(sum(e["norm_delta"] ** 2 for e in entries))
    return {
        "tensors": len(entries),
        "n": n,
        "unchanged_share": sum(e["unchanged"] for e in entries) / n,
        "unchanged_bf16_share": sum(e["unchanged_bf16"] for e in entries) / n,
        "relative_norm": float(norm_d / norm_b) if norm_b else 0.0,
    }


def weight_drift(
    base: str, tuned: str, rank_limit: int = RANK_LIMIT, progress=None, device: str | None = None
) -> dict[str, Any]:
    """Per tensor, per layer and total drift of `tuned` from `base` (see the module docstring); the figures, SVDs
    included, are computed on `device` (default: the CPU)."""
    files_b, files_t = weight_files(base), weight_files(tuned)
    shared = sorted(set(files_b) & set(files_t))
    if not shared:
        raise DataError("base and tuned have no tensor name in common")
    tensors = []
    stored: dict[str, set[str]] = {"base": set(), "tuned": set()}
    read_b, read_t = _Reader(files_b), _Reader(files_t)
    for k, name in enumerate(sorted(shared, key=lambda n: (str(files_b[n]), n))):  # shard by shard
        w_b, w_t = read_b[name], read_t[name]
        if w_b.is_floating_point():
            stored["base"].add(str(w_b.dtype).removeprefix("torch."))
            stored["tuned"].add(str(w_t.dtype).removeprefix("torch."))
        entry = {"name": name, **tensor_drift(w_b, w_t, rank_limit, device)}
        entry["unchanged_share"] = entry["unchanged"] / entry["n"]
        entry["unchanged_bf16_share"] = entry["unchanged_bf16"] / entry["n"]
        tensors.append(entry)
        if progress:
            progress(k + 1, len(shared))
    layers: dict[str, list[dict[str, Any]]] = {}
    for e in tensors:
        match = _LAYER.search(e["name"])
        layers.setdefault(match.group(1) if match else "other", []).append(e)
    order = sorted((k for k in layers if k != "other"), key=int) + (["other"] if "other" in layers else [])
    dtypes = {role: sorted(v) for role, v in stored.items()}
    return {
        "stored_dtypes": dtypes,
        "dtype_note": None
        if dtypes["base"] == dtypes["tuned"]
        else "base and tuned are stored in different dtypes: 'unchanged' also counts storage rounding; "
        "'unchanged within bf16' is the share comparable across arms",
        "rank_limit": rank_limit or None,
        "ranks_skipped": sum(1 for e in tensors if e.get("rank_note")),
        "total": _aggregate(tensors),
        "layers": [{"layer": k, **_aggregate(layers[k])} for k in order],
        "tensors": tensors,
        "only_in_base": sorted(set(files_b) - set(files_t)),
        "only_in_tuned": sorted(set(files_t) - set(files_b)),
    }
