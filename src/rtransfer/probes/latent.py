"""Latent PCA shift and CKA between a base and a tuned model (Huan et al. Fig. 3).

Every hidden-state layer (the embeddings, each block's output, the last one after the final norm: what
`output_hidden_states=True` returns) comes from ONE forward pass per batch; the authors' script ran one pass per
layer, which gives the same numbers at about (layers + 1) times the cost (bench/latent_probe.py). Each layer is
pooled by a forward hook as the layer produces it and its activation dropped, so a batch holds (layers, texts,
hidden) pooled vectors instead of every layer's (texts, tokens, hidden) states: 14 GB at 4K tokens for a 14B model
(docs/real-scale-review.md H2). The backbone runs without a KV cache and without the vocabulary projection. Pooling
is a masked mean over the real tokens, so a text's vector does not depend on what it was batched with;
`pooling="paper"` reproduces the authors' unmasked mean (pad tokens included) with their 128-token truncation.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg

from rtransfer.errors import DataError
from rtransfer.probes.models import forward_mode
from rtransfer.report.plots import draw_latent

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
            layers = _pooled_layers(model, ids, mask, pooling, kwargs)
            batches.append(torch.stack([x.cpu() for x in layers]).double().numpy())
    finally:
        tokenizer.padding_side = side
    return np.concatenate(batches, axis=1)


def _pool(h: Any, mask: Any, pooling: str) -> Any:
    """One layer's (texts, tokens, hidden) states → (texts, hidden) float32, on the layer's device."""
    import torch

    h = h.float()
    if pooling == "paper":
        return h.mean(dim=1)
    m = mask.to(h.device).bool().unsqueeze(-1)
    # where(), not a product: a fully masked pad row may hold NaN, and NaN * 0 is NaN.
    summed = torch.where(m, h, torch.zeros((), device=h.device)).sum(dim=1)
    return summed / m.sum(dim=1).clamp(min=1)


def _blocks(model: Any) -> tuple[Any, Any] | None:
    """The backbone's decoder layers and final norm (Llama/Qwen/Mistral-style models), or None."""
    backbone = getattr(model, "base_model", model)
    layers, norm = getattr(backbone, "layers", None), getattr(backbone, "norm", None)
    if layers is None or norm is None or len(layers) == 0:
        return None
    return layers, norm


