"""The Transferability Index (TI) of Huan et al. (arXiv 2507.00432), both versions, with bootstrap CIs.

Groups g ∈ {math, other, non}; R_b is a score in 0–100; every tuned model is compared with its own base.

v1 (arXiv v1):  ΔR_g = mean_b∈g (R_model,b − R_base,b) / R_base,b ;  TI_g = ΔR_g / ΔR_math × 100.
v2 (arXiv v2):  δ_b = (R_model,b − R_base,b) / σ_g ;  s_b = sign(δ_b)·√|δ_b| ;
                w_b = (100 − R_base,b) / Σ_b∈g (100 − R_base,b) ;  DI_g = Σ_b∈g w_b·s_b ;  TI_g = DI_g / DI_math × 100.

σ_g, "pooled" (default): one population std per group over every (model, benchmark) gain of the models being
compared. This is what reproduces the paper's reported table (14 of 18 rows within ±1.1; the other 4 look
like typos in the paper, see docs/transferability.md). "model": the population std of one model's own gains
in the group, as the v2 formula literally reads.

Everything is computed on arrays with a leading replicate axis, so the point estimate and each bootstrap
replicate go through the same code.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rtransfer.benchmarks.names import GROUPS, group_of
from rtransfer.errors import DataError, TransferabilityError

INDEXES = ("v1", "v2")
SIGMAS = ("pooled", "model")


@dataclass
class DocGrades:
    """Per-document grades of one model on one benchmark, for resampling.

    value: the document's grade in [0, 1] (mean over its samples); weight: its share of the metric (1, unless
    the metric is a ratio such as IFEval's instruction-level accuracy, where it is the instruction count).
    """

    ids: list[str]
    values: np.ndarray
    weights: np.ndarray

    def score(self) -> float:
        return float(100.0 * np.sum(self.values * self.weights) / np.sum(self.weights))


@dataclass
class ModelScores:
    """One row of a scores table: a model, the base it is compared with (None for a base), its scores."""

    model: str
    base: str | None
    scores: dict[str, float]  # canonical benchmark name -> 0..100
    method: str = ""
    docs: dict[str, DocGrades] = field(default_factory=dict)  # where per-sample records exist


@dataclass
class TIResult:
    model: str
    base: str
    method: str
    index: str
    ti: dict[str, float]  # "other" / "non" -> TI (NaN when undefined)
    domain: dict[str, float]  # group -> ΔR_g (v1) or DI_g (v2)
    sigma: dict[str, float]  # group -> σ_g used (v2; empty for v1)
    benchmarks: dict[str, list[str]]  # group -> benchmarks that entered the index
    undefined: str | None = None  # why the TI cannot be computed for this row
    # The change of each group's mean score (points), shown beside the TI: it has no ratio to flip or blow up.
    change: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # "other"/"non" -> (low, high)
    ci_undefined_share: float = 0.0  # share of bootstrap replicates in which the TI was undefined
    domain_ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # group -> CI of ΔR_g / DI_g
    change_ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # group -> CI of the change
    unstable: str | None = None  # why the TI's CI is not to be trusted (the math index's CI includes 0)

    def as_dict(self) -> dict:
        out: dict = {"model": self.model, "base": self.base, "method": self.method, "index": self.index}
        for g in ("other", "non"):
            out[f"TI_{g}"] = _finite_or_none(self.ti[g])
        prefix = "DI" if self.index == "v2" else "dR"
        out.update({f"{prefix}_{g}": _finite_or_none(v) for g, v in self.domain.items()})
        if self.sigma:
            out["sigma"] = {g: _finite_or_none(v) for g, v in self.sigma.items()}
        for g, (lo, hi) in self.ci.items():
            out[f"TI_{g}_ci"] = [_finite_or_none(lo), _finite_or_none(hi)]
        if self.ci:
            out["ci_undefined_share"] = self.ci_undefined_share
        for g, (lo, hi) in self.domain_ci.items():
            out[f"{prefix}_{g}_ci"] = [_finite_or_none(lo), _finite_or_none(hi)]
        out["change"] = {g: _finite_or_none(v) for g, v in self.change.items()}
        if self.change_ci:
            out["change_ci"] = {g: [_finite_or_none(lo), _finite_or_none(hi)] for g, (lo, hi) in self.change_ci.items()}
        out["benchmarks"] = self.benchmarks
        if self.undefined:
            out["error"] = self.undefined
        if self.unstable:
            out["unstable"] = self.unstable
        return out

    @classmethod
    def from_dict(cls, row: dict) -> "TIResult":
        """The TIResult that `as_dict` wrote (null back to NaN), e.g. a study's ti.json row; other keys (the
        paper's comparison) are ignored."""

        def num(v):
            return float("nan") if v is None else v

        def pairs(d: dict) -> dict:
            return {g: (num(lo), num(hi)) for g, (lo, hi) in d.items()}

        prefix = "DI" if row["index"] == "v2" else "dR"
        return cls(
            model=row["model"],
            base=row["base"],
            method=row["method"],
            index=row["index"],
            ti={g: num(row[f"TI_{g}"]) for g in ("other", "non")},
            domain={g: num(row[f"{prefix}_{g}"]) for g in GROUPS if f"{prefix}_{g}" in row},
            sigma={g: num(v) for g, v in (row.get("sigma") or {}).items()},
            benchmarks=row["benchmarks"],
            undefined=row.get("error"),
            change={g: num(v) for g, v in row["change"].items()},
            ci=pairs({g: row[f"TI_{g}_ci"] for g in ("other", "non") if f"TI_{g}_ci" in row}),
            ci_undefined_share=row.get("ci_undefined_share", 0.0),
            domain_ci=pairs({g: row[f"{prefix}_{g}_ci"] for g in GROUPS if f"{prefix}_{g}_ci" in row}),
            change_ci=pairs(row.get("change_ci") or {}),
            unstable=row.get("unstable"),
        )


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def group_columns(benchmarks: Sequence[str]) -> dict[str, np.ndarray]:
    return {g: np.array([i for i, b in enumerate(benchmarks) if group_of(b) == g], dtype=int) for g in GROUPS}


