"""The report's figures as PNG bytes (matplotlib's object API on the Agg canvas: no display, no global state).

Every axis is named with its unit; every value drawn from resampling carries its CI as an error bar; the
captions (written in sections.py) say what a bar means or why a curve has none.
"""

import io
from collections.abc import Sequence

import numpy as np

from rtransfer.benchmarks.names import GROUPS, display, group_of
from rtransfer.comparisons import Difference, Estimate
from rtransfer.report.finding import GROUP_WORDS
from rtransfer.train.methods import METHODS

OTHER_MARKER = "D"  # a model of no method of the registry (a survey's published model, a run without --method)
DPI = 110
TI_UNIT = "% of the math domain index"  # TI v2's; the report passes the study's


def marker(method: str | None) -> str:
    """A method's marker as the method registry declares it (the paper's Figure 1)."""
    return METHODS[method].marker if method in METHODS else OTHER_MARKER


def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def _err(values: Sequence[float], cis: Sequence[Sequence[float] | None]) -> np.ndarray:
    """matplotlib's asymmetric error bars [2, n] from CIs (0 where a value has none)."""
    low = [v - ci[0] if ci else 0.0 for v, ci in zip(values, cis, strict=True)]
    high = [ci[1] - v if ci else 0.0 for v, ci in zip(values, cis, strict=True)]
    return np.maximum(np.array([low, high], dtype=float), 0.0)


def ti_scatter(points: Sequence[dict], unit: str = TI_UNIT) -> bytes:
    """TI_other vs TI_non, one marker per model by method, CIs as error bars; unstable rows drawn hollow.
    `points`: {"model", "method", "x", "y", "x_ci", "y_ci", "unstable"} and optionally "color"; `unit`: what a TI is
    a percentage of."""
    fig, axes = _figure(6.4, 5.2)
    draw_ti_scatter(axes[0, 0], points, unit)
    return _png(fig)


