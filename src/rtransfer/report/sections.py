"""The report's result sections: finding, scores, TI, its scatter, per-benchmark changes, arm differences, TI over
training steps. Every number is shown as the study's files hold it (scores.json, ti.json, comparisons.json: its
compare stage computed them with its [ti] settings); the captions name those settings, read from
comparisons.json. Nothing here resamples."""

from rtransfer.benchmarks.names import GROUPS, display, group_of
from rtransfer.comparisons import QUANTITIES, SEEN, SEEN_APART, Dip, Estimate, Settings, seen_apart
from rtransfer.report import plots
from rtransfer.report.collect import ReportData
from rtransfer.report.document import Block, Bullets, Details, Figure, Section, Table, Text
from rtransfer.report.finding import (
    GROUP_WORDS,
    PAPER,
    SMOKE,
    change_verdict,
    finding,
    on_off_verdict,
    paper_verdict,
    short_finding,
    signed,
)
from rtransfer.report.tables import fmt, fmt_ci, ti_cells
from rtransfer.transfer import ti_flag

MATH_INDEX_WORDS = {"v2": "the math domain index", "v1": "the math group's mean relative gain"}


def percent(confidence: float) -> str:
    return f"{100 * confidence:g}%"


def ci_words(settings: Settings) -> str:
    """What every CI the study's comparisons carry is, as its settings say."""
    if not settings.bootstrap:
        return "no CI (the study's [ti] bootstrap is 0)"
    return (
        f"{percent(settings.confidence)} paired-bootstrap CI over documents ({settings.bootstrap} replicates, "
        f"seed {settings.seed})"
    )


def ti_unit(settings: Settings) -> str:
    return f"% of {MATH_INDEX_WORDS[settings.index]}"


def _ci(values) -> str:
    return fmt_ci(tuple(values)) if values and None not in values else ""


def _seed(seed) -> str:
    return "" if seed is None else str(seed)


class Results:
    """The comparisons of one report as the files hold them: the study's arms, their differences and spreads, and
    the finding in words (report.finding's rules over those numbers)."""

    def __init__(self, data: ReportData):
        self.data = data
        self.settings = data.settings
        self.arms = data.arms()
        self.method_of = {a: data.method_of_arm(a) for a in self.arms}
        self.flags = {r["model"]: ti_flag(r.get("error"), r.get("unstable")) for r in data.ti}
        self.differences = data.comparisons.differences
        self.spread = data.comparisons.spread
        self.finding = finding(data.ti, self.arms, self.method_of, self.differences)
        self.short = self.finding[:1]  # the finding in two or three sentences, for the top of the report
        by_model = {r["model"]: r for r in data.ti}
        if not any(m in by_model for models in self.arms.values() for m in models):
            return  # no tuned model: the finding's one sentence says so
        verdict, pairs = on_off_verdict(by_model, self.arms, self.method_of, self.differences)
        conclusion = ""
        if data.smoke:  # a smoke test's numbers test nothing: no comparison with the paper
            self.finding.append(SMOKE)
        elif data.training:  # the paper's controlled study is the reference of a training study, not a survey
            conclusion = paper_verdict(data.ti, self.arms, verdict)
            self.finding.append(f"{PAPER} {conclusion}")  # finding.against_the_paper
        self.short = short_finding(self.finding[0], verdict, pairs, conclusion)


def summary(data: ReportData, results: Results) -> Section:
    models = ", ".join(m.label for m in data.models.values())
    verdicts = [[r["model"], *(change_verdict(r, g) for g in GROUPS)] for r in data.ti]
    caption = (
        "Each tuned model's change per group against its base, in words: gained or lost when the CI excludes 0, "
        "else no measurable change; the figures are ti.json's group changes (points) and their CIs."
    )
    full = [
        Bullets(results.finding),
        Text(
            f"Study {data.title}: {models}. The rules behind each sentence are in "
            "docs/report.md (a change counts when its CI excludes 0)."
        ),
    ]
    blocks: list[Block] = [
        Table("verdicts", ["model", *(GROUP_WORDS[g] for g in GROUPS)], verdicts, caption),
        headline(data, results),
        Text(" ".join(results.short)),
        Details(f"The finding in full: {len(results.finding)} sentences, each with its numbers", full),
    ]
    if data.notes:
        blocks.append(Details(f"Notes from reading the files ({len(data.notes)})", [Bullets(data.notes)]))
    return Section("summary", "Summary and finding", blocks)


