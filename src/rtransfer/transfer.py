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
from dataclasses import dataclass, field, replace

import numpy as np

from rtransfer.benchmarks.names import GROUPS, group_of
from rtransfer.errors import DataError, TransferabilityError
from rtransfer.records import Record, doc_grades

INDEXES = ("v1", "v2")
SIGMAS = ("pooled", "model")


@dataclass
class DocGrades:
    """Per-document grades of one model on one benchmark, for resampling.

    value: the document's grade in [0, 1] (mean over its samples); weight: its share of the metric (1, unless
    the metric is a ratio such as IFEval's instruction-level accuracy, where it is the instruction count).
    samples: [documents, k] grades of each sample, NaN where a sample was not answered (None when only the means
    are known), so that models can be compared on the samples they all answered.
    """

    ids: list[str]
    values: np.ndarray
    weights: np.ndarray
    samples: np.ndarray | None = None

    @classmethod
    def from_records(cls, records: Sequence[Record]) -> "DocGrades":
        """Grades from run records: the per-document means of records.doc_grades (which refuses an ungraded
        sample), and each sample's grade beside them."""
        ids, values, weights = doc_grades(records)
        position = {d: i for i, d in enumerate(ids)}
        samples = np.full((len(ids), 1 + max((r.sample for r in records), default=0)), np.nan)
        for r in records:
            samples[position[r.doc_id], r.sample] = r.grade
        return cls(ids, values, weights, samples)

    def score(self) -> float:
        return float(100.0 * np.sum(self.values * self.weights) / np.sum(self.weights))

    def resolution(self) -> float:
        """The smallest step of the score in points: one sample of the lightest document."""
        k = 1 if self.samples is None else self.samples.shape[1]
        return float(100.0 * np.min(self.weights) / np.sum(self.weights) / k)

    def restrict(self, ids: Sequence[str], sample_mask: np.ndarray | None) -> "DocGrades":
        """These documents only, in this order, each averaged over the samples its mask row keeps."""
        position = {d: i for i, d in enumerate(self.ids)}
        rows = [position[d] for d in ids]
        if self.samples is None or sample_mask is None:
            return DocGrades(list(ids), self.values[rows], self.weights[rows])
        k = sample_mask.shape[1]
        kept = np.where(sample_mask, self.samples[rows, :k], np.nan)
        return DocGrades(list(ids), np.nanmean(kept, axis=1), self.weights[rows], kept)


@dataclass
class ModelScores:
    """One row of a scores table: a model, the base it is compared with (None for a base), its scores."""

    model: str
    base: str | None
    scores: dict[str, float]  # canonical benchmark name -> 0..100
    method: str = ""
    docs: dict[str, DocGrades] = field(default_factory=dict)  # where per-sample records exist
    # The smallest step of each score in points (a table's last decimal; one sample's share in a run), below
    # which two gains cannot be told apart. Missing: only floating-point noise is ruled out.
    resolution: dict[str, float] = field(default_factory=dict)
    # A hash of each benchmark's loaded documents (a run's manifest): runs that loaded other contents under the
    # same ids (another data folder, seed or version) are not comparing the same documents.
    provenance: dict[str, str] = field(default_factory=dict)

    def step(self, benchmark: str) -> float:
        if benchmark in self.docs:
            return self.docs[benchmark].resolution()
        return self.resolution.get(benchmark, 0.0)


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
    # Documents per benchmark that the comparison used, where per-document grades exist (the ones every model
    # compared in the call answered), and what was left out to compare like with like.
    n: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

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
        if self.n:
            out["n"] = self.n
        if self.notes:
            out["notes"] = self.notes
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
            n=row.get("n") or {},
            notes=row.get("notes") or [],
        )


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def group_columns(benchmarks: Sequence[str]) -> dict[str, np.ndarray]:
    return {g: np.array([i for i, b in enumerate(benchmarks) if group_of(b) == g], dtype=int) for g in GROUPS}


