"""The finding in words, computed from the numbers by a few fixed rules, never assumed.

Rules (each uncertainty is a paired-bootstrap percentile CI over documents, at the study's confidence level):

1. A change is *real* when its CI excludes 0: above 0 "raised/gained", below 0 "lowered/lost"; a CI that
   includes 0 is "no measurable change". No minimum effect size is imposed: benchmarks differ in scale, and the
   CI already says what the document sample can resolve. A change without a CI (no per-document records) is
   reported as a point estimate and never called real.
2. An arm *raised math* when the CI of its Δmath (change of the math group's mean score) lies above 0.
3. The TI compares transfer only when it is defined (DI_math > 0) and stable (DI_math's CI excludes 0):
   otherwise it is a ratio to noise or to a loss. When the TI cannot be used, the arms are compared on the
   group changes Δother and Δnon, which are always defined, and the sentence says so.
4. On-policy vs off-policy SFT, as the method registry says (train.methods: onpolicy and grpo are "on", sft is
   "off"; a survey's RL is "on", its SFT "off"; on-policy distillation, which the paper has not, enters rule 7):
   for each such pair of arms, the difference on−off of each group's measure (rule 3), with its paired CI
   (rule 1). The verdict "on-policy transfers better/worse" needs every pair to agree: at least one group real in
   that direction, none real in the other. Anything else is "the data cannot tell", with the numbers.
5. Against the paper: in its controlled study every arm raised math, and on-policy training (GRPO,
   on-policy SFT) transferred better than off-policy SFT, most of all to non-reasoning. A study reproduces that
   when every arm raised math (rule 2) and rule 4 finds "better"; it contradicts it when rule 4 finds "worse";
   otherwise it does not reproduce it, and the sentence says which part is missing. The paper's figures are
   quoted, not used in any computation.
6. A smoke test (a study on the quick lab base, as `rtransfer study --quick` runs) is not compared with the
   paper: a few training steps of a miniature model on a few documents cannot test its claim; rule 5 is skipped.
7. The {off, on}-policy × {teacher, reward} grid, when the study has an on-policy arm that learns from a teacher
   (on-policy distillation; train.methods: `signal`). Two factors, each from rule 4's pair sentences: the
   *policy* factor is on − off at the teacher signal (on-policy distillation − off-policy SFT), the *signal*
   factor is reward − teacher among on-policy arms (GRPO, on-policy SFT − on-policy distillation). A factor is
   "ahead" when some pair has a group real in its direction and none in the other, "none" when no group of any
   pair is real, else "mixed". The transfer follows on-policy data when the policy factor is ahead and the
   signal factor none; the reward, when the signal factor is ahead and the policy factor none; both, when both
   are ahead; neither, when both are none; anything else: the data cannot tell. Never assumed: the numbers of
   every pair follow the verdict.
"""

from collections.abc import Sequence

from rtransfer.comparisons import Difference, Estimate
from rtransfer.report.tables import fmt, fmt_ci
from rtransfer.train.methods import METHODS, policy_of

GROUP_WORDS = {"math": "math", "other": "other reasoning", "non": "non-reasoning"}


def signed(x: float | None, digits: int = 1) -> str:
    text = fmt(x, digits)
    return f"+{text}" if x is not None and text not in ("—",) and float(text) > 0 else text


def direction(value: float | None, ci: Sequence[float] | None) -> str:
    """Rule 1: "up" or "down" when the CI excludes 0, "flat" when it includes 0, "unknown" without a CI."""
    if value is None or not ci or ci[0] is None or ci[1] is None:
        return "unknown"
    if ci[0] > 0:
        return "up"
    if ci[1] < 0:
        return "down"
    return "flat"


def _change(row: dict, group: str) -> tuple[float | None, list | None]:
    return (row.get("change") or {}).get(group), (row.get("change_ci") or {}).get(group)


def raised_math(row: dict) -> bool:
    """Rule 2."""
    return direction(*_change(row, "math")) == "up"


def ti_usable(row: dict) -> bool:
    """Rule 3: defined and stable."""
    return not row.get("error") and not row.get("unstable") and row.get("TI_other") is not None


CHANGE_WORDS = {"up": "gained", "down": "lost", "flat": "no measurable change", "unknown": "changed (no CI)"}