def _number(x) -> str:
    """A plotted value as its file holds it, for a figure's data table (empty where there is none)."""
    return "" if x is None else repr(float(x))


def _bounds(ci) -> list[str]:
    return [_number(b) for b in ci] if ci else ["", ""]


def headline(data: ReportData, results: Results) -> Figure:
    """The report's first figure: each tuned model's group changes with their CIs beside the TI scatter, ti.json's
    numbers (the verdict table's), one colour per model in both panels; its data in tables/headline.csv."""
    colors = {r["model"]: f"C{i % 10}" for i, r in enumerate(data.ti)}
    changes, rows = [], []
    for r in data.ti:
        change, cis = r.get("change") or {}, r.get("change_ci") or {}
        changes.append(
            {"model": r["model"], "method": r.get("method", ""), "color": colors[r["model"]]}
            | {"change": {g: change.get(g) for g in GROUPS}, "ci": {g: _finite_ci(cis.get(g)) for g in GROUPS}}
        )
        rows += [[r["model"], f"Δ{g}", _number(change.get(g)), *_bounds(_finite_ci(cis.get(g))), "yes"] for g in GROUPS]
    points, _ = scatter_points(data.ti)
    for p in points:
        p["color"] = colors[p["model"]]
    left_out = [r["model"] for r in data.ti if r["model"] not in {p["model"] for p in points}]
    settings = results.settings
    caption = (
        "Left: each tuned model's change of each group's mean score against its base (points), as ti.json holds it "
        f"(the verdict table's figures); error bars: its {ci_words(settings)}; a change counts when its bar misses "
        f"0. Right: TI_other vs TI_non (TI {settings.index}, {ti_unit(settings)}) with their CIs, hollow when "
        f"unstable ({settings.math_index}'s CI includes 0)"
    )
    caption += f"; not plotted (TI undefined): {', '.join(left_out)}." if left_out else "."
    header = ["model", "quantity", "value", "CI low", "CI high", "drawn"]
    table = Table("headline", header, rows + _ti_rows(data.ti, points), "The numbers the headline figure draws.")
    unit = ti_unit(settings)
    return Figure("headline", plots.headline(changes, points, unit), caption, "headline: group changes, TIs", table)


def _ti_rows(ti_rows: list[dict], points: list[dict]) -> list[list[str]]:
    """The headline's data rows of the TIs: ti.json's value and CI, and how the scatter draws it."""
    drawn = {p["model"]: p for p in points}
    rows = []
    for r in ti_rows:
        p = drawn.get(r["model"])
        shown = "no (undefined)" if not p else "hollow (unstable)" if p["unstable"] else "yes"
        rows += [[r["model"], q, _number(r.get(q)), *_bounds(_finite_ci(r.get(f"{q}_ci"))), shown] for q in TIS]
    return rows


TIS = ("TI_other", "TI_non")


def _finite_ci(ci) -> tuple[float, float] | None:
    return tuple(ci) if ci and None not in ci else None