def domain_indexes(
    tuned: np.ndarray,
    base: np.ndarray,
    columns: dict[str, np.ndarray],
    index: str = "v2",
    sigma: str = "pooled",
    resolution: dict[str, float] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-group ΔR_g (v1) or DI_g (v2) for arrays of shape [replicates, rows, benchmarks].

    NaN marks a missing score; a group whose scores are all missing gives NaN. A v2 group whose σ is below
    sigma_floor (its gains are equal within the scores' resolution, `resolution[g]` points) while its gains are
    not all zero gives NaN too: z-normalising by a σ that is rounding noise would print any number. Returns
    (domain, sigma), each group mapping to an array [replicates, rows].
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
            pooled_over = (-2, -1) if sigma == "pooled" else (-1,)
            s = np.expand_dims(_nanstd(g_gain, axis=pooled_over), pooled_over)
            floor = np.expand_dims(sigma_floor(present.sum(axis=pooled_over), (resolution or {}).get(g)), pooled_over)
            sigmas[g] = np.broadcast_to(s[..., 0], g_gain.shape[:-1])
            # A zero gain (to float precision) contributes zero, also where σ is zero (all gains zero), not 0/0.
            delta = np.where(np.abs(g_gain) < FLOAT_NOISE, 0.0, np.where(s >= floor, g_gain / s, np.nan))
            signed_root = np.sign(delta) * np.sqrt(np.abs(delta))
            weight = np.where(present, 100.0 - g_base, 0.0)
            weight = weight / weight.sum(axis=-1, keepdims=True)
            di = np.where(present, weight * signed_root, 0.0).sum(axis=-1)
            domain[g] = np.where(present.any(axis=-1), di, np.nan)
    return domain, sigmas


FLOAT_NOISE = 1e-6  # points: gains closer than this differ only by floating-point rounding


def sigma_floor(n: np.ndarray | int, resolution: float | None) -> np.ndarray:
    """The smallest σ that tells n gains apart, for scores with steps of `resolution` points.

    n gains on a grid of step r that are not all equal have a population σ of at least r·√(n−1)/n (all equal
    but one, one step away); half of it separates "equal within the resolution" from "different". Below
    FLOAT_NOISE, σ is floating-point noise whatever the resolution.
    """
    n = np.maximum(np.asarray(n, dtype=float), 1.0)
    return np.maximum((resolution or 0.0) * np.sqrt(n - 1.0) / n / 2.0, FLOAT_NOISE)


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


def _math_direction(row: ModelScores, base: ModelScores, benches: list[str], index: str) -> float:
    """The sign of the math index without σ: σ scales every v2 term alike (√|Δ/σ|), so Σ w·sign(Δ)·√|Δ| has
    DI_math's sign even where σ itself is not resolved; v1's ΔR_math has no σ."""
    gains = np.array([row.scores[b] - base.scores[b] for b in benches])
    if index == "v1":
        return float(np.mean(gains / np.array([base.scores[b] for b in benches])))
    weights = np.array([100.0 - base.scores[b] for b in benches])
    gains = np.where(np.abs(gains) < FLOAT_NOISE, 0.0, gains)
    return float(np.sum(weights * np.sign(gains) * np.sqrt(np.abs(gains))))


def _why_undefined(
    row: ModelScores, base: ModelScores, used: dict[str, list[str]], index, domain, sigma, how
) -> str | None:
    """The first real cause, in order: a group not compared, a v1 base of zero, no math gain, then a σ that the
    scores' resolution cannot tell from zero (a model that lost math is said to have lost it, whatever σ)."""
    for g, benches in used.items():
        if not benches:
            return f"no {g} benchmark scored for both {row.model!r} and its base {base.model!r}"
    if index == "v1":
        zeros = [b for benches in used.values() for b in benches if base.scores[b] == 0]
        if zeros:
            return f"v1 is undefined: base {base.model!r} scores 0 on {', '.join(zeros)}"
    what = _math_index(index)
    direction = _math_direction(row, base, used["math"], index)
    if direction == 0:
        return f"{what} is zero (no math gain over the base), so the TI is undefined"
    if direction < 0:
        change = np.mean([row.scores[b] - base.scores[b] for b in used["math"]])
        return (
            f"the model lost math ({what} < 0, math change {change:+.3g} points): a ratio to a math loss flips the "
            "TI's sign, so the TI is undefined (the group changes say what happened)"
        )
    for g, s in sigma.items():
        if not np.isfinite(domain[g]):  # NaN only where σ is unresolved while some gain is not zero
            return _sigma_unresolved(g, s, *how[g])
    if not domain["math"] > 0:
        return f"{what} is {domain['math']:.3g}, so the TI is undefined"
    return None


def _sigma_unresolved(group: str, s: float, n: int, resolution: float, sigma: str) -> str:
    """Why a σ over n gains cannot z-normalise a group's gains, and the ways out that apply."""
    if n == 1:
        cause = f"σ of the {group} group is taken over a single gain (zero by definition)"
    elif not resolution:
        cause = f"σ of the {group} group is zero: its {n} gains are equal"
    else:
        floor = float(sigma_floor(n, resolution))
        cause = (
            f"σ of the {group} group is {s:.2g}, below {floor:.2g}: its {n} gains are equal within the scores' "
            f"resolution ({resolution:.2g} points)"
        )
    outs = ["--index v1 (relative gains, no σ)", f"more {group} benchmarks"]
    if sigma == "model":
        outs.append("--sigma pooled (σ over the gains of every model compared)")
    else:
        outs.append("more tuned models in one call (σ pooled over their gains)")
    return f"{cause}: its gains cannot be z-normalised; ways out: {'; '.join(outs)}"


def score_matrix(rows: Sequence[ModelScores], benchmarks: Sequence[str]) -> np.ndarray:
    """[rows, benchmarks] array of scores, NaN where a row has none."""
    return np.array([[r.scores.get(b, np.nan) for b in benchmarks] for r in rows], dtype=float).reshape(
        len(rows), len(benchmarks)
    )


def compared_benchmarks(rows: Sequence[ModelScores]) -> list[str]:
    seen = {b for r in rows for b in r.scores}
    return sorted(seen, key=lambda b: (GROUPS.index(group_of(b)), b))


def group_resolution(rows: Sequence[ModelScores], benchmarks: Sequence[str]) -> dict[str, float]:
    """Each group's finest known score step over the rows compared (0 where none is known). The finest, not the
    coarsest: AIME's 30 problems move in 3.3-point steps while MATH-500's move in 0.2, and gains that MATH-500's grid
    tells apart are a spread; the floor only has to catch gains that no score's grid can tell apart."""
    steps = {}
    for g in GROUPS:
        known = [r.step(b) for b in benchmarks if group_of(b) == g for r in rows if b in r.scores]
        steps[g] = min((s for s in known if s > 0), default=0.0)
    return steps


def align_documents(rows: Sequence[ModelScores], strict: bool = False) -> tuple[list[ModelScores], list[str]]:
    """The rows with per-document grades restricted, per benchmark, to the (document, sample) pairs that every
    row holding such grades answered, so that scores compare like with like and bootstrap draws are paired.

    Two runs made with other --limit (or an interrupted one) would otherwise compare a model on 200 documents
    with its base on 40. Restricting is the default: the common set is a valid paired comparison, and it keeps
    an extended or unfinished run usable; each restriction is named in a note. `strict` refuses instead. Rows
    with a fixed score (a table, lm-eval aggregates) cannot be checked; a note says so when others could.
    """
    rows = [replace(r, docs=dict(r.docs), scores=dict(r.scores)) for r in rows]
    notes = []
    for bench in compared_benchmarks(rows):
        holders = [r for r in rows if bench in r.docs]
        fixed = [r.model for r in rows if bench in r.scores and bench not in r.docs]
        if holders and fixed:
            notes.append(
                f"{bench}: {', '.join(fixed)} has no per-document records, so its score cannot be checked to be on "
                "the same documents as the others'"
            )
        if len(holders) < 2:
            continue
        contents = {r.provenance[bench] for r in holders if bench in r.provenance}
        if len(contents) > 1:
            hashes = ", ".join(f"{r.model}: {r.provenance[bench]}" for r in holders if bench in r.provenance)
            if strict:
                raise TransferabilityError(f"--strict: {bench} was loaded with different contents ({hashes})")
            notes.append(
                f"{bench}: the runs loaded documents with different contents under the same ids ({hashes}: another "
                "data folder, seed or benchmark version); compared by id all the same"
            )
        ids, mask = _common_samples([r.docs[bench] for r in holders])
        sizes = [(r.model, len(r.docs[bench].ids), _sample_count(r.docs[bench])) for r in holders]
        if all(n == len(ids) and k == mask.sum() for _, n, k in sizes):
            continue
        described = ", ".join(f"{m}: {n} documents" + (f" ({k} samples)" if k != n else "") for m, n, k in sizes)
        if strict:
            raise TransferabilityError(
                f"--strict: {bench} was scored on different documents or samples ({described}); evaluate every model "
                f"with the same --limit and samples, or drop --strict to compare on the {len(ids)} documents they share"
            )
        if not ids:
            for r in holders:
                del r.docs[bench], r.scores[bench]
            notes.append(f"{bench}: no document was answered by every model ({described}); left out")
            continue
        for r in holders:
            r.docs[bench] = r.docs[bench].restrict(ids, mask)
            r.scores[bench] = r.docs[bench].score()
        notes.append(
            f"{bench}: compared on the {len(ids)} documents ({int(mask.sum())} samples) that every model answered "
            f"({described}); --strict refuses instead"
        )
    return rows, notes


def _sample_count(grades: DocGrades) -> int:
    return len(grades.ids) if grades.samples is None else int(np.isfinite(grades.samples).sum())


def _common_samples(grades: Sequence[DocGrades]) -> tuple[list[str], np.ndarray]:
    """The documents every one holds (in the first one's order) and, per document, the samples every one holds."""
    shared = set.intersection(*(set(g.ids) for g in grades))
    ids = [d for d in grades[0].ids if d in shared]
    k = max(1 if g.samples is None else g.samples.shape[1] for g in grades)
    mask = np.ones((len(ids), k), dtype=bool)
    for g in grades:
        if g.samples is None:  # only the mean is known: its samples cannot be matched, so all of them count
            continue
        position = {d: i for i, d in enumerate(g.ids)}
        held = np.isfinite(g.samples[[position[d] for d in ids]])
        mask[:, : held.shape[1]] &= held
        mask[:, held.shape[1] :] = False
    keep = mask.any(axis=1)
    return [d for d, kept in zip(ids, keep, strict=True) if kept], mask[keep]


def transferability(
    rows: Sequence[ModelScores],
    index: str = "v2",
    sigma: str = "pooled",
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    strict: bool = False,
) -> list[TIResult]:
    """TI of every row that has a base. Rows whose TI is undefined carry the reason in `undefined`.

    Rows with per-document grades are first compared on the documents they all answered (align_documents;
    `strict` refuses instead); each result names what was left out in `notes` and the documents used in `n`.
    """
    check_rows(rows)
    rows, notes = align_documents(rows, strict)
    by_name = {r.model: r for r in rows}
    tuned = [r for r in rows if r.base]
    if not tuned:
        raise TransferabilityError("no row names a base model, so there is nothing to compare")
    bases = [by_name[r.base] for r in tuned]
    benchmarks = compared_benchmarks(rows)
    columns = group_columns(benchmarks)
    resolution = group_resolution(rows, benchmarks)
    tuned_scores, base_scores = score_matrix(tuned, benchmarks), score_matrix(bases, benchmarks)
    domain, sigmas = domain_indexes(tuned_scores[None], base_scores[None], columns, index, sigma, resolution)
    ti = ti_from_domain(domain)
    changes = group_changes(tuned_scores[None], base_scores[None], columns)
    present = np.isfinite(tuned_scores - base_scores)
    results = []
    for i, (row, base) in enumerate(zip(tuned, bases, strict=True)):
        row_domain = {g: float(domain[g][0, i]) for g in GROUPS}
        row_sigma = {g: float(s[0, i]) for g, s in sigmas.items()}
        used = {
            g: [benchmarks[j] for j in cols if benchmarks[j] in row.scores and benchmarks[j] in base.scores]
            for g, cols in columns.items()
        }
        gains = {
            g: int(present[:, cols].sum() if sigma == "pooled" else present[i, cols].sum())
            for g, cols in columns.items()
        }
        how = {g: (gains[g], resolution[g], sigma) for g in GROUPS}  # what σ was taken over, for the message
        undefined = _why_undefined(row, base, used, index, row_domain, row_sigma, how)
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
                n={b: len(row.docs[b].ids) for bs in used.values() for b in bs if b in row.docs and b in base.docs},
                notes=notes,
            )
        )
    if bootstrap and any(r.docs for r in rows):
        _attach_bootstrap_ci(
            results, rows, tuned, bases, benchmarks, columns, index, sigma, bootstrap, confidence, seed, resolution
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
        if r.base == r.model:
            raise DataError(f"{where}: {r.model!r} names itself as its base")
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


def _attach_bootstrap_ci(
    results, rows, tuned, bases, benchmarks, columns, index, sigma, replicates, confidence, seed, resolution
):
    rng = np.random.default_rng(seed)
    entities = list(rows)
    position = {r.model: i for i, r in enumerate(entities)}
    sample = resampled_scores(entities, benchmarks, replicates, rng)
    t_idx = [position[r.model] for r in tuned]
    b_idx = [position[b.model] for b in bases]
    domain, _ = domain_indexes(sample[:, t_idx], sample[:, b_idx], columns, index, sigma, resolution)
    ti = ti_from_domain(domain)
    changes = group_changes(sample[:, t_idx], sample[:, b_idx], columns)
    for i, result in enumerate(results):
        result.change_ci = {g: ci for g in GROUPS if (ci := percentile_interval(changes[g][:, i], confidence))}
        result.domain_ci = {g: ci for g in GROUPS if (ci := percentile_interval(domain[g][:, i], confidence))}
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
                result.ci[g] = percentile_interval(ti[g][defined, i], confidence)


def percentile_interval(values: np.ndarray | Sequence[float], confidence: float) -> tuple[float, float] | None:
    """The percentile interval of bootstrap replicates at `confidence` (0.95: the 2.5th and 97.5th percentiles),
    over the finite replicates only (a replicate where the quantity is undefined is NaN); None when none is.
    Every CI of rtransfer (scores, TIs, comparisons, probes) is this one."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)


def ti_flag(undefined: str | None, unstable: str | None) -> str:
    """ "undefined", "unstable" or "": why a TI is not to be read (its math index is ≤ 0, or its CI includes 0)."""
    return "undefined" if undefined else "unstable" if unstable else ""
