"""Latent PCA shift and CKA between a base and a tuned model (BRIEF §5, Huan et al. Fig. 3).

Every hidden-state layer (the embeddings and each block's output) comes from ONE forward pass per batch
(`output_hidden_states=True`); the authors' script ran one pass per layer, which gives the same numbers at about
(layers + 1) times the cost (bench/latent_probe.py). Pooling is a masked mean over the real tokens, so a text's
vector does not depend on what it was batched with; `pooling="paper"` reproduces the authors' unmasked mean
(pad tokens included) with their 128-token truncation.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from rtransfer.errors import DataError
from rtransfer.probes.models import forward_mode

POOLINGS = ("mean", "paper")
PAPER_MAX_LENGTH = 128  # the authors' truncation


def pooled_states(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    pooling: str = "mean",
    max_length: int | None = None,
    batch_size: int = 8,
    padding_side: str | None = None,
) -> np.ndarray:
    """Pooled hidden states, shape (layers, texts, hidden), float64; layer 0 is the embedding output."""
    import torch

    if pooling not in POOLINGS:
        raise DataError(f"unknown pooling {pooling!r} (choose from {', '.join(POOLINGS)})")
    if pooling == "paper" and max_length is None:
        max_length = PAPER_MAX_LENGTH
    if tokenizer.pad_token is None:  # padding is masked (or, for the paper's pooling, averaged in as they did)
        tokenizer.pad_token = tokenizer.eos_token
    device = next(model.parameters()).device  # with a device map: where the embeddings live
    side = tokenizer.padding_side
    tokenizer.padding_side = padding_side or side
    batches: list[np.ndarray] = []
    try:
        for start in range(0, len(texts), max(1, batch_size)):
            enc = tokenizer(
                list(texts[start : start + batch_size]),
                return_tensors="pt",
                padding=True,
                truncation=max_length is not None,
                max_length=max_length,
            )
            ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
            kwargs: dict[str, Any] = {}
            if pooling == "mean":  # positions count real tokens only, so left padding does not shift them
                kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
            with forward_mode():
                # logits_to_keep=1: the vocabulary projection of every position is not needed here.
                out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, logits_to_keep=1, **kwargs)
            layers = []
            for h in out.hidden_states:
                h = h.float()
                if pooling == "paper":
                    layers.append(h.mean(dim=1))
                else:
                    m = mask.to(h.device).bool().unsqueeze(-1)
                    # where(), not a product: a fully masked pad row may hold NaN, and NaN * 0 is NaN.
                    summed = torch.where(m, h, torch.zeros((), device=h.device)).sum(dim=1)
                    layers.append(summed / m.sum(dim=1).clamp(min=1))
            batches.append(torch.stack([x.cpu() for x in layers]).double().numpy())
    finally:
        tokenizer.padding_side = side
    return np.concatenate(batches, axis=1)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) of two representations of the same n inputs, (n, d1) and (n, d2).
    Computed from the n×n Gram matrices: n (≈100 texts) is far below a large model's hidden size."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    k, l_ = x @ x.T, y @ y.T
    denom = np.linalg.norm(k) * np.linalg.norm(l_)
    if denom == 0:
        return 1.0 if np.array_equal(x, y) else float("nan")
    return float((k * l_).sum() / denom)


def pca_shift(base: np.ndarray, tuned: np.ndarray) -> dict[str, Any]:
    """Per layer, a 2-component PCA fit on the base's pooled vectors; both models projected onto it.

    A layer's point for a model is (shift, PC2): shift = mean PC1(model) − mean PC1(base) (0 for the base
    itself), PC2 = mean PC2(model). Each model's centroid is the mean of its points over layers, and d is the
    L2 distance between the base's and the tuned model's centroids. The base's PCA is centred on the base's
    vectors, so the base's points sit at the origin (up to rounding) and d is the norm of the tuned centroid.
    """
    from sklearn.decomposition import PCA

    if base.shape[:2] != tuned.shape[:2]:
        raise DataError(f"base and tuned states differ in shape: {base.shape} vs {tuned.shape}")
    if base.shape[1] < 2:
        raise DataError("the latent probe needs at least 2 texts per benchmark")
    layers = []
    for i, (b, t) in enumerate(zip(base, tuned, strict=True)):
        pca = PCA(n_components=2, svd_solver="full").fit(b)
        pb, pt = pca.transform(b), pca.transform(t)
        b1 = pb[:, 0].mean()
        layers.append(
            {
                "layer": i,
                "base": [0.0, float(pb[:, 1].mean())],
                "tuned": [float(pt[:, 0].mean() - b1), float(pt[:, 1].mean())],
                "cka": linear_cka(b, t),
            }
        )
    cb = np.mean([p["base"] for p in layers], axis=0)
    ct = np.mean([p["tuned"] for p in layers], axis=0)
    return {
        "d": float(np.linalg.norm(ct - cb)),
        "centroid_base": cb.tolist(),
        "centroid_tuned": ct.tolist(),
        "cka": [p["cka"] for p in layers],
        "layers": layers,
        "n": int(base.shape[1]),
    }


def split_half_d(base: np.ndarray) -> float:
    """d between the base on the first half of the texts and the base on the second half: how far the
    centroid moves when only the texts change (the sampling spread of d at this sample size)."""
    half = base.shape[1] // 2
    if half < 2:
        return float("nan")
    return pca_shift(base[:, :half], base[:, half : 2 * half])["d"]


def plot_latent(result: dict[str, Any], path: str, title: str = "") -> None:
    """The paper's panel: one point per layer for base and tuned, a line joining each layer's two points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = np.array([p["base"] for p in result["layers"]])
    tuned = np.array([p["tuned"] for p in result["layers"]])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for b, t in zip(base, tuned, strict=True):
        ax.plot([b[0], t[0]], [b[1], t[1]], color="0.75", lw=0.8, zorder=1)
    ax.scatter(base[:, 0], base[:, 1], s=16, label="base", zorder=2)
    ax.scatter(tuned[:, 0], tuned[:, 1], s=16, label="tuned", zorder=2)
    for name, c in (("centroid_base", "C0"), ("centroid_tuned", "C1")):
        ax.scatter(*result[name], marker="x", s=60, color=c, zorder=3)
    ax.set_xlabel("PC1 shift (tuned − base)")
    ax.set_ylabel("mean PC2")
    ax.set_title(f"{title}  d = {result['d']:.3g}")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
