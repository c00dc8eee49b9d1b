"""Arms compared, not just listed: paired-bootstrap CIs of differences, from per-document grades.

One bootstrap draw of documents per benchmark and replicate is shared by every model (transfer.resampled_scores),
so the difference between two arms is resampled as a difference: the noise that both arms share (which documents
happened to be drawn) cancels, and what is left is the uncertainty of the difference itself. An arm with several
seeds is the mean of its seeds' values in each replicate; the spread across seeds is reported beside it
(`seed_spread`), since document resampling says nothing about how much another training seed would move.

The TIs here are v2 with σ pooled over every tuned model of the study, as in ti.json, recomputed in each replicate.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rtransfer.benchmarks.names import GROUPS
from rtransfer.report.tables import ti_flag
from rtransfer.transfer import (
    ModelScores,
    align_documents,
    compared_benchmarks,
    domain_indexes,
    group_changes,
    group_columns,
    group_resolution,
    resampled_scores,
    score_matrix,
    ti_from_domain,
)

QUANTITIES = ("Δmath", "Δother", "Δnon", "TI_other", "TI_non")


@dataclass
class Estimate:
    value: float  # NaN when undefined
    ci: tuple[float, float] | None  # percentile interval over the replicates where the value is defined
    undefined_share: float = 0.0  # share of replicates in which it was undefined (a TI whose math index fell ≤ 0)


@dataclass
class Difference:
    a: str  # arm
    b: str  # arm
    quantity: str  # one of QUANTITIES
    estimate: Estimate  # a − b
    flag: str = ""  # a TI difference: "undefined" / "unstable" when an arm's TI is, so it is not to be read

    @property
    def defined(self) -> bool:
        return bool(np.isfinite(self.estimate.value))


def interval(values: np.ndarray, confidence: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


class Resampled:
    """Per-model group changes, TIs, group mean scores and per-benchmark changes, at the point estimate (index 0)
    and in each of `bootstrap` paired replicates (1..), computed once for every comparison the report makes.

    `undefined`: models whose TI the study marked undefined (ti.json's "error"); their TI is NaN at the point
    estimate even where the ratio could be formed (a zero σ, a missing group: reasons only transferability knows).
    """

    def __init__(
        self,
        rows: Sequence[ModelScores],
        bootstrap: int,
        seed: int,
        confidence: float = 0.95,
        undefined: frozenset[str] = frozenset(),
    ):
        self.confidence = confidence
        rows, _ = align_documents(rows)  # like with like, as in transferability (the notes are its)
        self.benchmarks = compared_benchmarks(rows)
        columns = group_columns(self.benchmarks)
        point = score_matrix(rows, self.benchmarks)[None]
        has_docs = bootstrap > 0 and any(r.docs for r in rows)
        rng = np.random.default_rng(seed)
        sample = resampled_scores(rows, self.benchmarks, bootstrap, rng) if has_docs else point[:0]
        scores = np.concatenate([point, sample])  # [1 + replicates, rows, benchmarks]
        self.resampled = has_docs
        position = {r.model: i for i, r in enumerate(rows)}
        tuned = [r for r in rows if r.base]
        t_idx = [position[r.model] for r in tuned]
        b_idx = [position[r.base] for r in tuned]
        resolution = group_resolution(rows, self.benchmarks)
        domain, _ = domain_indexes(scores[:, t_idx], scores[:, b_idx], columns, "v2", "pooled", resolution)
        ti = ti_from_domain(domain)
        changes = group_changes(scores[:, t_idx], scores[:, b_idx], columns)
        self.values: dict[str, dict[str, np.ndarray]] = {}
        self.math_index = {r.model: domain["math"][:, i] for i, r in enumerate(tuned)}  # DI_math per replicate
        self.undefined = undefined
        for i, r in enumerate(tuned):
            v = {f"Δ{g}": changes[g][:, i] for g in GROUPS}
            for g in ("other", "non"):
                v[f"TI_{g}"] = ti[g][:, i].copy()
                if r.model in undefined:
                    v[f"TI_{g}"][0] = np.nan
            self.values[r.model] = v
        # A group's mean score (points): the change against a base that scores 0 everywhere.
        means = group_changes(scores, np.zeros_like(scores), columns)
        self.group_means = {r.model: {g: means[g][:, i] for g in GROUPS} for i, r in enumerate(rows)}
        self.bench_change = {
            r.model: {
                b: scores[:, position[r.model], k] - scores[:, position[r.base], k]
                for k, b in enumerate(self.benchmarks)
            }
            for r in tuned
        }

    def estimate(self, values: np.ndarray) -> Estimate:
        """Point estimate and CI of one quantity given as [1 + replicates] values."""
        reps = values[1:]
        if not reps.size:
            return Estimate(float(values[0]), None)
        finite = np.isfinite(reps)
        return Estimate(float(values[0]), interval(reps, self.confidence), float(1 - finite.mean()))

    def ti_flag(self, model: str) -> str:
        """As transfer.transferability flags a row: "undefined" without a math gain (DI_math ≤ 0, or the study
        said so), "unstable" when DI_math's CI includes 0, else ""."""
        math = self.math_index[model]
        if model in self.undefined or not math[0] > 0:
            return "undefined"
        ci = interval(math[1:], self.confidence) if math.size > 1 else None
        return "unstable" if ci and ci[0] <= 0 <= ci[1] else ""

    def arm_values(self, models: Sequence[str], quantity: str) -> np.ndarray:
        """An arm's value of a quantity per replicate: the mean over its seeds' models (NaN if any is NaN)."""
        return np.mean([self.values[m][quantity] for m in models], axis=0)

    def difference(self, a: Sequence[str], b: Sequence[str], quantity: str) -> Estimate:
        """Arm a − arm b, resampled as one quantity: each replicate's difference of the two arms' values."""
        return self.estimate(self.arm_values(a, quantity) - self.arm_values(b, quantity))


def compare_arms(
    resampled: Resampled,
    arms: dict[str, list[str]],
    pairs: Sequence[tuple[str, str]],
    flags: dict[str, str] | None = None,
) -> list[Difference]:
    """Every quantity's a − b for each pair of arms; a TI difference is flagged when a model of either arm has its
    TI flagged in `flags` (model → "undefined"/"unstable", as ti.json says)."""
    flags = flags or {}
    out = []
    for a, b in pairs:
        found = {flags.get(m, "") for m in [*arms[a], *arms[b]]}
        flag = "undefined" if "undefined" in found else "unstable" if "unstable" in found else ""
        for q in QUANTITIES:
            estimate = resampled.difference(arms[a], arms[b], q)
            out.append(Difference(a, b, q, estimate, flag if q.startswith("TI") else ""))
    return out


def arm_pairs(arms: Sequence[str], method_of: dict[str, str]) -> list[tuple[str, str]]:
    """Which arms to compare: every on-policy arm (onpolicy, grpo) against every off-policy one (sft), the
    question of the paper; then every other pair once, in the study's order."""
    on = [a for a in arms if method_of[a] in ON_POLICY]
    off = [a for a in arms if method_of[a] in OFF_POLICY]
    first = [(a, b) for a in on for b in off]
    rest = [(a, b) for i, a in enumerate(arms) for b in arms[i + 1 :] if (a, b) not in first and (b, a) not in first]
    return first + rest


ON_POLICY = ("onpolicy", "grpo")  # the policy's own samples: on-policy SFT and RL
OFF_POLICY = ("sft",)  # a teacher's traces


@dataclass
class Spread:
    arm: str
    quantity: str
    values: list[float]  # one per seed (NaN: undefined or unstable for that seed)
    flags: list[str]  # one per seed: a TI's "undefined" / "unstable", else ""
    mean: float
    sd: float  # sample standard deviation across seeds (ddof 1)
    low: float
    high: float


def seed_spread(ti_rows: Sequence[dict], arms: dict[str, list[str]]) -> list[Spread]:
    """For each arm with two or more seeds, each quantity's values across seeds (from ti.json), their mean,
    standard deviation and range: the training-seed variation that no document bootstrap sees. A seed whose TI is
    undefined or unstable has no TI value, and then the arm's TI has no mean, sd or range either."""
    by_model = {r["model"]: r for r in ti_rows}
    out = []
    for arm, models in arms.items():
        rows = [by_model[m] for m in models if m in by_model]
        if len(rows) < 2:
            continue
        for q in QUANTITIES:
            flags = [ti_flag(r.get("error"), r.get("unstable")) if q.startswith("TI") else "" for r in rows]
            values = np.array([np.nan if f else _quantity(r, q) for r, f in zip(rows, flags, strict=True)])
            if np.isfinite(values).all():
                stats = (values.mean(), values.std(ddof=1), values.min(), values.max())
            else:
                stats = (np.nan,) * 4
            out.append(Spread(arm, q, values.tolist(), flags, *(float(v) for v in stats)))
    return out


def _quantity(ti_row: dict, quantity: str) -> float:
    value = (ti_row.get("change") or {}).get(quantity[1:]) if quantity.startswith("Δ") else ti_row.get(quantity)
    return float("nan") if value is None else float(value)