def change_verdict(row: dict, group: str) -> str:
    """One group change of a TI row in words by rule 1, with its figure: "lost (-5.2 points [-8.0, -2.4])"."""
    value, ci = _change(row, group)
    text = f"{signed(value)} points"
    if ci:
        text += f" {fmt_ci(tuple(ci))}"
    return f"{CHANGE_WORDS[direction(value, ci)]} ({text})"


def _describe_change(row: dict, group: str) -> str:
    return f"{GROUP_WORDS[group]} {change_verdict(row, group)}"


def model_sentence(row: dict) -> str:
    """What happened to one tuned model, group by group, and its TI when it can be read (rule 3)."""
    value, ci = _change(row, "math")
    math = {"up": "raised math", "down": "lowered math", "flat": "did not change math measurably"}
    math_text = math.get(direction(value, ci), "changed math without a CI")
    parts = [f"{row['model']} {math_text} ({signed(value)} points{' ' + fmt_ci(tuple(ci)) if ci else ''})"]
    parts += [_describe_change(row, g) for g in ("other", "non")]
    sentence = "; ".join(parts)
    if ti_usable(row):
        tis = [
            f"TI_{g} {fmt(row.get(f'TI_{g}'))}"
            + (f" {fmt_ci(tuple(row[f'TI_{g}_ci']))}" if row.get(f"TI_{g}_ci") else "")
            for g in ("other", "non")
        ]
        sentence += "; " + ", ".join(tis)
    elif row.get("error"):
        sentence += "; TI undefined (no math gain to divide by)"
    elif row.get("unstable"):
        sentence += "; TI unstable (the math index's CI includes 0), not read"
    return sentence + "."


def _difference_words(d: Difference, group: str, measure: str) -> tuple[str, str]:
    """(direction of a−b, a clause) for one group's difference."""
    est = d.estimate
    where = direction(est.value if d.defined else None, est.ci)
    unit = "" if measure == "TI" else " points"
    numbers = f"{signed(est.value if d.defined else None)}{unit} {fmt_ci(est.ci)}".strip()
    verdict = {
        "up": f"{d.a} ahead",
        "down": f"{d.b} ahead",
        "flat": "cannot tell (the CI includes 0)",
        "unknown": "cannot tell (no CI)",
    }[where]
    return where, f"{GROUP_WORDS[group]} {measure} {d.a} − {d.b} = {numbers}: {verdict}"


def pair_sentence(a: str, b: str, by_quantity: dict[str, Difference], usable: bool) -> tuple[str, set[str]]:
    """Rule 4 for one on-policy arm a and one off-policy arm b: the sentence and the directions it found."""
    measure = "TI" if usable else "Δ"
    found, clauses = set(), []
    for g in ("other", "non"):
        d = by_quantity[f"TI_{g}" if usable else f"Δ{g}"]
        where, clause = _difference_words(d, g, measure)
        found.add(where)
        clauses.append(clause)
    how = "by the TI" if usable else "by group changes (the TI cannot be used for both: rule 3)"
    return f"{a} vs {b}, {how}: " + "; ".join(clauses) + ".", found


def finding(
    ti_rows: Sequence[dict], arms: dict[str, list[str]], method_of: dict[str, str], differences: Sequence[Difference]
) -> list[str]:
    """The finding as a list of sentences: which arms raised math, what happened elsewhere, on- vs off-policy."""
    by_model = {r["model"]: r for r in ti_rows}
    rows = [by_model[m] for models in arms.values() for m in models if m in by_model]
    if not rows:
        return ["No tuned model to compare with a base."]
    raised = [r["model"] for r in rows if raised_math(r)]
    if raised:
        lines = [f"Raised math beyond noise (Δmath CI above 0): {', '.join(raised)}."]
    else:
        lines = [
            "No model raised math beyond noise (every Δmath CI reaches 0 or below), so no TI is defined and stable: "
            "transfer of a math gain cannot be measured here; the group changes below say what happened."
        ]
    lines += [model_sentence(r) for r in rows]
    lines.append(on_vs_off(by_model, arms, method_of, differences))
    grid = grid_verdict(by_model, arms, method_of, differences)
    if grid:
        lines.append(" ".join([GRID_WORDS[grid[0]], *grid[1]]))
    return lines


