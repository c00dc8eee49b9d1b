"""The report's result sections: finding, scores, TI, its scatter, per-benchmark changes, arm differences, TI over
training steps. Numbers the study computed (scores.json, ti.json) are shown as they are; what the files lack is
computed here from the run dirs' per-document grades (compare.Resampled, fixed seed)."""

import dataclasses

from rtransfer.benchmarks.names import GROUPS, display, group_of
from rtransfer.report import plots
from rtransfer.report.collect import BOOTSTRAP, CONFIDENCE, SEED, ReportData
from rtransfer.report.compare import QUANTITIES, Estimate, Resampled, arm_pairs, compare_arms, seed_spread
from rtransfer.report.document import Bullets, Figure, Section, Table, Text
from rtransfer.report.finding import SMOKE, against_the_paper, finding, on_off_verdict
from rtransfer.report.tables import fmt, fmt_ci, ti_cells, ti_flag

CI_WORDS = f"{CONFIDENCE:.0%} paired-bootstrap CI over documents ({BOOTSTRAP} replicates, seed {SEED})"


def _ci(values) -> str:
    return fmt_ci(tuple(values)) if values and None not in values else ""


def _seed(seed) -> str:
    return "" if seed is None else str(seed)


class Results:
    """The comparisons of one report, computed once: the study's arms resampled, their differences and spreads."""

    def __init__(self, data: ReportData):
        self.data = data
        undefined = frozenset(r["model"] for r in data.ti if r.get("error"))
        self.resampled = Resampled(data.rows, BOOTSTRAP, SEED, CONFIDENCE, undefined)
        self.arms = data.arms()
        self.method_of = {a: data.method_of_arm(a) for a in self.arms}
        self.flags = {r["model"]: ti_flag(r.get("error"), r.get("unstable")) for r in data.ti}
        pairs = arm_pairs(list(self.arms), self.method_of)
        self.differences = compare_arms(self.resampled, self.arms, pairs, self.flags)
        self.spread = seed_spread(data.ti, self.arms)
        self.finding = finding(data.ti, self.arms, self.method_of, self.differences)
        if data.smoke:  # a smoke test's numbers test nothing: no comparison with the paper
            self.finding.append(SMOKE)
        elif data.training:  # the paper's controlled study is the reference of a training study, not a survey
            by_model = {r["model"]: r for r in data.ti}
            verdict, _ = on_off_verdict(by_model, self.arms, self.method_of, self.differences)
            self.finding.append(against_the_paper(data.ti, self.arms, verdict))


def summary(data: ReportData, results: Results) -> Section:
    models = ", ".join(m.label for m in data.models.values())
    blocks = [
        Bullets(results.finding),
        Text(
            f"Study {data.title}: {models}. The rules behind each sentence are in "
            "docs/report.md (a change counts when its CI excludes 0)."
        ),
    ]
    if data.notes:
        blocks.append(Text("Notes from reading the files:"))
        blocks.append(Bullets(data.notes))
    return Section("summary", "Summary and finding", blocks)


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
    means = [
        [m.name]
        + [
            cell
            for g in GROUPS
            for cell in _estimate_cells(results.resampled, results.resampled.group_means[m.name][g])
        ]
        for m in data.models.values()
    ]
    header = ["model"] + [c for g in GROUPS for c in (f"{g} mean", f"{g} CI")]
    groups = Table("group_means", header, means, f"Mean score of each group's benchmarks (points); {CI_WORDS}.")
    return Section("scores", "Scores by group", [table, groups])


def _estimate_cells(resampled: Resampled, values) -> list[str]:
    est = resampled.estimate(values)
    return [fmt(est.value), fmt_ci(est.ci)]


def ti_table(data: ReportData, results: Results) -> Section:
    header = ["model", "arm", "method", "seed", "TI_other", "TI_other CI", "TI_non", "TI_non CI", "DI_math"]
    header += ["DI_math CI"] + [c for g in GROUPS for c in (f"Δ{g}", f"Δ{g} CI")] + ["flag"]
    rows, flags = [], []
    for r in data.ti:
        m = data.models.get(r["model"])
        row = [r["model"], m.arm if m else "", r.get("method", ""), _seed(m.seed if m else None)]
        flag = results.flags[r["model"]]
        for g in ("other", "non"):
            row += ti_cells(r.get(f"TI_{g}"), r.get(f"TI_{g}_ci"), flag)
        row += [fmt(r.get("DI_math"), 3), fmt_ci(tuple(r["DI_math_ci"]), 3) if r.get("DI_math_ci") else ""]
        for g in GROUPS:
            row += [fmt((r.get("change") or {}).get(g)), _ci((r.get("change_ci") or {}).get(g))]
        rows.append([*row, flag])
        if flag:
            flags.append(f"{r['model']} {flag}: {r.get('error') or r.get('unstable')}")
    sigma = next((r["sigma"] for r in data.ti if r.get("sigma")), None)
    caption = (
        "TI v2 (% of the math domain index) and group changes (points) as ti.json holds them; a TI that is "
        "undefined (no math gain) or unstable (DI_math's CI includes 0) is not shown: — (undefined) / — (unstable)"
    )
    if sigma:
        caption += "; σ pooled over the study's arms: " + ", ".join(f"{g} {fmt(v, 2)}" for g, v in sigma.items())
    blocks = [Table("ti", header, rows, caption + ".")]
    blocks.append(Text("Flags:") if flags else Text("No row is undefined or unstable."))
    if flags:
        blocks.append(Bullets(flags))
    return Section("ti", "Transferability Index", blocks)