def scores(data: ReportData, results: Results) -> Section:
    """One row per model, one column per benchmark (grouped math | other | non), as the paper's tables."""
    by_model: dict[str, dict[str, dict]] = {}
    for s in data.scores:
        by_model.setdefault(s["model"], {})[s["benchmark"]] = s
    benchmarks = sorted({s["benchmark"] for s in data.scores}, key=lambda b: (GROUPS.index(group_of(b)), b))
    header = ["model", "arm", "method", "seed", *(f"{group_of(b)}: {display(b)}" for b in benchmarks)]
    rows = []
    for model, cells in by_model.items():
        first = next(iter(cells.values()))
        row = [model, first["arm"], first["method"], _seed(first["seed"])]
        for b in benchmarks:
            s = cells.get(b)
            row.append(f"{fmt(s['score'])} {_ci([s.get('ci_low'), s.get('ci_high')])}".strip() if s else "—")
        rows.append(row)
    caption = "Scores (0–100) as scores.json holds them, with the run's 95% bootstrap CI over documents."
    table = Table("scores", header, rows, caption)
    means = data.comparisons.group_means
    mean_rows = [
        [m.name] + [c for g in GROUPS for c in _estimate_cells((means.get(m.name) or {}).get(g))]
        for m in data.models.values()
    ]
    header = ["model"] + [c for g in GROUPS for c in (f"{g} mean", f"{g} CI")]
    caption = f"Mean score of each group's benchmarks (points); {ci_words(results.settings)}."
    return Section("scores", "Scores by group", [table, Table("group_means", header, mean_rows, caption)])


def _estimate_cells(est: Estimate | None) -> list[str]:
    return [fmt(est.value), fmt_ci(est.ci)] if est else ["—", ""]


def ti_table(data: ReportData, results: Results) -> Section:
    settings = results.settings
    math_index = settings.math_index  # DI_math (v2) or dR_math (v1), as ti.json names it
    header = ["model", "arm", "method", "seed", "TI_other", "TI_other CI", "TI_non", "TI_non CI", math_index]
    header += [f"{math_index} CI"] + [c for g in GROUPS for c in (f"Δ{g}", f"Δ{g} CI")] + ["flag"]
    rows, flags = [], []
    for r in data.ti:
        m = data.models.get(r["model"])
        row = [r["model"], m.arm if m else "", r.get("method", ""), _seed(m.ref.seed if m else None)]
        flag = results.flags[r["model"]]
        for g in ("other", "non"):
            row += ti_cells(r.get(f"TI_{g}"), r.get(f"TI_{g}_ci"), flag)
        ci = r.get(f"{math_index}_ci")
        row += [fmt(r.get(math_index), 3), fmt_ci(tuple(ci), 3) if ci else ""]
        for g in GROUPS:
            row += [fmt((r.get("change") or {}).get(g)), _ci((r.get("change_ci") or {}).get(g))]
        rows.append([*row, flag])
        if flag:
            flags.append(f"{r['model']} {flag}: {r.get('error') or r.get('unstable')}")
    caption = (
        f"TI {settings.index} ({ti_unit(settings)}, {math_index}) and group changes (points) as ti.json holds them, "
        f"{ci_words(settings)}; a TI that is undefined (no math gain) or unstable ({math_index}'s CI includes 0) is "
        "not shown: — (undefined) / — (unstable)"
    )
    caption += _sigma_words(data, settings)
    blocks = [Table("ti", header, rows, caption + ".")]
    blocks.append(Text("Flags:") if flags else Text("No row is undefined or unstable."))
    if flags:
        blocks.append(Bullets(flags))
    return Section("ti", "Transferability Index", blocks + data_seen(data, results))


SEEN_HEADER = {"queries": "queries", "sequences": "sequences", "tokens": "tokens", "steps": "optimiser steps"}
APART = "The arms saw different amounts of data: compare with care"