def draw_ti_scatter(ax, points: Sequence[dict], unit: str = TI_UNIT) -> None:
    for ref in (0, 100):
        ax.axhline(ref, color="0.8", lw=0.8, zorder=0)
        ax.axvline(ref, color="0.8", lw=0.8, zorder=0)
    seen = set()
    for i, p in enumerate(points):
        color = p.get("color", f"C{i % 10}")
        method = p["method"] or ""
        ax.errorbar(
            [p["x"]],
            [p["y"]],
            xerr=_err([p["x"]], [p["x_ci"]]),
            yerr=_err([p["y"]], [p["y_ci"]]),
            fmt="none",
            ecolor=color,
            elinewidth=0.9,
            capsize=3,
            zorder=1,
        )
        label = method or "other"
        ax.scatter(
            [p["x"]],
            [p["y"]],
            marker=marker(method),
            s=60,
            zorder=2,
            edgecolors=color,
            facecolors="none" if p["unstable"] else color,
            label=None if label in seen else label,
        )
        seen.add(label)
        ax.annotate(p["model"], (p["x"], p["y"]), xytext=(5, 4), textcoords="offset points", fontsize=8)
    ax.set_xlabel(f"TI_other ({unit})")
    ax.set_ylabel(f"TI_non ({unit})")
    ax.set_title("Transferability: other vs non-reasoning")
    if points:
        ax.legend(title="method (hollow: unstable)", fontsize=8, title_fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no model has a defined TI", transform=ax.transAxes, ha="center", color="0.4")


def draw_group_changes(ax, rows: Sequence[dict]) -> None:
    """Each model's change per group (math, other, non) with its CI, one colour and method marker per model.
    `rows`: {"model", "method", "color", "change": {group: value}, "ci": {group: (low, high) or None}}."""
    width = 0.8 / max(1, len(rows))
    for i, r in enumerate(rows):
        xs = [k + (i - (len(rows) - 1) / 2) * width for k in range(len(GROUPS))]
        values = [np.nan if r["change"][g] is None else r["change"][g] for g in GROUPS]  # None: no such benchmark
        cis = [r["ci"][g] for g in GROUPS]
        ax.errorbar(xs, values, yerr=_err(values, cis), fmt="none", ecolor=r["color"], elinewidth=0.9, capsize=3)
        ax.scatter(xs, values, marker=marker(r["method"]), s=40, color=r["color"], label=r["model"], zorder=2)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(range(len(GROUPS)), [GROUP_WORDS[g] for g in GROUPS])
    ax.set_ylabel("change of the group's mean score vs base (points)")
    ax.set_title("Group changes vs base")
    ax.legend(fontsize=8, frameon=False)


def headline(changes: Sequence[dict], points: Sequence[dict], unit: str = TI_UNIT) -> bytes:
    """The report's first figure: group changes with CIs (left, draw_group_changes) and the TI scatter (right)."""
    fig, axes = _figure(12, 4.8, 1, 2)
    draw_group_changes(axes[0, 0], changes)
    draw_ti_scatter(axes[0, 1], points, unit)
    return _png(fig)


def change_bars(changes: dict[str, dict[str, Estimate]]) -> bytes:
    """Per benchmark, each model's score change vs its base with its CI; benchmarks ordered by group."""
    benchmarks = sorted({b for c in changes.values() for b in c}, key=lambda b: (GROUPS.index(group_of(b)), b))
    fig, axes = _figure(max(6.0, 0.9 * len(benchmarks) + 2), 4.2)
    ax = axes[0, 0]
    width = 0.8 / max(1, len(changes))
    for i, (model, by_bench) in enumerate(changes.items()):
        xs = [k + (i - (len(changes) - 1) / 2) * width for k, b in enumerate(benchmarks) if b in by_bench]
        est = [by_bench[b] for b in benchmarks if b in by_bench]
        values = [e.value for e in est]
        ax.errorbar(xs, values, yerr=_err(values, [e.ci for e in est]), fmt="o", ms=4, capsize=2, label=model)
    ax.axhline(0, color="0.5", lw=0.8)
    _group_separators(ax, benchmarks)
    ax.set_xticks(range(len(benchmarks)), [display(b) for b in benchmarks], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("score change vs base (points, 0–100)")
    ax.set_xlabel("benchmark (grouped: math | other | non)")
    ax.legend(fontsize=8, frameon=False, ncol=min(4, len(changes)))
    return _png(fig)


def _group_separators(ax, benchmarks: Sequence[str]) -> None:
    groups = [group_of(b) for b in benchmarks]
    for k in range(1, len(groups)):
        if groups[k] != groups[k - 1]:
            ax.axvline(k - 0.5, color="0.85", lw=0.8, ls="--")


def difference_forest(differences: Sequence[Difference]) -> bytes:
    """Arm a − arm b per quantity with its paired CI: group changes (points) left, TIs (%) right."""
    fig, axes = _figure(10, 0.32 * max(4, len(differences) // 2) + 1.6, 1, 2)
    for ax, kind, unit in (
        (axes[0, 0], "Δ", "difference of group change (points)"),
        (axes[0, 1], "TI", "difference of TI (percentage points of TI)"),
    ):
        rows = [d for d in differences if d.quantity.startswith(kind)]
        labels = [f"{d.a} − {d.b}: {d.quantity}" for d in rows]
        shown = [d.defined and not d.flag for d in rows]  # a flagged TI difference is not drawn, as not shown
        values = [d.estimate.value if ok else np.nan for d, ok in zip(rows, shown, strict=True)]
        cis = [d.estimate.ci if ok else None for d, ok in zip(rows, shown, strict=True)]
        ys = np.arange(len(rows))[::-1]
        ax.errorbar(
            values,
            ys,
            xerr=_err(np.nan_to_num(values), cis),
            fmt="o",
            ms=4,
            capsize=2,
            color="C0",
        )
        for y, d, ok in zip(ys, rows, shown, strict=True):
            if not ok:
                ax.text(0, y, d.flag or "undefined", fontsize=7, color="0.4", va="center")
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set_yticks(ys, labels, fontsize=7)
        ax.set_xlabel(unit)
    axes[0, 0].set_title("arm differences, paired bootstrap", fontsize=10)
    return _png(fig)


def step_curves(curves: dict[str, dict[int, dict[str, Estimate]]], unit: str = TI_UNIT) -> bytes:
    """Per arm model, each quantity against the training step, CIs as error bars. Undefined TIs are gaps."""
    quantities = ("Δmath", "Δother", "Δnon", "TI_other", "TI_non")
    fig, axes = _figure(12, 6.4, 2, 3)
    for ax, q in zip(axes.flat, quantities, strict=False):
        for i, (model, by_step) in enumerate(curves.items()):
            steps = sorted(by_step)
            values = [by_step[s][q].value for s in steps]
            cis = [by_step[s][q].ci if np.isfinite(by_step[s][q].value) else None for s in steps]
            ax.errorbar(
                steps,
                values,
                yerr=_err(np.nan_to_num(values), cis),
                marker="o",
                ms=3,
                capsize=2,
                color=f"C{i % 10}",
                label=model,
            )
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_title(q, fontsize=10)
        ax.set_xlabel("training step (optimiser steps)")
        ax.set_ylabel("change vs base (points)" if q.startswith("Δ") else f"TI ({unit})")
    axes[1, 2].set_axis_off()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    axes[1, 2].legend(handles, labels, loc="center", frameon=False, title="model")
    return _png(fig)


def drift_law_panels(law: dict, labels: dict[str, str], methods: dict[str, str]) -> bytes:
    """One panel per retention group (row) and drift measure (column): every point (a checkpoint or final model)
    coloured by model and marked by method, with the least-squares line where a fit exists. No error bars: the
    fits' CIs (the table beside it) resample the points themselves. `labels`: measure -> its axis label."""
    groups = list(law["fits"])
    fig, axes = _figure(3.2 * len(labels), 2.9 * len(groups), len(groups), len(labels))
    models = list(dict.fromkeys(p["model"] for p in law["points"]))
    for row, q in zip(axes, groups, strict=True):
        for ax, m in zip(row, labels, strict=True):
            for i, model in enumerate(models):
                pts = [
                    p for p in law["points"] if p["model"] == model and p.get(m) is not None and p.get(q) is not None
                ]
                ax.scatter(
                    [p[m] for p in pts],
                    [p[q] for p in pts],
                    s=18,
                    color=f"C{i % 10}",
                    marker=marker(methods.get(model)),
                    label=model,
                )
            fit = law["fits"][q].get(m) or {}
            if fit.get("slope") is not None:
                xs = np.array([p[m] for p in law["points"] if p.get(m) is not None])
                grid = np.linspace(xs.min(), xs.max(), 2)
                ax.plot(grid, fit["intercept"] + fit["slope"] * grid, color="0.3", lw=1)
                ax.set_title(f"R² {fit['r2']:.2f}", fontsize=9)
            ax.axhline(0, color="0.7", lw=0.6)
            ax.set_xlabel(labels[m], fontsize=8)
            ax.set_ylabel(f"{q} (points)", fontsize=8)
    handles, names = axes[0, 0].get_legend_handles_labels()
    axes[0, -1].legend(handles, names, fontsize=7, frameon=False, loc="best")
    return _png(fig)


TRAIN_METRICS = (  # log.jsonl field, axis label, its spread field (drawn as a band) if any
    ("loss", "training loss (nats per token)", None),
    ("reward_mean", "mean reward (share correct, 0–1)", "reward_std"),
    ("completion_length", "completion length (tokens)", None),
    ("kept_share", "kept samples (share, 0–1)", None),
)


def training_curves(logs: dict[str, list[dict]]) -> bytes | None:
    metrics = [m for m in TRAIN_METRICS if any(m[0] in row for rows in logs.values() for row in rows)]
    if not metrics:
        return None
    fig, axes = _figure(4.2 * len(metrics), 3.6, 1, len(metrics))
    for ax, (key, label, spread) in zip(axes[0], metrics, strict=True):
        for i, (model, rows) in enumerate(logs.items()):
            rows = [r for r in rows if r.get(key) is not None]
            if not rows:
                continue
            steps = np.array([r["step"] for r in rows])
            values = np.array([r[key] for r in rows], dtype=float)
            ax.plot(steps, values, marker=".", ms=3, lw=1, color=f"C{i % 10}", label=model)
            if spread and all(r.get(spread) is not None for r in rows):
                sd = np.array([r[spread] for r in rows], dtype=float)
                ax.fill_between(steps, values - sd, values + sd, color=f"C{i % 10}", alpha=0.15, lw=0)
        ax.set_xlabel("training step (optimiser steps)")
        ax.set_ylabel(label)
    axes[0, 0].legend(fontsize=8, frameon=False)
    return _png(fig)


def draw_latent(ax, result: dict) -> None:
    """One latent panel: each layer's (PC1 shift, mean PC2) for base and tuned, a line joining a layer's two
    points, the centroids as crosses (the paper's figure; `rtransfer probe latent --plots` draws it too)."""
    base = np.array([p["base"] for p in result["layers"]])
    tuned = np.array([p["tuned"] for p in result["layers"]])
    for b, t in zip(base, tuned, strict=True):
        ax.plot([b[0], t[0]], [b[1], t[1]], color="0.8", lw=0.7, zorder=1)
    ax.scatter(base[:, 0], base[:, 1], s=14, label="base (one point per layer)", zorder=2)
    ax.scatter(tuned[:, 0], tuned[:, 1], s=14, label="tuned", zorder=2)
    for name, c in (("centroid_base", "C0"), ("centroid_tuned", "C1")):
        ax.scatter(*result[name], marker="x", s=60, color=c, zorder=3)


def pca_panels(rows: Sequence[dict]) -> bytes:
    """The paper's latent panel per probed benchmark: each layer's (PC1 shift, mean PC2) for base and tuned,
    joined per layer; centroids as crosses; the title gives d with its CI and the noise floor."""
    cols = min(3, len(rows))
    n_rows = -(-len(rows) // cols)
    fig, axes = _figure(4.2 * cols, 3.8 * n_rows, n_rows, cols)
    for ax in axes.flat[len(rows) :]:
        ax.set_axis_off()
    for ax, row in zip(axes.flat, rows, strict=False):
        draw_latent(ax, row)
        ci = row.get("d_ci")
        title = f"{row['benchmark']}: d = {row['d']:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")
        floor = (row.get("noise_floor") or {}).get("d_null")
        if floor is not None:
            title += f"\nnoise floor d = {floor:.3g}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("PC1 shift, tuned − base (hidden-state units)")
        ax.set_ylabel("mean PC2 (hidden-state units)")
    axes[0, 0].legend(fontsize=7, frameon=False)
    return _png(fig)


TOKEN_BARS = (  # field, axis label, scale
    ("kl_exact", "KL(tuned‖base) (nats per token)", 1.0),
    ("mean_rank_shift", "mean rank shift (ranks below the base's top)", 1.0),
    ("shifted", "shifted positions (% with base rank > 3)", 100.0),
)


def token_bars(rows: Sequence[dict]) -> bytes:
    """Per probed benchmark: exact KL, mean rank shift and shifted share, with their bootstrap CIs; the noise
    floor (base vs its bf16-rounded copy) as a black tick where the probe measured one."""
    fig, axes = _figure(4.3 * len(TOKEN_BARS), 3.8, 1, len(TOKEN_BARS))
    names = [r["benchmark"] for r in rows]
    xs = np.arange(len(rows))
    for ax, (key, label, scale) in zip(axes[0], TOKEN_BARS, strict=True):
        values = [scale * r[key] for r in rows]
        cis = [[scale * v for v in r[f"{key}_ci"]] if r.get(f"{key}_ci") else None for r in rows]
        ax.bar(xs, values, color="C1", alpha=0.8)
        ax.errorbar(xs, values, yerr=_err(values, cis), fmt="none", ecolor="k", capsize=3, lw=0.9)
        if key == "kl_exact":
            floors = [(r.get("noise_floor") or {}).get("kl_null") for r in rows]
            for x, f in zip(xs, floors, strict=True):
                if f is not None:
                    ax.plot([x - 0.35, x + 0.35], [f, f], color="k", lw=1.5)
        ax.set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("benchmark")
        ax.set_ylabel(label, fontsize=9)
    return _png(fig)


def latent_summary(rows: Sequence[dict]) -> bytes:
    """Latent d per group per probed model with its CI; the group's noise floor d as a black tick and its split-half
    d as a grey dashed tick where measured. `rows`: {"model", "group", "d", "d_ci", "floor", "split"}, the group's
    figures (floor and split None where not measured)."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    groups = [g for g in GROUPS if any(r["group"] == g for r in rows)]
    fig, axes = _figure(max(5.0, 1.6 * len(groups) * len(models) + 2), 4.0)
    ax = axes[0, 0]
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model]
        xs = [groups.index(r["group"]) + (i - (len(models) - 1) / 2) * width for r in mine]
        values = [r["d"] for r in mine]
        ax.errorbar(xs, values, yerr=_err(values, [r["d_ci"] for r in mine]), fmt="o", ms=5, capsize=3, label=model)
        for x, r in zip(xs, mine, strict=True):
            for key, style in (("floor", {"color": "k", "lw": 1.6}), ("split", {"color": "0.55", "ls": "--"})):
                if r[key] is not None:
                    ax.plot([x - 0.3 * width, x + 0.3 * width], [r[key], r[key]], **style)
    ax.set_xticks(range(len(groups)), [GROUP_WORDS[g] for g in groups])
    ax.set_ylim(bottom=0)
    ax.set_ylabel("latent shift d (hidden-state units)")
    ax.set_title("Latent shift per group (black: noise floor, grey dashed: split-half d)", fontsize=10)
    ax.legend(fontsize=8, frameon=False, title="model", title_fontsize=8)
    return _png(fig)
