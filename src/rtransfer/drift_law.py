"""The drift law, tested on a study's own points: does a model's drift from its base predict what it lost outside
math? "RL's Razor" (arXiv 2509.04259) finds forgetting follows the forward KL KL(π_base ‖ π_tuned) on the
training task's prompts, better than weight-change measures. Here every evaluated point of every trained arm (its
checkpoints and final model) is one (drift, retention) pair: the drift by each of the four measures of
`probes.drift`, the retention the point's Δother and Δnon (its group changes, as the TI over steps has them).

Per measure and retention group: the least-squares line retention = a + b · drift, its R² and slope with percentile
CIs from a pairs bootstrap (points resampled with replacement, every measure on the same resamples, so R² of two
measures compare pairwise). A measure *predicts forgetting* when its slope's CI lies below 0 (more drift, more
loss); the best predictor is the one of those with the highest R², *clearly* best when its R² exceeds every other
measure's in the paired bootstrap (the CI of the difference above 0).

By hand, not scipy: a one-predictor least-squares fit is three lines, and scipy.stats.bootstrap computes one
statistic per call where the verdict needs every measure's R² on the same resamples. The points of one arm come
from one training run and are not independent: the CIs treat them as if they were, so they are narrower than a
between-run interval would be (the report says so beside them).
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rtransfer.comparisons import TRANSFER, Comparisons
from rtransfer.transfer import percentile_interval

MEASURES = {
    "forward_kl": "forward KL on the training prompts",
    "reverse_kl": "reverse KL on the benchmarks' prompts",
    "latent_d": "latent shift d",
    "weights_changed": "share of weights changed",
}
MIN_POINTS = 4  # below this a line through the points says nothing


def law_points(
    drift: Mapping[str, dict[str, Any]], comparisons: Comparisons, ti_rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per measured point: model, step, the drift measures and the retention (Δother, Δnon) there. A
    checkpoint's retention is its point of the TI over steps; without checkpoint evaluations, a final model's is
    its change in the TI table."""
    final = {r["model"]: r.get("change") or {} for r in ti_rows}
    points = []
    for model, result in drift.items():
        by_step = comparisons.steps.get(model, {})
        for p in result["points"]:
            if by_step:
                if p["step"] not in by_step:
                    continue
                retention = {q: by_step[p["step"]].values[q].value for q in TRANSFER}
            elif p is result["points"][-1]:
                retention = {q: final.get(model, {}).get(q[1:]) for q in TRANSFER}
            else:
                continue
            row = {"model": model, "step": p["step"], **{m: p.get(m) for m in MEASURES}}
            points.append(row | {q: _number(v) for q, v in retention.items()})
    return points


def fit_law(points: Sequence[dict[str, Any]], replicates: int, seed: int, confidence: float) -> dict[str, Any]:
    """Every measure's fit of every retention group, and per group the verdict (module docstring)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"points": list(points), "bootstrap": replicates, "confidence": confidence, "fits": {}}
    out["verdicts"] = {}
    for q in TRANSFER:
        usable = [p for p in points if _finite(p.get(q))]
        # a measure some point lacks is left out (no generated benchmark: no reverse KL)
        measures = [m for m in MEASURES if all(_finite(p.get(m)) for p in usable)]
        n = len(usable)
        y = np.array([p[q] for p in usable], dtype=float)
        idx = rng.integers(0, n, size=(replicates, n)) if n and replicates else np.zeros((0, n), dtype=int)
        fits, r2_reps = {}, {}
        for m in measures:
            x = np.array([p[m] for p in usable], dtype=float)
            fits[m], r2_reps[m] = _fit(x, y, idx, confidence)
        out["fits"][q] = fits
        out["verdicts"][q] = _verdict(fits, r2_reps, n, confidence)
    return out


def _fit(x: np.ndarray, y: np.ndarray, idx: np.ndarray, confidence: float) -> tuple[dict[str, Any], np.ndarray]:
    n = len(x)
    if n < MIN_POINTS or np.ptp(x) == 0 or np.ptp(y) == 0:
        why = f"{n} points (a fit needs {MIN_POINTS})" if n < MIN_POINTS else "the points do not vary"
        return {"n": n, "slope": None, "r2": None, "note": why}, np.full(len(idx), np.nan)
    slope, intercept, r2 = _line(x[None], y[None])
    rep_slope, _, rep_r2 = _line(x[idx], y[idx])
    fit = {
        "n": n,
        "slope": float(slope[0]),
        "intercept": float(intercept[0]),
        "r2": float(r2[0]),
        "slope_ci": _ci(rep_slope, confidence),
        "r2_ci": _ci(rep_r2, confidence),
    }
    return fit, rep_r2


def _line(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares per row of x and y (replicates × points): slope, intercept, R² (NaN where x or y is flat)."""
    dx, dy = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    sxx, syy, sxy = (dx * dx).sum(axis=1), (dy * dy).sum(axis=1), (dx * dy).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(sxx > 0, sxy / sxx, np.nan)
        r2 = np.where((sxx > 0) & (syy > 0), sxy**2 / (sxx * syy), np.nan)
    return slope, y.mean(axis=1) - slope * x.mean(axis=1), r2


def _verdict(fits: dict[str, dict], r2_reps: dict[str, np.ndarray], n: int, confidence: float) -> dict[str, Any]:
    """Which measures predict forgetting (slope CI below 0), the best of them by R², and the measures it is not
    told apart from (the paired difference of R² has a CI reaching 0)."""
    fitted = [m for m, f in fits.items() if f["r2"] is not None]
    predicting = [m for m in fitted if fits[m].get("slope_ci") and fits[m]["slope_ci"][1] < 0]
    verdict: dict[str, Any] = {"n": n, "fitted": fitted, "predicting": predicting, "best": None, "not_apart": []}
    if not predicting:
        return verdict
    best = max(predicting, key=lambda m: fits[m]["r2"])
    verdict["best"] = best
    for m in fitted:
        if m != best:
            gap = _ci(r2_reps[best] - r2_reps[m], confidence)
            verdict.setdefault("gaps", {})[m] = gap
            if gap is None or gap[0] <= 0:
                verdict["not_apart"].append(m)
    return verdict


def _ci(values: np.ndarray, confidence: float) -> list[float] | None:
    ci = percentile_interval(values, confidence)
    return list(ci) if ci else None


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and bool(np.isfinite(v))


def _number(v: Any) -> float | None:
    return float(v) if _finite(v) else None