def data_seen(data: ReportData, results: Results) -> list[Block]:
    """What each trained model saw (comparisons.json's `seen`, from its train.json), beside the TI: the TIs of arms
    trained on very different amounts of data do not compare like with like."""
    seen = data.comparisons.seen
    if not seen:
        return [Text("What each arm saw: no training record of this study says (no arm was trained here).")]
    rows = []
    for m in data.tuned:
        counts = seen.get(m.name)
        if counts:
            cells = [f"{counts[k]:,}" if k in counts else "—" for k in SEEN]
            rows.append([m.name, m.arm, m.method, _seed(m.ref.seed), *cells])
    caption = (
        "What each arm saw, as its train.json records it: distinct training queries (or traces' queries), sequences "
        "(traces, or sampled completions with a loss token: on-policy SFT's kept answers) in its optimiser steps, "
        "their loss tokens, and optimiser steps; a sequence trained twice counts twice, a query once."
    )
    header = ["model", "arm", "method", "seed", *(SEEN_HEADER[k] for k in SEEN)]
    blocks: list[Block] = [Text("What each arm saw"), Table("data_seen", header, rows, caption)]
    apart = seen_apart(seen, results.arms)
    if apart:
        ratios = " and ".join(
            f"{what} {ratio:.1f}×" if ratio != float("inf") else f"{what}: an arm trained on none"
            for what, ratio in apart.items()
        )
        blocks.append(Text(f"{APART} (the largest arm over the smallest, above {SEEN_APART:g}×: {ratios})."))
    partial = [f"{m}: counted from step {c['counted_from_step']}" for m, c in seen.items() if "counted_from_step" in c]
    if partial:
        blocks += [Text("Counted only after a resume from a checkpoint without counts:"), Bullets(partial)]
    return blocks


def _sigma_words(data: ReportData, settings: Settings) -> str:
    if settings.index == "v1":
        return ""  # relative gains: no σ
    if settings.sigma == "model":
        return "; σ of each model's own gains in each group (ti.json's sigma)"
    sigma = next((r["sigma"] for r in data.ti if r.get("sigma")), None)
    if not sigma:
        return ""
    return "; σ pooled over the study's models: " + ", ".join(f"{g} {fmt(v, 2)}" for g, v in sigma.items())


def scatter_points(ti_rows: list[dict]) -> tuple[list[dict], list[str]]:
    """The TI scatter's points (plots.ti_scatter's), and the models left out with why (an undefined TI)."""
    points, left_out = [], []
    for r in ti_rows:
        if r.get("TI_other") is None or r.get("TI_non") is None:
            left_out.append(f"{r['model']}: {r.get('error') or 'no TI'}")
            continue
        points.append(
            {"model": r["model"], "method": r.get("method", ""), "x": r["TI_other"], "y": r["TI_non"]}
            | {"x_ci": _finite_ci(r.get("TI_other_ci")), "y_ci": _finite_ci(r.get("TI_non_ci"))}
            | {"unstable": bool(r.get("unstable"))}
        )
    return points, left_out


def ti_scatter(data: ReportData, results: Results) -> Section:
    settings = results.settings
    points, left_out = scatter_points(data.ti)
    caption = (
        f"TI_other vs TI_non (TI {settings.index}) per tuned model, marker by method (as the paper's Figure 1); error "
        f"bars: the TI's {ci_words(settings)} from ti.json (none where the study had no per-document records); "
        f"hollow markers: unstable ({settings.math_index}'s CI includes 0). Grey lines at 0 and 100 %: no transfer, "
        "and transfer as large as the math gain."
    )
    blocks = (
        [Figure("ti_scatter", plots.ti_scatter(points, ti_unit(settings)), caption, "TI scatter")] if points else []
    )
    if not points:
        blocks.append(Text("No model has a defined TI, so there is nothing to plot."))
    if left_out:
        blocks += [Text("Not plotted (TI undefined):"), Bullets(left_out)]
    return Section("ti-scatter", "TI scatter", blocks)