def ti_scatter(data: ReportData, results: Results) -> Section:
    points, left_out = [], []
    for r in data.ti:
        if r.get("TI_other") is None or r.get("TI_non") is None:
            left_out.append(f"{r['model']}: {r.get('error') or 'no TI'}")
            continue
        points.append(
            {"model": r["model"], "method": r.get("method", ""), "x": r["TI_other"], "y": r["TI_non"]}
            | {"x_ci": r.get("TI_other_ci"), "y_ci": r.get("TI_non_ci"), "unstable": bool(r.get("unstable"))}
        )
    caption = (
        "TI_other vs TI_non per tuned model, marker by method (as the paper's Figure 1); error bars: the TI's CI "
        "from ti.json (none where the study had no per-document records); hollow markers: unstable (DI_math's CI "
        "includes 0). Grey lines at 0 and 100 %: no transfer, and transfer as large as the math gain."
    )
    blocks = [Figure("ti_scatter", plots.ti_scatter(points), caption, "TI scatter")] if points else []
    if not points:
        blocks.append(Text("No model has a defined TI, so there is nothing to plot."))
    if left_out:
        blocks += [Text("Not plotted (TI undefined):"), Bullets(left_out)]
    return Section("ti-scatter", "TI scatter", blocks)


def changes(data: ReportData, results: Results) -> Section:
    res = results.resampled
    by_model = {}
    rows = []
    row_of = {r.model: r for r in data.rows}
    for m in data.tuned:
        by_model[m.name] = {}
        for bench, values in res.bench_change[m.name].items():
            est = res.estimate(values)
            if est.value != est.value:  # NaN: not scored for both
                continue
            by_model[m.name][bench] = est
            base_score, score = row_of[m.base].scores[bench], row_of[m.name].scores[bench]
            rows.append(
                [m.name, group_of(bench), display(bench), fmt(base_score), fmt(score), fmt(est.value), fmt_ci(est.ci)]
            )
    header = ["model", "group", "benchmark", "base score", "score", "Δ (points)", "Δ CI"]
    caption = f"Score change of each tuned model vs its base per benchmark; {CI_WORDS}."
    blocks = [Table("benchmark_changes", header, rows, caption)]
    if by_model:
        blocks.insert(0, Figure("benchmark_changes", plots.change_bars(by_model), caption + " Error bars: that CI."))
    if not res.resampled:
        blocks.append(Text("No per-document records: the changes carry no CI."))
    return Section("changes", "Per-benchmark change vs base", blocks)


def arms(data: ReportData, results: Results) -> Section:
    diffs = results.differences
    if not diffs:
        return Section("arms", "Arm vs arm", [Text("Fewer than two arms: nothing to compare.")])
    rows = []
    for d in diffs:
        e = d.estimate
        flag = d.flag or ("" if d.defined else "undefined")
        note = f"an arm's TI is {flag}" if flag else ""
        if not flag and e.undefined_share:
            note = f"undefined in {round(e.undefined_share * BOOTSTRAP)} of {BOOTSTRAP} replicates"
        rows.append([d.a, d.b, d.quantity, f"— ({flag})" if flag else fmt(e.value), "" if flag else fmt_ci(e.ci), note])
    caption = (
        f"Arm a − arm b (an arm with several seeds: the mean of its seeds); {CI_WORDS}, the same documents drawn "
        "for both arms in each replicate. Δ in points, TI in percentage points."
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
    return Section("arms", "Arm vs arm", blocks)


def _per_seed(spread) -> str:
    return ", ".join(f"— ({f})" if f else fmt(v) for v, f in zip(spread.values, spread.flags, strict=True))


def steps(data: ReportData, results: Results) -> Section:
    if not data.steps:
        return Section("steps", "TI over training steps", [Text("No checkpoints were evaluated in this study.")])
    rows, names = [m for m in data.rows if not m.base], {}
    for model, by_step in data.steps.items():
        final = _final_step(data, model)
        points = dict(by_step)
        if final is not None and final not in points:
            points[final] = next(r for r in data.rows if r.model == model)
        for step, row in sorted(points.items()):
            name = f"{model}@{step}"
            names[name] = (model, step)
            rows.append(dataclasses.replace(row, model=name, base=data.models[model].base))
    res = Resampled(rows, BOOTSTRAP, SEED, CONFIDENCE)
    curves: dict[str, dict[int, dict]] = {}
    table = []
    for name, (model, step) in names.items():
        flag = res.ti_flag(name)
        est = {q: res.estimate(res.values[name][q]) for q in QUANTITIES}
        cells = []
        for q in QUANTITIES:
            if flag and q.startswith("TI"):
                est[q] = Estimate(float("nan"), None)  # not drawn either
                cells += ti_cells(None, None, flag)
            else:
                cells += [fmt(est[q].value), fmt_ci(est[q].ci)]
        curves.setdefault(model, {})[step] = est
        table.append([model, str(step), *cells])
    header = ["model", "step"] + [c for q in QUANTITIES for c in (q, f"{q} CI")]
    caption = (
        f"Group changes (points) and TI (%) of each evaluated checkpoint and the final model; {CI_WORDS}. σ is pooled "
        "over every point shown, so the final points can differ slightly from the TI table (σ over the final arms)."
        " Gaps and — (undefined) / — (unstable): the TI at that step has no math gain, or DI_math's CI includes 0."
    )
    return Section(
        "steps",
        "TI over training steps",
        [Figure("ti_steps", plots.step_curves(curves), caption), Table("ti_steps", header, table, caption)],
    )


def _final_step(data: ReportData, model: str) -> int | None:
    """The final model's step: train.json's count, else the last logged step."""
    if (data.training.get(model) or {}).get("steps"):
        return int(data.training[model]["steps"])
    log = data.logs.get(model)
    return max(r["step"] for r in log) if log else None


RESULT_SECTIONS = (summary, scores, ti_table, ti_scatter, changes, arms, steps)
