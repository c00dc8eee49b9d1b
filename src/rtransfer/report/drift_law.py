"""The report's drift-law section: which drift measure, if any, predicts what the arms lost outside math, read from
drift_law.json (the compare stage fitted it: rtransfer.drift_law). One figure, the fits with R² and CIs, and the
sentence per retention group."""

from rtransfer.drift_law import MEASURES, MIN_POINTS
from rtransfer.report import plots
from rtransfer.report.collect import ReportData
from rtransfer.report.document import Figure, Section, Table, Text
from rtransfer.report.finding import GROUP_WORDS
from rtransfer.report.tables import fmt_ci, fmt_sig, fmt_sig_ci

UNITS = {
    "forward_kl": "nats per token",
    "reverse_kl": "nats per token",
    "latent_d": "PCA units",
    "weights_changed": "share, 0–1",
}
GROUP_OF = {"Δother": "other", "Δnon": "non"}
CAVEAT = (
    "Every point is a checkpoint or final model of a trained arm, its drift measured against the base "
    "(probes.drift) and its change as the TI over training steps has it. The CIs come from a pairs bootstrap over "
    "the points; the points of one arm come from one training run and are not independent, so these intervals are "
    "narrower than across independent runs would be. Where the points fall in separate groups (arms far apart), "
    "R² says mostly whether a measure orders the groups: the figure shows whether it also orders the points within "
    "each. A measure predicts forgetting when its slope's CI lies wholly "
    "below 0; the best is the one of those with the highest R², clearly best when its R² exceeds every other "
    "measure's in the paired bootstrap."
)


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]  # str.capitalize() would write "Forward kl"


def label(measure: str) -> str:
    return f"{MEASURES[measure]} ({UNITS[measure]})"


def law_sentence(group: str, fits: dict[str, dict], verdict: dict) -> str:
    """What the fits of one retention group say, in words (the module docstring of rtransfer.drift_law)."""
    words = GROUP_WORDS[GROUP_OF[group]]
    n = verdict["n"]
    if not verdict["fitted"]:
        why = next((f["note"] for f in fits.values()), f"{n} points (a fit needs {MIN_POINTS})")
        return f"{_upper(words)}: no drift measure can be fitted: {why}."

    def fit_words(m: str) -> str:
        f = fits[m]
        slope = f"{fmt_sig(f['slope'])} {fmt_sig_ci(f['slope_ci'])}"
        return f"R² {f['r2']:.2f} {fmt_ci(f['r2_ci'], 2)}, slope {slope} points per unit"

    best = verdict["best"]
    if best is None:
        strongest = max(verdict["fitted"], key=lambda m: fits[m]["r2"])
        return (
            f"No drift measure predicts the change in {words} here: no slope's CI lies wholly below 0 ({n} points; "
            f"the strongest fit, {MEASURES[strongest]}, {fit_words(strongest)})."
        )
    text = f"{_upper(MEASURES[best])} predicts the change in {words} best here: {fit_words(best)}, over {n} points"
    apart = [MEASURES[m] for m in verdict["not_apart"]]
    text += f", but not measurably better than {', '.join(apart)}." if apart else ", ahead of every other measure."
    if best != "forward_kl" and "forward_kl" in fits and fits["forward_kl"].get("r2") is not None:
        text += f" The law's measure, {MEASURES['forward_kl']}: {fit_words('forward_kl')}."
    return text


def drift_law(data: ReportData, results=None) -> Section:
    law = data.drift_law
    title = "The drift law: does drift from the base predict forgetting?"
    if not law or not law.get("points"):
        why = "No drift was measured in this study ([probes] drift = false, or no arm was trained here)."
        return Section("drift-law", title, [Text(why)])
    labels = {m: label(m) for m in MEASURES}
    methods = {name: m.method for name, m in data.models.items()}
    rows = []
    for group, fits in law["fits"].items():
        for m, f in fits.items():
            predicts = m in law["verdicts"][group]["predicting"]
            verdict = "yes" if predicts else ("no" if f["r2"] is not None else f["note"])
            slope = [fmt_sig(f["slope"]), fmt_sig_ci(f.get("slope_ci"))]
            cells = [*slope, fmt_sig(f["r2"]), fmt_ci(f.get("r2_ci"), 2), verdict]
            rows.append([group, MEASURES[m], str(f["n"]), *cells])
    header = ["change", "drift measure", "points", "slope", "slope CI", "R²", "R² CI", "predicts forgetting"]
    caption = (
        f"Least-squares fits of each change (points) against each drift measure; {100 * law['confidence']:g}% "
        f"percentile CIs over {law['bootstrap']} pairs-bootstrap replicates."
    )
    point_header = ["model", "step", *MEASURES, *law["fits"]]
    point_rows = [[p["model"], str(p["step"]), *(fmt_sig(p.get(k)) for k in point_header[2:])] for p in law["points"]]
    figure = Figure(
        "drift_law",
        plots.drift_law_panels(law, labels, methods),
        "Each change against each drift measure, one marker per evaluated point (colour: model, shape: method), "
        "with the least-squares line; its R² in the panel's title, its CIs in the table below.",
        data=Table("drift_law_points", point_header, point_rows),
    )
    sentences = [Text(law_sentence(g, law["fits"][g], law["verdicts"][g])) for g in law["fits"]]
    return Section("drift-law", title, [*sentences, figure, Table("drift_law", header, rows, caption), Text(CAVEAT)])