def changes(data: ReportData, results: Results) -> Section:
    comparisons = data.comparisons
    by_model, rows = {}, []
    for m in data.tuned:
        by_model[m.name] = {}
        for bench, change in (comparisons.changes.get(m.name) or {}).items():
            est = change.estimate
            by_model[m.name][bench] = est
            cells = [fmt(change.base_score), fmt(change.score), fmt(est.value), fmt_ci(est.ci)]
            rows.append([m.name, group_of(bench), display(bench), *cells])
    header = ["model", "group", "benchmark", "base score", "score", "Δ (points)", "Δ CI"]
    caption = f"Score change of each tuned model vs its base per benchmark; {ci_words(results.settings)}."
    blocks: list[Block] = [Table("benchmark_changes", header, rows, caption)]
    if any(by_model.values()):
        blocks.insert(0, Figure("benchmark_changes", plots.change_bars(by_model), caption + " Error bars: that CI."))
    if not comparisons.resampled:
        why = "the study's [ti] bootstrap is 0" if not results.settings.bootstrap else "no per-document records"
        blocks.append(Text(f"The changes carry no CI: {why}."))
    count = len({b for m in by_model.values() for b in m})
    summary = f"Per-benchmark panels: each tuned model's change on each of {count} benchmarks, with its CI"
    return Section("changes", "Per-benchmark change vs base", [Details(summary, blocks)])


def arms(data: ReportData, results: Results) -> Section:
    diffs = results.differences
    if not diffs:
        return Section("arms", "Arm vs arm", [Text("Fewer than two arms: nothing to compare.")])
    replicates = results.settings.bootstrap
    rows = []
    for d in diffs:
        e = d.estimate
        flag = d.flag or ("" if d.defined else "undefined")
        note = f"an arm's TI is {flag}" if flag else ""
        if not flag and e.undefined_share:
            note = f"undefined in {round(e.undefined_share * replicates)} of {replicates} replicates"
        rows.append([d.a, d.b, d.quantity, f"— ({flag})" if flag else fmt(e.value), "" if flag else fmt_ci(e.ci), note])
    caption = (
        f"Arm a − arm b (an arm with several seeds: the mean of its seeds); {ci_words(results.settings)}, the same "
        f"documents drawn for both arms in each replicate. Δ in points, TI {results.settings.index} in percentage "
        "points."
    )
    blocks = [
        Table("arm_differences", ["arm a", "arm b", "quantity", "a − b", "CI", "note"], rows, caption),
        Figure("arm_differences", plots.difference_forest(diffs), caption + " Error bars: that CI."),
    ]
    if results.spread:
        header = ["arm", "quantity", "per seed", "mean", "sd", "min", "max"]
        spread_rows = [
            [s.arm, s.quantity, _per_seed(s), fmt(s.mean), fmt(s.sd), fmt(s.low), fmt(s.high)] for s in results.spread
        ]
        text = (
            "Spread across training seeds (from ti.json; sd with ddof 1): the variation that resampling documents "
            "does not see. A seed's TI that is undefined or unstable is not shown, and the arm's TI then has no "
            "mean, sd or range."
        )
        blocks.append(Table("seed_spread", header, spread_rows, text))
    else:
        blocks.append(Text("One seed per arm: the spread across training seeds is not measured."))
    summary = f"The full arm-vs-arm table: {len(diffs)} paired differences, their forest plot and the seed spread"
    return Section("arms", "Arm vs arm", [Details(summary, blocks)])


def _per_seed(spread) -> str:
    return ", ".join(f"— ({f})" if f else fmt(v) for v, f in zip(spread.values, spread.flags, strict=True))