GRID_WORDS = {
    "policy": "The grid: the transfer follows on-policy data here, not the reward.",
    "reward": "The grid: the transfer follows the reward here, not on-policy data.",
    "both": "The grid: the transfer follows both on-policy data and the reward here.",
    "neither": "The grid: neither on-policy data nor the reward changes the transfer measurably here.",
    "unclear": "The grid: which the transfer follows, on-policy data or the reward, the data cannot tell.",
    "absent": "The grid: not complete,",
}


def grid_verdict(
    by_model: dict[str, dict], arms: dict[str, list[str]], method_of: dict[str, str], differences: Sequence[Difference]
) -> tuple[str, list[str]] | None:
    """Rule 7: the verdict and the sentences of each factor's pairs; None without an on-policy teacher arm."""

    def cell(policy: str, signal: str) -> list[str]:
        return [
            a for a in arms if (m := METHODS.get(method_of.get(a, ""))) and (m.policy, m.signal) == (policy, signal)
        ]

    on_teacher, off_teacher, on_reward = cell("on", "teacher"), cell("off", "teacher"), cell("on", "reward")
    if not on_teacher:
        return None
    if not off_teacher or not on_reward:
        missing = "no off-policy SFT arm" if not off_teacher else "no on-policy arm trained on a reward"
        return "absent", [f"the study has {missing}."]
    table = {(d.a, d.b, d.quantity): d for d in differences}
    policy, policy_text = _factor(by_model, arms, table, [(a, b) for a in on_teacher for b in off_teacher])
    signal, signal_text = _factor(by_model, arms, table, [(r, a) for r in on_reward for a in on_teacher])
    verdict = {("ahead", "none"): "policy", ("none", "ahead"): "reward", ("ahead", "ahead"): "both"}
    verdict |= {("none", "none"): "neither"}
    sentences = [f"Policy (on − off, both from a teacher): {policy_text}", f"Signal (reward − teacher): {signal_text}"]
    return verdict.get((policy, signal), "unclear"), sentences


def _factor(by_model, arms, table, pairs: list[tuple[str, str]]) -> tuple[str, str]:
    """One factor of rule 7 over its (first, second) arm pairs: "ahead" (the first), "none", "mixed" or "behind",
    and the pairs' sentences (rule 4's)."""
    found, texts = set(), []
    for a, b in pairs:
        quantities = {q: d for (x, y, q), d in _oriented(table, a, b).items()}
        if not quantities:
            continue
        usable = all(ti_usable(by_model[m]) for m in [*arms[a], *arms[b]] if m in by_model)
        text, directions = pair_sentence(a, b, quantities, usable)
        found |= directions
        texts.append(text)
    if "up" in found and "down" not in found:
        status = "ahead"
    elif "down" in found and "up" not in found:
        status = "behind"
    elif found == {"flat"}:
        status = "none"
    else:
        status = "mixed"
    return status, " ".join(texts) or "no pair compared."


def _oriented(table: dict, a: str, b: str) -> dict:
    """The differences a − b, from the table's a − b or its b − a negated (comparisons hold each pair once)."""
    direct = {k: d for k, d in table.items() if k[:2] == (a, b)}
    if direct:
        return direct
    out = {}
    for (x, y, q), d in table.items():
        if (x, y) == (b, a):
            ci = (-d.estimate.ci[1], -d.estimate.ci[0]) if d.estimate.ci else None
            out[a, b, q] = Difference(a, b, q, Estimate(-d.estimate.value, ci, d.estimate.undefined_share), d.flag)
    return out


def on_vs_off(
    by_model: dict[str, dict], arms: dict[str, list[str]], method_of: dict[str, str], differences: Sequence[Difference]
) -> str:
    verdict, sentences = on_off_verdict(by_model, arms, method_of, differences)
    return " ".join([VERDICT_WORDS[verdict], *sentences])