def domain_indexes(
    tuned: np.ndarray, base: np.ndarray, columns: dict[str, np.ndarray], index: str = "v2", sigma: str = "pooled"
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-group ΔR_g (v1) or DI_g (v2) for arrays of shape [replicates, rows, benchmarks].

    NaN marks a missing score; a group whose scores are all missing gives NaN. Returns (domain, sigma), each
    group mapping to an array [replicates, rows].
    """
    if index not in INDEXES:
        raise TransferabilityError(f"unknown TI index {index!r} (choose from {', '.join(INDEXES)})")
    if sigma not in SIGMAS:
        raise TransferabilityError(f"unknown sigma {sigma!r} (choose from {', '.join(SIGMAS)})")
    gain = tuned - base
    domain, sigmas = {}, {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for g, cols in columns.items():
            g_gain, g_base = gain[..., cols], base[..., cols]
            present = np.isfinite(g_gain)
            if index == "v1":
                rel = np.where(present, g_gain / g_base, np.nan)
                domain[g] = _nanmean(rel, present)
                continue
            if sigma == "pooled":
                s = _nanstd(g_gain, axis=(-2, -1))[..., None, None]
            else:
                s = _nanstd(g_gain, axis=-1)[..., None]
            sigmas[g] = np.broadcast_to(s[..., 0], g_gain.shape[:-1])
            # A zero gain contributes zero, also where σ is zero (all gains zero) instead of 0/0.
            delta = np.where(g_gain == 0, 0.0, g_gain / s)
            signed_root = np.sign(delta) * np.sqrt(np.abs(delta))
            weight = np.where(present, 100.0 - g_base, 0.0)
            weight = weight / weight.sum(axis=-1, keepdims=True)
            di = np.where(present, weight * signed_root, 0.0).sum(axis=-1)
            domain[g] = np.where(present.any(axis=-1), di, np.nan)
    return domain, sigmas


def _nanmean(x: np.ndarray, present: np.ndarray) -> np.ndarray:
    n = present.sum(axis=-1)
    total = np.where(present, x, 0.0).sum(axis=-1)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _nanstd(x: np.ndarray, axis) -> np.ndarray:
    present = np.isfinite(x)
    n = present.sum(axis=axis, keepdims=True)
    mean = np.where(present, x, 0.0).sum(axis=axis, keepdims=True) / np.maximum(n, 1)
    var = np.where(present, (x - mean) ** 2, 0.0).sum(axis=axis, keepdims=True) / np.maximum(n, 1)
    return np.squeeze(np.where(n > 0, np.sqrt(var), np.nan), axis=axis)


def ti_from_domain(domain: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """TI_g = index_g / index_math × 100, defined only for a math gain: a ratio to a math loss flips its sign
    (a model that lost math and lost more elsewhere would print a large positive TI)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        math = domain["math"]
        return {g: np.where(math > 0, domain[g] / math * 100.0, np.nan) for g in ("other", "non")}


def group_changes(tuned: np.ndarray, base: np.ndarray, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The change of each group's mean score (points) for arrays [replicates, rows, benchmarks]; NaN = missing."""
    gain = tuned - base
    return {g: _nanmean(gain[..., cols], np.isfinite(gain[..., cols])) for g, cols in columns.items()}


def _math_index(index: str) -> str:
    return "ΔR_math" if index == "v1" else "DI_math"


def _why_undefined(row: ModelScores, base: ModelScores, used: dict[str, list[str]], index, domain, sigma) -> str | None:
    for g, benches in used.items():
        if not benches:
            return f"no {g} benchmark scored for both {row.model!r} and its base {base.model!r}"
    if index == "v1":
        zeros = [b for benches in used.values() for b in benches if base.scores[b] == 0]
        if zeros:
            return f"v1 is undefined: base {base.model!r} scores 0 on {', '.join(zeros)}"
    for g, s in sigma.items():
        if s == 0 and any(row.scores[b] != base.scores[b] for b in used[g]):
            return f"σ of the {g} group is zero (every gain in it is equal), so the gains cannot be z-normalised"
    what = _math_index(index)
    if domain["math"] == 0:
        return f"{what} is zero (no math gain over the base), so the TI is undefined"
    if domain["math"] < 0:
        return (
            f"{what} is {domain['math']:.3g}: the model lost math, and a ratio to a math loss flips the TI's sign, "
            "so the TI is undefined (the group changes say what happened)"
        )
    return None


def score_matrix(rows: Sequence[ModelScores], benchmarks: Sequence[str]) -> np.ndarray:
    """[rows, benchmarks] array of scores, NaN where a row has none."""
    return np.array([[r.scores.get(b, np.nan) for b in benchmarks] for r in rows], dtype=float).reshape(
        len(rows), len(benchmarks)
    )


def compared_benchmarks(rows: Sequence[ModelScores]) -> list[str]:
    seen = {b for r in rows for b in r.scores}
    return sorted(seen, key=lambda b: (GROUPS.index(group_of(b)), b))


def transferability(
    rows: Sequence[ModelScores],
    index: str = "v2",
    sigma: str = "pooled",
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[TIResult]:
    """TI of every row that has a base. Rows whose TI is undefined carry the reason in `undefined`."""
    by_name = check_rows(rows)
    tuned = [r for r in rows if r.base]
    if not tuned:
        raise TransferabilityError("no row names a base model, so there is nothing to compare")
    bases = [by_name[r.base] for r in tuned]
    benchmarks = compared_benchmarks(rows)
    columns = group_columns(benchmarks)
    tuned_scores, base_scores = score_matrix(tuned, benchmarks), score_matrix(bases, benchmarks)
    domain, sigmas = domain_indexes(tuned_scores[None], base_scores[None], columns, index, sigma)
    ti = ti_from_domain(domain)
    changes = group_changes(tuned_scores[None], base_scores[None], columns)
    results = []
    for i, (row, base) in enumerate(zip(tuned, bases, strict=True)):
        row_domain = {g: float(domain[g][0, i]) for g in GROUPS}
        row_sigma = {g: float(s[0, i]) for g, s in sigmas.items()}
        used = {
            g: [benchmarks[j] for j in cols if benchmarks[j] in row.scores and benchmarks[j] in base.scores]
            for g, cols in columns.items()
        }
        undefined = _why_undefined(row, base, used, index, row_domain, row_sigma)
        results.append(
            TIResult(
                model=row.model,
                base=base.model,
                method=row.method,
                index=index,
                ti={g: np.nan if undefined else float(ti[g][0, i]) for g in ti},
                domain=row_domain,
                sigma=row_sigma,
                benchmarks=used,
                undefined=undefined,
                change={g: float(changes[g][0, i]) for g in GROUPS},
            )
        )
    if bootstrap and any(r.docs for r in rows):
        _attach_bootstrap_ci(
            results, rows, tuned, bases, benchmarks, columns, index, sigma, bootstrap, confidence, seed
        )
    return results


def check_rows(rows: Sequence[ModelScores], where: str = "scores") -> dict[str, ModelScores]:
    """Rows by model name, after checking that names are unique and every base has a row of its own."""
    by_name: dict[str, ModelScores] = {}
    for r in rows:
        if r.model in by_name:
            raise DataError(f"{where}: model {r.model!r} has more than one row")
        by_name[r.model] = r
    for r in rows:
        if r.base and r.base not in by_name:
            raise DataError(f"{where}: base {r.base!r} of {r.model!r} has no row of its own")
        if r.base and by_name[r.base].base:
            raise DataError(f"{where}: {r.model!r} is compared with {r.base!r}, which is itself a tuned model")
    return by_name


def resampled_scores(
    rows: Sequence[ModelScores], benchmarks: Sequence[str], replicates: int, rng: np.random.Generator
) -> np.ndarray:
    """[replicates, rows, benchmarks] scores with documents resampled with replacement, per benchmark.

    Resampling is paired: one draw of documents per benchmark and replicate is shared by every model, since all
    models answer the same documents. Rows without per-document grades keep their fixed score.
    """
    out = np.broadcast_to(score_matrix(rows, benchmarks), (replicates, len(rows), len(benchmarks))).copy()
    for k, bench in enumerate(benchmarks):
        holders = [i for i, r in enumerate(rows) if bench in r.docs]
        if not holders:
            continue
        doc_ids = sorted({d for i in holders for d in rows[i].docs[bench].ids})
        position = {d: j for j, d in enumerate(doc_ids)}
        weighted = np.zeros((len(holders), len(doc_ids)))
        weights = np.zeros((len(holders), len(doc_ids)))
        for h, i in enumerate(holders):
            grades = rows[i].docs[bench]
            cols = [position[d] for d in grades.ids]
            weighted[h, cols] = grades.values * grades.weights
            weights[h, cols] = grades.weights
        counts = rng.multinomial(len(doc_ids), np.full(len(doc_ids), 1.0 / len(doc_ids)), size=replicates)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, holders, k] = 100.0 * (counts @ weighted.T) / (counts @ weights.T)
    return out


def _attach_bootstrap_ci(results, rows, tuned, bases, benchmarks, columns, index, sigma, replicates, confidence, seed):
    rng = np.random.default_rng(seed)
    entities = list(rows)
    position = {r.model: i for i, r in enumerate(entities)}
    sample = resampled_scores(entities, benchmarks, replicates, rng)
    t_idx = [position[r.model] for r in tuned]
    b_idx = [position[b.model] for b in bases]
    domain, _ = domain_indexes(sample[:, t_idx], sample[:, b_idx], columns, index, sigma)
    ti = ti_from_domain(domain)
    changes = group_changes(sample[:, t_idx], sample[:, b_idx], columns)
    tail = (1.0 - confidence) / 2.0 * 100.0

    def interval(values: np.ndarray) -> tuple[float, float] | None:
        values = values[np.isfinite(values)]
        return tuple(float(v) for v in np.percentile(values, [tail, 100.0 - tail])) if values.size else None

    for i, result in enumerate(results):
        result.change_ci = {g: ci for g in GROUPS if (ci := interval(changes[g][:, i]))}
        result.domain_ci = {g: ci for g in GROUPS if (ci := interval(domain[g][:, i]))}
        if result.undefined:
            continue
        math_ci = result.domain_ci.get("math")
        if math_ci and math_ci[0] <= 0 <= math_ci[1]:
            result.unstable = (
                f"{_math_index(index)}'s {confidence:.0%} CI [{math_ci[0]:.3g}, {math_ci[1]:.3g}] includes 0: the math "
                "gain is within noise, so the TI (a ratio to it) and its CI are not to be trusted"
            )
        defined = np.isfinite(ti["other"][:, i]) & np.isfinite(ti["non"][:, i])
        result.ci_undefined_share = float(1.0 - defined.mean())
        if defined.any():
            for g in ("other", "non"):
                lo, hi = np.percentile(ti[g][defined, i], [tail, 100.0 - tail])
                result.ci[g] = (float(lo), float(hi))