def steps(data: ReportData, results: Results) -> Section:
    points = data.comparisons.steps
    if not points:
        return Section("steps", "TI over training steps", [Text("No checkpoints were evaluated in this study.")])
    settings = results.settings
    curves: dict[str, dict[int, dict[str, Estimate]]] = {}
    table = []
    for model, by_step in points.items():
        for step, point in sorted(by_step.items()):
            cells = []
            for q in QUANTITIES:
                if point.flag and q.startswith("TI"):
                    cells += ti_cells(None, None, point.flag)
                else:
                    cells += [fmt(point.values[q].value), fmt_ci(point.values[q].ci)]
            curves.setdefault(model, {})[step] = point.values
            table.append([model, str(step), *cells])
    header = ["model", "step"] + [c for q in QUANTITIES for c in (q, f"{q} CI")]
    caption = (
        f"Group changes (points) and TI {settings.index} ({ti_unit(settings)}) of each evaluated checkpoint and the "
        f"final model; {ci_words(settings)}."
    )
    if settings.index == "v2" and settings.sigma == "pooled":
        caption += (
            " σ is pooled over every point shown, so the final points can differ slightly from the TI table (σ over "
            "the final arms)."
        )
    caption += (
        " Gaps and — (undefined) / — (unstable): the TI at that step has no math gain, or "
        f"{settings.math_index}'s CI includes 0."
    )
    caption += fewer_documents(data.comparisons.step_documents, data.comparisons.documents)
    return Section(
        "steps",
        "TI over training steps",
        [
            Text(
                dip_words(
                    data.comparisons.dips,
                    [m for m, by in points.items() if len(by) > 1],
                    data.comparisons.resampled,
                    settings,
                )
            ),
            Figure("ti_steps", plots.step_curves(curves, ti_unit(settings)), caption),
            Table("ti_steps", header, table, caption),
        ],
    )


def fewer_documents(step_documents: dict[str, int], documents: dict[str, int]) -> str:
    """What the steps' caption says when the checkpoints were evaluated on fewer documents ([eval] checkpoint_limit)
    than the final models: every point, the final one included, is measured on those."""
    fewer = {b: n for b, n in step_documents.items() if n < documents.get(b, n)}
    if not fewer:
        return ""
    counts = sorted(set(fewer.values()))
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return (
        f" Checkpoints were evaluated on the first {n} documents of {len(fewer)} benchmarks ([eval] checkpoint_limit),"
        " so every point here, the final model's included, is measured on those documents alone (paired): the final"
        " points can differ from the TI table, and their CIs are wider."
    )


def _tight(ci: tuple[float, float] | None) -> str:
    """A CI whose bound lies within 0.05 of 0 with two decimals: "[-1.2, 0.0]" would hide which side of 0 it is."""
    return fmt_ci(ci, 2 if ci and min(abs(b) for b in ci) < 0.05 else 1)


def dip_words(dips: list[Dip], models: list[str], resampled: bool, settings: Settings) -> str:
    """Whether any arm's transfer dipped during training and came back, in words, from comparisons.json's dips."""
    if not resampled:
        return f"Whether transfer dipped during training cannot be told: {ci_words(settings)}, so no dip is measured."
    lines = []
    for d in dips:
        group = GROUP_WORDS[d.quantity.removeprefix("Δ")]
        lines.append(
            f"{d.model}: {group} fell to {fmt(d.at.value)} points {_tight(d.at.ci)} at step {d.step}, and "
            f"{d.verdict} ({signed(d.recovery.value)} points {_tight(d.recovery.ci)} from there to step "
            f"{d.last_step}, ending at {fmt(d.last.value)} {_tight(d.last.ci)})."
        )
    dipped = {d.model for d in dips}
    steady = [m for m in models if m not in dipped]
    if steady:
        lines.append(
            f"{', '.join(steady)}: no checkpoint's other or non-reasoning change lay measurably below 0 before the end."
        )
    return (
        f"Did transfer dip and recover? {' '.join(lines)} (A dip: a checkpoint before the last whose change's CI lies "
        "wholly below 0, the lowest such one; recovered: the change from there to the last point, paired, is "
        f"measurably positive and no measurable loss is left. The CIs are pointwise, {percent(settings.confidence)}: "
        "with many checkpoints one of them can fall below 0 by chance, so a dip at a single checkpoint is read with "
        "care.)"
    )


RESULT_SECTIONS = (summary, scores, ti_table, ti_scatter, changes, arms, steps)
