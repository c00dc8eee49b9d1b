"""Every comparison a study makes beside its TI table, computed once with the study's [ti] settings:
comparisons.json. The report renders it and computes nothing.

What is compared (all from per-document grades, resampled as in transfer.transferability):
- each model's group mean scores, and each tuned model's change vs its base per benchmark;
- arm a − arm b of every group change and TI: paired-bootstrap CIs of differences. One draw of documents per
  benchmark and replicate is shared by every model (transfer.resampled_scores), so the noise that both arms share
  (which documents happened to be drawn) cancels, and what is left is the uncertainty of the difference itself. An
  arm with several seeds is the mean of its seeds' values in each replicate;
- the spread of each quantity across an arm's training seeds (from the TI table): the variation that document
  resampling does not see;
- the group changes and TI of each evaluated checkpoint (TI over training steps), σ pooled over every point, and
  where transfer fell measurably below zero on the way and whether it came back (paired: last point − dip);
- what each trained model saw (its train.json's `seen`: distinct queries, sequences, loss tokens, optimiser steps),
  carried beside the TI so that arms trained on very different amounts of data are read with care.

The index (v1 | v2), σ, replicates, confidence and seed are the study's (`Settings`, which is
study.config.TIConfig), the same as its ti.json: with the same seed, the first resampling here draws the same
documents as the TI table's.
Hand-written: the paired arm differences and the seed spread are the study's question (on- vs off-policy), which no
statistics package phrases; the arithmetic itself is transfer.py's.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from rtransfer.benchmarks.names import GROUPS, group_of
from rtransfer.errors import DataError
from rtransfer.transfer import (
    INDEXES,
    SIGMAS,
    ModelScores,
    align_documents,
    compared_benchmarks,
    domain_indexes,
    group_changes,
    group_columns,
    group_resolution,
    percentile_interval,
    resampled_scores,
    score_matrix,
    ti_flag,
    ti_from_domain,
    transferability,
)

VERSION = 1  # of comparisons.json's format
QUANTITIES = ("Δmath", "Δother", "Δnon", "TI_other", "TI_non")
SEEN = ("queries", "sequences", "tokens", "steps")  # train.json's `seen` (train/outputs.py)
SEEN_APART = 2.0  # arms whose mean tokens or queries differ by more than this factor saw different amounts of data


@dataclass(frozen=True)
class Settings:
    """How every TI and CI of a study is computed: a study config's [ti] table (study.config.TIConfig is this
    class), with its defaults (what a report of plain run directories uses)."""

    index: str = "v2"  # v1 | v2
    sigma: str = "pooled"  # pooled | model (v2): σ_g pooled over the study's own models (base and arms)
    bootstrap: int = 1000  # paired-bootstrap replicates over documents (0: no CI)
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self):
        if self.index not in INDEXES:
            raise DataError(f"[ti] index {self.index!r}: choose from {', '.join(INDEXES)}")
        if self.sigma not in SIGMAS:
            raise DataError(f"[ti] sigma {self.sigma!r}: choose from {', '.join(SIGMAS)}")
        if not 0 < self.confidence < 1:
            raise DataError(f"[ti] confidence {self.confidence}: must lie between 0 and 1")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Settings":
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise DataError(f"[ti]: unknown settings {', '.join(sorted(unknown))} (known: {', '.join(sorted(names))})")
        return cls(**values)

    @property
    def math_index(self) -> str:
        """The name of the math index a TI divides by, as ti.json's keys spell it (DI_math / dR_math)."""
        return f"{self.domain_prefix}_math"

    @property
    def domain_prefix(self) -> str:
        return "DI" if self.index == "v2" else "dR"


def ti_table(rows: Sequence[ModelScores], settings: Settings):
    """transfer.transferability with these settings: the study's ti.json rows (TIResult)."""
    s = settings
    return transferability(
        rows, index=s.index, sigma=s.sigma, bootstrap=s.bootstrap, confidence=s.confidence, seed=s.seed
    )