def on_off_verdict(
    by_model: dict[str, dict], arms: dict[str, list[str]], method_of: dict[str, str], differences: Sequence[Difference]
) -> tuple[str, list[str]]:
    """Rule 4: "better", "worse", "unclear" or "absent" (no pair to compare), and the sentence of each pair."""
    # The paper's on-policy arms learn from a reward; on-policy distillation, which it has not, enters rule 7 only.
    on = [a for a in arms if policy_of(method_of.get(a)) == "on" and _signal(method_of.get(a)) == "reward"]
    off = [a for a in arms if policy_of(method_of.get(a)) == "off"]
    if not on or not off:
        on_methods = ", ".join(m.name for m in METHODS.values() if (m.policy, m.signal) == ("on", "reward"))
        missing = f"on-policy ({on_methods})" if not on else "off-policy SFT"
        return "absent", [f"the study has no {missing} arm."]
    table = {(d.a, d.b, d.quantity): d for d in differences}
    sentences, verdicts = [], set()
    for a in on:
        for b in off:
            quantities = {q: table[a, b, q] for (x, y, q) in table if (x, y) == (a, b)}
            if not quantities:
                continue
            usable = all(ti_usable(by_model[m]) for m in [*arms[a], *arms[b]])
            text, found = pair_sentence(a, b, quantities, usable)
            sentences.append(text)
            if "up" in found and "down" not in found:
                verdicts.add("better")
            elif "down" in found and "up" not in found:
                verdicts.add("worse")
            else:
                verdicts.add("unclear")
    return _verdict(verdicts), sentences


def _signal(method: str | None) -> str:
    """What a method learns from (train.methods); a survey's SFT and RL families, a teacher and a reward."""
    return METHODS[method].signal if method in METHODS else {"SFT": "teacher"}.get(method or "", "reward")


def _verdict(verdicts: set[str]) -> str:
    return next(iter(verdicts)) if len(verdicts) == 1 else "unclear"


VERDICT_WORDS = {
    "better": "On-policy arms transfer better than off-policy SFT here, in every pair compared.",
    "worse": "On-policy arms transfer worse than off-policy SFT here, in every pair compared.",
    "unclear": "Whether on-policy arms transfer better than off-policy SFT: the data cannot tell.",
    "absent": "On- vs off-policy: not compared,",
}

PAPER = (
    "In the paper's controlled study (Qwen3-14B-Base) every arm raised math and on-policy training "
    "transferred better than off-policy SFT (TI_other / TI_non: GRPO 82.3 / 52.2, think-SFT 52.2 / −104.1, "
    "no-think-SFT 165.4 / −278.9; on-policy vs off-policy SFT on Qwen3-8B-Base 68.6 / 30.2 vs 18.3 / −40.5)."
)


def against_the_paper(ti_rows: Sequence[dict], arms: dict[str, list[str]], verdict: str) -> str:
    """Rule 5, from rule 2 per arm and rule 4's verdict: the paper's finding quoted, then paper_verdict."""
    return f"{PAPER} {paper_verdict(ti_rows, arms, verdict)}"


def paper_verdict(ti_rows: Sequence[dict], arms: dict[str, list[str]], verdict: str) -> str:
    """Rule 5's conclusion alone: "This study reproduces both.", "... contradicts it ...", or what is missing."""
    by_model = {r["model"]: r for r in ti_rows}
    not_raised = [a for a, models in arms.items() if not all(raised_math(by_model[m]) for m in models if m in by_model)]
    if verdict == "worse":
        return "This study contradicts it: here on-policy arms transfer worse."
    if verdict == "better" and not not_raised:
        return "This study reproduces both."
    missing = []
    if not_raised:
        missing.append(f"not every arm raised math ({', '.join(not_raised)} did not)")
    if verdict != "better":
        missing.append("on-policy arms are not shown to transfer better" if verdict != "absent" else "no on/off pair")
    return f"This study does not reproduce it: {'; '.join(missing)}."


PAPER_SHORT = "The paper: every arm raised math, and on-policy training transferred better than off-policy SFT."


def short_finding(first: str, verdict: str, pairs: list[str], conclusion: str = "") -> list[str]:
    """The finding in two or three sentences for the top of the report: which models raised math (the finding's
    first line), rule 4's verdict without its numbers, and rule 5's `conclusion` (paper_verdict) when there is one."""
    lines = [first, " ".join([VERDICT_WORDS[verdict], *pairs]) if verdict == "absent" else VERDICT_WORDS[verdict]]
    return lines + ([f"{PAPER_SHORT} {conclusion}"] if conclusion else [])


SMOKE = (
    "This is a smoke test on the quick lab base (a miniature model, a few training steps, a few documents per "
    "benchmark): it checks that every stage runs, and does not test the paper's claim; its numbers are not a result."
)