def _pooled_layers(model: Any, ids: Any, mask: Any, pooling: str, kwargs: dict[str, Any]) -> list[Any]:
    """The pooled vector of every hidden-state layer for one batch, pooled in forward hooks: the input of the first
    decoder layer (the embeddings), the outputs of the others but the last, and the final norm's output (the last
    entry of `output_hidden_states`, which transformers ties to the normed state). A model without that shape
    falls back to `output_hidden_states=True` (`_pooled_all_states`)."""
    blocks = _blocks(model)
    if blocks is None:
        return _pooled_all_states(model, ids, mask, pooling, kwargs)
    layers, norm = blocks
    pooled: list[Any] = []

    def first_input(_module, args, kw):
        pooled.append(_pool(args[0] if args else kw["hidden_states"], mask, pooling))

    def output(_module, _args, out):
        pooled.append(_pool(out[0] if isinstance(out, tuple) else out, mask, pooling))

    handles = [layers[0].register_forward_pre_hook(first_input, with_kwargs=True)]
    handles += [layer.register_forward_hook(output) for layer in layers[:-1]]
    handles.append(norm.register_forward_hook(output))
    try:
        with forward_mode():
            getattr(model, "base_model", model)(input_ids=ids, attention_mask=mask, use_cache=False, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    if len(pooled) != len(layers) + 1:
        raise DataError(f"the latent probe pooled {len(pooled)} states for {len(layers)} layers (expected one more)")
    return pooled


def _pooled_all_states(model: Any, ids: Any, mask: Any, pooling: str, kwargs: dict[str, Any]) -> list[Any]:
    """The same vectors from `output_hidden_states=True`, which holds every layer's states until the pass ends."""
    with forward_mode():
        # logits_to_keep=1: the vocabulary projection of every position is not needed here.
        out = model(
            input_ids=ids, attention_mask=mask, output_hidden_states=True, logits_to_keep=1, use_cache=False, **kwargs
        )
    return [_pool(h, mask, pooling) for h in out.hidden_states]


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


def _layer_points(base: np.ndarray, tuned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per layer, the (shift, PC2) points of base and tuned under a 2-component PCA fit on the base's vectors:
    two arrays (layers, 2)."""
    from sklearn.decomposition import PCA

    points_b, points_t = [], []
    for b, t in zip(base, tuned, strict=True):
        pca = PCA(n_components=2, svd_solver="full").fit(b)
        pb, pt = pca.transform(b), pca.transform(t)
        b1 = pb[:, 0].mean()
        points_b.append([0.0, pb[:, 1].mean()])
        points_t.append([pt[:, 0].mean() - b1, pt[:, 1].mean()])
    return np.array(points_b), np.array(points_t)


def _check_states(base: np.ndarray, tuned: np.ndarray) -> None:
    if base.shape[:2] != tuned.shape[:2]:
        raise DataError(f"base and tuned states differ in shape: {base.shape} vs {tuned.shape}")
    if base.shape[1] < 2:
        raise DataError("the latent probe needs at least 2 texts per benchmark")


def pca_shift(base: np.ndarray, tuned: np.ndarray) -> dict[str, Any]:
    """Per layer, a 2-component PCA fit on the base's pooled vectors; both models projected onto it.

    A layer's point for a model is (shift, PC2): shift = mean PC1(model) − mean PC1(base) (0 for the base
    itself), PC2 = mean PC2(model). Each model's centroid is the mean of its points over layers, and d is the
    L2 distance between the base's and the tuned model's centroids. The base's PCA is centred on the base's
    vectors, so the base's points sit at the origin (up to rounding) and d is the norm of the tuned centroid.
    """
    _check_states(base, tuned)
    points_b, points_t = _layer_points(base, tuned)
    cka = [linear_cka(b, t) for b, t in zip(base, tuned, strict=True)]
    layers = [
        {"layer": i, "base": pb.tolist(), "tuned": pt.tolist(), "cka": c}
        for i, (pb, pt, c) in enumerate(zip(points_b, points_t, cka, strict=True))
    ]
    cb, ct = points_b.mean(axis=0), points_t.mean(axis=0)
    return {
        "d": float(np.linalg.norm(ct - cb)),
        "centroid_base": cb.tolist(),
        "centroid_tuned": ct.tolist(),
        "cka": cka,
        "layers": layers,
        "n": int(base.shape[1]),
    }


def d_replicates(base: np.ndarray, tuned: np.ndarray, replicates: int, seed: int = 0) -> np.ndarray:
    """d on `replicates` bootstrap samples of the texts, paired (the same resampled texts for both models), with
    the base's PCA refit on every replicate: the whole statistic is recomputed, as the bootstrap needs.

    Refitting through scikit-learn costs about 30 ms per replicate on the lab and 1.7 s on a 14B model's 41
    layers of 5120 (100 texts). The refit here is the same PCA computed from the texts' Gram matrices, which
    resampling only re-indexes: per layer, the two components of the resampled, centred base vectors come from
    the n × n eigenproblem, with scikit-learn's sign rule (each component's largest entry positive), and the tuned
    centroid's projection from the Gram matrix of base and tuned texts. `_layer_points` on the resampled texts
    gives the same d to 1e-9 (tests/test_probes.py), at a fraction of the cost (bench/probe_uncertainty.py).
    """
    _check_states(base, tuned)
    n = base.shape[1]
    rng = np.random.default_rng(seed)
    # Per layer, (n × n) each: base·base and base·(tuned − base); the difference first, so that identical models
    # give exactly 0 (numpy computes b @ b.T and b @ t.T with differently rounded routines).
    grams = [(b @ b.T, b @ (t - b).T) for b, t in zip(base, tuned, strict=True)]
    out = np.empty(replicates)
    for r in range(replicates):
        idx = rng.integers(0, n, n)
        w = np.bincount(idx, minlength=n) / n  # the replicate's mean is w @ X
        points = np.array([_tuned_point(base[k], g_bb, g_bd, idx, w) for k, (g_bb, g_bd) in enumerate(grams)])
        out[r] = np.linalg.norm(points.mean(axis=0))  # the base's points are the origin
    return out


def _tuned_point(x_b: np.ndarray, g_bb: np.ndarray, g_bd: np.ndarray, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(shift, PC2) of the tuned centroid at one layer, for the resampled texts `idx` (weights `w`): the tuned
    mean minus the base mean, projected on the first two principal axes of the resampled, centred base vectors."""
    row_b = g_bb[idx] @ w  # B · μ_b for each resampled base text
    total_b = w @ g_bb @ w  # μ_b · μ_b
    gram = g_bb[np.ix_(idx, idx)] - row_b[:, None] - row_b[None, :] + total_b  # (B − μ)(B − μ)ᵀ
    # Only the top two eigenpairs are needed: LAPACK's subset driver finds them in about half eigh's time.
    values, vectors = scipy.linalg.eigh(gram, subset_by_index=[max(len(w) - 2, 0), len(w) - 1], check_finite=False)
    top = np.argsort(values)[::-1][:2]
    # (B − μ) δ with δ = μ_t − μ_b = w @ (T − B): the resampled base texts against the mean difference.
    b_delta = g_bd[idx] @ w - w @ g_bd @ w
    point = np.zeros(2)
    for k, j in enumerate(top):
        s = np.sqrt(max(values[j], 0.0))
        if s <= 1e-12 * max(1.0, np.sqrt(abs(values).max())):
            continue  # fewer distinct texts than components: the axis is undefined, its coordinate 0
        u = vectors[:, j]
        # The principal axis in the hidden space, (B − μ)ᵀ u / s, as one product with the n original texts.
        axis = x_b.T @ (np.bincount(idx, weights=u, minlength=len(w)) - w * u.sum()) / s
        sign = np.sign(axis[np.argmax(np.abs(axis))])  # scikit-learn's svd_flip rule
        point[k] = sign * (b_delta @ u) / s
    return point


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

    fig, ax = plt.subplots(figsize=(4.5, 4))
    draw_latent(ax, result)
    ax.set_xlabel("PC1 shift, tuned − base (hidden-state units)")
    ax.set_ylabel("mean PC2 (hidden-state units)")
    ax.set_title(f"{title}  d = {result['d']:.3g}")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