@dataclass
class Estimate:
    value: float  # NaN when undefined
    ci: tuple[float, float] | None  # percentile interval over the replicates where the value is defined
    undefined_share: float = 0.0  # share of replicates in which it was undefined (a TI whose math index fell ≤ 0)

    def as_dict(self) -> dict[str, Any]:
        return {"value": _json_float(self.value), "ci": list(self.ci) if self.ci else None} | {
            "undefined_share": self.undefined_share
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Estimate":
        ci = d.get("ci")
        return cls(_float(d.get("value")), tuple(ci) if ci else None, d.get("undefined_share", 0.0))


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


@dataclass
class Arm:
    """An arm: its models (one per training seed), its training method and that method's policy (on | off, from
    train.methods.policy_of; None for a method the registry does not know)."""

    models: list[str]
    method: str = ""
    policy: str | None = None


@dataclass
class Change:
    """A tuned model's change vs its base on one benchmark, with the two scores it is the difference of."""

    base_score: float
    score: float
    estimate: Estimate


@dataclass
class StepPoint:
    """One evaluated checkpoint (or the final model) of a tuned model: each quantity, TIs NaN where flagged."""

    flag: str  # the TI's "undefined" / "unstable" at this step, else ""
    values: dict[str, Estimate]  # quantity -> estimate


TRANSFER = ("Δother", "Δnon")  # the group changes that are transfer (math is what training aims at)


@dataclass
class Dip:
    """A tuned model's transfer measurably below zero at a checkpoint before its last point (the lowest point whose
    CI lies wholly below 0), and the way back from there to the last point: last − dip in each replicate, paired."""

    model: str
    quantity: str  # one of TRANSFER
    step: int
    at: Estimate
    last_step: int
    last: Estimate
    recovery: Estimate  # last − at

    @property
    def verdict(self) -> str:
        """Recovered: measurably back (the way back's CI above 0) and no measurable loss left at the end; partly
        recovered: measurably back but still measurably below 0; did not recover: no measurable way back."""
        back = self.recovery.ci is not None and self.recovery.ci[0] > 0
        still_down = self.last.ci is not None and self.last.ci[1] < 0
        return "partly recovered" if back and still_down else "recovered" if back else "did not recover"

    def as_dict(self) -> dict[str, Any]:
        plain = {k: getattr(self, k) for k in ("model", "quantity", "step", "last_step")}
        return plain | {k: getattr(self, k).as_dict() for k in ("at", "last", "recovery")} | {"verdict": self.verdict}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Dip":
        plain = {k: d[k] for k in ("model", "quantity", "step", "last_step")}
        return cls(**plain, **{k: Estimate.from_dict(d[k]) for k in ("at", "last", "recovery")})


class Resampled:
    """Per-model group changes, TIs, group mean scores and per-benchmark changes, at the point estimate (index 0)
    and in each of `bootstrap` paired replicates (1..), computed once for every comparison.

    `undefined`: models whose TI the TI table marked undefined (TIResult.undefined); their TI is NaN at the point
    estimate even where the ratio could be formed (a zero σ, a missing group: reasons only transferability knows).
    """

    def __init__(
        self,
        rows: Sequence[ModelScores],
        bootstrap: int,
        seed: int,
        confidence: float = 0.95,
        undefined: frozenset[str] = frozenset(),
        index: str = "v2",
        sigma: str = "pooled",
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
        domain, _ = domain_indexes(scores[:, t_idx], scores[:, b_idx], columns, index, sigma, resolution)
        ti = ti_from_domain(domain)
        changes = group_changes(scores[:, t_idx], scores[:, b_idx], columns)
        self.values: dict[str, dict[str, np.ndarray]] = {}
        self.math_index = {r.model: domain["math"][:, i] for i, r in enumerate(tuned)}  # DI/ΔR_math per replicate
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
        self.scores = {r.model: dict(zip(self.benchmarks, point[0, position[r.model]], strict=True)) for r in rows}
        self.bench_change = {
            r.model: {
                b: scores[:, position[r.model], k] - scores[:, position[r.base], k]
                for k, b in enumerate(self.benchmarks)
            }
            for r in tuned
        }
        self.base_of = {r.model: r.base for r in tuned}
        # The documents each benchmark is compared on (the ones every row answered), where grades are per document.
        self.documents = {b: len(r.docs[b].ids) for r in rows for b in self.benchmarks if b in r.docs}

    def estimate(self, values: np.ndarray) -> Estimate:
        """Point estimate and CI of one quantity given as [1 + replicates] values."""
        reps = values[1:]
        if not reps.size:
            return Estimate(float(values[0]), None)
        finite = np.isfinite(reps)
        return Estimate(float(values[0]), percentile_interval(reps, self.confidence), float(1 - finite.mean()))

    def ti_flag(self, model: str) -> str:
        """As transfer.transferability flags a row: "undefined" without a math gain (a math index ≤ 0, or the TI
        table said so), "unstable" when the math index's CI includes 0, else ""."""
        math_index = self.math_index[model]
        if model in self.undefined or not math_index[0] > 0:
            return "undefined"
        ci = percentile_interval(math_index[1:], self.confidence) if math_index.size > 1 else None
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
    TI flagged in `flags` (model → "undefined"/"unstable", as the TI table says)."""
    flags = flags or {}
    out = []
    for a, b in pairs:
        found = {flags.get(m, "") for m in [*arms[a], *arms[b]]}
        flag = "undefined" if "undefined" in found else "unstable" if "unstable" in found else ""
        for q in QUANTITIES:
            estimate = resampled.difference(arms[a], arms[b], q)
            out.append(Difference(a, b, q, estimate, flag if q.startswith("TI") else ""))
    return out


def arm_pairs(arms: Sequence[str], policy_of: dict[str, str | None]) -> list[tuple[str, str]]:
    """Which arms to compare: every on-policy arm against every off-policy one, the question of the paper; then
    every other pair once, in the study's order."""
    on = [a for a in arms if policy_of.get(a) == "on"]
    off = [a for a in arms if policy_of.get(a) == "off"]
    first = [(a, b) for a in on for b in off]
    rest = [(a, b) for i, a in enumerate(arms) for b in arms[i + 1 :] if (a, b) not in first and (b, a) not in first]
    return first + rest


def seed_spread(ti_rows: Sequence[dict], arms: dict[str, list[str]]) -> list[Spread]:
    """For each arm with two or more seeds, each quantity's values across seeds (from the TI table's rows), their
    mean, standard deviation and range: the training-seed variation that no document bootstrap sees. A seed whose
    TI is undefined or unstable has no TI value, and then the arm's TI has no mean, sd or range either."""
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


def step_points(
    rows: Sequence[ModelScores], steps: dict[str, dict[int, ModelScores]], settings: Settings
) -> tuple[dict[str, dict[int, StepPoint]], list[Dip], dict[str, int]]:
    """Each tuned model's quantities at each of its points (`steps`: model -> step -> its scores there, the final
    model included), resampled together with the untuned rows of `rows` (the bases); a pooled σ is pooled over every
    point. And the dips of its transfer on the way (`transfer_dips`), and the documents per benchmark every point
    was measured on (checkpoints evaluated on fewer documents restrict the final model and base to those)."""
    if not steps:
        return {}, [], {}
    base_of = {r.model: r.base for r in rows}
    points, names = [r for r in rows if not r.base], {}
    for model, by_step in steps.items():
        for step, row in sorted(by_step.items()):
            name = _point_name(model, step)
            names[name] = (model, step)
            points.append(replace(row, model=name, base=base_of[model]))
    s = settings
    res = Resampled(points, s.bootstrap, s.seed, s.confidence, index=s.index, sigma=s.sigma)
    out: dict[str, dict[int, StepPoint]] = {}
    for name, (model, step) in names.items():
        flag = res.ti_flag(name)
        values = {q: res.estimate(res.values[name][q]) for q in QUANTITIES}
        if flag:  # a TI not to be read is neither shown nor drawn
            values |= {q: Estimate(float("nan"), None) for q in QUANTITIES if q.startswith("TI")}
        out.setdefault(model, {})[step] = StepPoint(flag, values)
    return out, transfer_dips(res, out), res.documents


def _point_name(model: str, step: int) -> str:
    return f"{model}@{step}"


def transfer_dips(res: Resampled, points: dict[str, dict[int, StepPoint]]) -> list[Dip]:
    """For each tuned model and transfer group: its lowest point before the last whose CI lies wholly below 0, if
    any, with the paired change from there to the last point (each point's replicates in `res`, as step_points
    named them).
    Pointwise CIs: the more checkpoints, the likelier one of them dips by chance, which the report says beside it."""
    dips = []
    for model, by_step in points.items():
        last_step = max(by_step)
        for q in TRANSFER:
            below = [
                (p.values[q].value, step)
                for step, p in by_step.items()
                if step != last_step and p.values[q].ci is not None and p.values[q].ci[1] < 0
            ]
            if below:
                step = min(below)[1]
                way_back = res.values[_point_name(model, last_step)][q] - res.values[_point_name(model, step)][q]
                at, last = by_step[step].values[q], by_step[last_step].values[q]
                dips.append(Dip(model, q, step, at, last_step, last, res.estimate(way_back)))
    return dips


@dataclass
class Comparisons:
    """comparisons.json, read back with the same class (`from_dict(as_dict())` is the identity)."""

    settings: Settings
    resampled: bool  # per-document grades existed and bootstrap > 0: the estimates carry CIs
    benchmarks: list[str]
    arms: dict[str, Arm]
    group_means: dict[str, dict[str, Estimate]]  # model -> group -> mean score (points)
    changes: dict[str, dict[str, Change]]  # tuned model -> benchmark -> change vs its base (scored by both)
    differences: list[Difference]
    spread: list[Spread]
    steps: dict[str, dict[int, StepPoint]] = field(default_factory=dict)  # tuned model -> step -> point
    dips: list[Dip] = field(default_factory=list)  # transfer that fell measurably during training, and came back?
    documents: dict[str, int] = field(default_factory=dict)  # benchmark -> documents compared (per-document grades)
    step_documents: dict[str, int] = field(default_factory=dict)  # benchmark -> documents of the steps' points
    notes: list[str] = field(default_factory=list)  # what reading the run directories noticed
    seen: dict[str, dict[str, int]] = field(default_factory=dict)  # trained model -> its train.json's `seen`

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "settings": asdict(self.settings),
            "resampled": self.resampled,
            "benchmarks": self.benchmarks,
            "arms": {a: asdict(arm) for a, arm in self.arms.items()},
            "group_means": {m: {g: e.as_dict() for g, e in by.items()} for m, by in self.group_means.items()},
            "changes": {
                m: {b: {"base_score": c.base_score, "score": c.score, **c.estimate.as_dict()} for b, c in by.items()}
                for m, by in self.changes.items()
            },
            "differences": [
                {"a": d.a, "b": d.b, "quantity": d.quantity, **d.estimate.as_dict(), "flag": d.flag}
                for d in self.differences
            ],
            "spread": [
                {"arm": s.arm, "quantity": s.quantity, "values": [_json_float(v) for v in s.values], "flags": s.flags}
                | {k: _json_float(getattr(s, k)) for k in ("mean", "sd", "low", "high")}
                for s in self.spread
            ],
            "steps": {
                m: [
                    {"step": step, "flag": p.flag, "values": {q: e.as_dict() for q, e in p.values.items()}}
                    for step, p in sorted(by.items())
                ]
                for m, by in self.steps.items()
            },
            "dips": [d.as_dict() for d in self.dips],
            "documents": self.documents,
            "step_documents": self.step_documents,
            "notes": self.notes,
            "seen": self.seen,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Comparisons":
        if d.get("version") != VERSION:
            raise DataError(f"comparisons.json version {d.get('version')!r}: this rtransfer reads version {VERSION}")
        est = Estimate.from_dict
        return cls(
            settings=Settings.from_dict(d["settings"]),
            resampled=d["resampled"],
            benchmarks=list(d["benchmarks"]),
            arms={a: Arm(**arm) for a, arm in d["arms"].items()},
            group_means={m: {g: est(e) for g, e in by.items()} for m, by in d["group_means"].items()},
            changes={
                m: {b: Change(c["base_score"], c["score"], est(c)) for b, c in by.items()}
                for m, by in d["changes"].items()
            },
            differences=[Difference(x["a"], x["b"], x["quantity"], est(x), x["flag"]) for x in d["differences"]],
            spread=[
                Spread(
                    **{k: s[k] for k in ("arm", "quantity", "flags")},
                    values=[_float(v) for v in s["values"]],
                    **{k: _float(s[k]) for k in ("mean", "sd", "low", "high")},
                )
                for s in d["spread"]
            ],
            steps={
                m: {p["step"]: StepPoint(p["flag"], {q: est(e) for q, e in p["values"].items()}) for p in points}
                for m, points in d["steps"].items()
            },
            dips=[Dip.from_dict(x) for x in d.get("dips", [])],
            documents=dict(d.get("documents") or {}),
            step_documents=dict(d.get("step_documents") or {}),
            notes=list(d["notes"]),
            seen={m: dict(counts) for m, counts in (d.get("seen") or {}).items()},
        )


def compare(
    rows: Sequence[ModelScores],
    ti_rows: Sequence[dict],
    arms: dict[str, Arm],
    settings: Settings,
    steps: dict[str, dict[int, ModelScores]] | None = None,
    notes: Sequence[str] = (),
    seen: dict[str, dict[str, int]] | None = None,
) -> Comparisons:
    """Every comparison of a study, from its rows (per-document grades where records exist; `base` names the row a
    tuned one is compared with), its TI table's rows (TIResult.as_dict, computed with the same `settings`: the
    flags and the seed spread are its), its arms and, for the TI over steps, each tuned model's evaluated points;
    `seen` (model -> train.json's `seen`) is carried as it is.
    """
    s = settings
    undefined = frozenset(r["model"] for r in ti_rows if r.get("error"))
    res = Resampled(rows, s.bootstrap, s.seed, s.confidence, undefined, s.index, s.sigma)
    flags = {r["model"]: ti_flag(r.get("error"), r.get("unstable")) for r in ti_rows}
    members = {a: arm.models for a, arm in arms.items()}
    pairs = arm_pairs(list(arms), {a: arm.policy for a, arm in arms.items()})
    points, dips, step_documents = step_points(rows, steps or {}, s)
    changes = {}
    for model, by_bench in res.bench_change.items():
        base = res.base_of[model]
        changes[model] = {
            b: Change(res.scores[base][b], res.scores[model][b], est)
            for b, values in by_bench.items()
            if math.isfinite((est := res.estimate(values)).value)  # NaN: not scored for both
        }
    return Comparisons(
        settings=s,
        resampled=res.resampled,
        benchmarks=res.benchmarks,
        arms=dict(arms),
        group_means={m: {g: res.estimate(v) for g, v in by.items()} for m, by in res.group_means.items()},
        changes=changes,
        differences=compare_arms(res, members, pairs, flags),
        spread=seed_spread(ti_rows, members),
        steps=points,
        dips=dips,
        documents=res.documents,
        step_documents=step_documents,
        notes=list(notes),
        seen=dict(seen or {}),
    )


def seen_apart(seen: dict[str, dict[str, int]], arms: dict[str, list[str]]) -> dict[str, float]:
    """For tokens and queries, the largest arm's mean over the smallest's (an arm: the mean of its seeded models
    that recorded what they saw), where that exceeds SEEN_APART; {} when the arms saw comparable amounts or fewer
    than two arms recorded it."""
    out = {}
    for what in ("tokens", "queries"):
        means = [
            float(np.mean(values))
            for models in arms.values()
            if (values := [seen[m][what] for m in models if what in (seen.get(m) or {})])
        ]
        if len(means) >= 2 and max(means) > 0:
            ratio = max(means) / min(means) if min(means) else math.inf
            if ratio > SEEN_APART:
                out[what] = ratio
    return out


def arm_of(model) -> str:
    """The arm a model (a specs.ModelRef) is listed under in scores.json: its arm, else its own name (a base: the
    lab study's is named "base"; a survey's model; a reference)."""
    return model.arm or model.name


def arms_of(models: Sequence, policy_of: Callable[[str | None], str | None]) -> dict[str, Arm]:
    """The arms of a study's models (specs.ModelRef), in their order: every model compared with a base, grouped by
    arm_of; `policy_of` is train.methods.policy_of (passed in: the method registry lives above this module)."""
    arms: dict[str, Arm] = {}
    for m in models:
        if m.base and m.role != "reference":
            arm = arms.setdefault(arm_of(m), Arm([], m.method or "", policy_of(m.method)))
            arm.models.append(m.name)
    return arms


def score_rows(name: str, arm: str, method: str, seed: int | None, row: ModelScores, run_scores: dict) -> list[dict]:
    """scores.json's rows of one model: its scores from the records (`row`), the CIs from its run's scores.json."""
    stored = run_scores.get("benchmarks", {})
    out = []
    for bench, score in row.scores.items():
        ci = (stored.get(bench) or {}).get("ci") or [None, None]
        out.append(
            {"model": name, "arm": arm, "method": method, "seed": seed}
            | {"benchmark": bench, "group": group_of(bench), "score": score, "ci_low": ci[0], "ci_high": ci[1]}
        )
    return out


def _json_float(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _float(x: float | None) -> float:
    return float("nan") if x is None else float(x)
