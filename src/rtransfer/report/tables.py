"""Tables as plain rows of cells, rendered for the terminal (rich), CSV, LaTeX or Markdown.

A table is a header and rows of already-formatted cells, so every format shows the same numbers.
"""

import csv
import io
import math
from collections.abc import Sequence

from rtransfer.benchmarks.names import GROUPS
from rtransfer.paper import mark
from rtransfer.transfer import ti_flag

FORMATS = ("terminal", "csv", "latex", "markdown")


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    text = f"{x:.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text  # no "-0.0" for a value that rounds to zero


def fmt_ci(ci: tuple[float, float] | None, digits: int = 1) -> str:
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]" if ci else ""


def fmt_sig(x: float | None) -> str:
    """Probe figures span orders of magnitude (a KL of 2e-6 beside 0.3): three significant digits, not decimals."""
    return "—" if x is None else f"{x:.3g}"


def fmt_sig_ci(values) -> str:
    return f"[{fmt_sig(values[0])}, {fmt_sig(values[1])}]" if values else ""


def ti_cells(value: float | None, ci, flag: str) -> list[str]:
    """A TI and its CI as every table shows them: a flagged TI is "— (unstable)" / "— (undefined)" with no CI,
    never a number that a reader would take for a result (the JSON keeps both)."""
    if flag:
        return [f"— ({flag})", ""]
    return [fmt(value), fmt_ci(tuple(ci)) if ci and None not in ci else ""]


def render(header: Sequence[str], rows: Sequence[Sequence[str]], form: str = "terminal", title: str = "") -> str:
    if form == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return out.getvalue()
    if form == "latex":
        return _latex(header, rows, title)
    if form == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    return _terminal(header, rows, title)


def _terminal(header, rows, title) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None, header_style="bold")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for r in rows:
        table.add_row(*r)
    import shutil

    # Render into a string at the terminal's width (wide when piped), so callers decide where it goes.
    width = shutil.get_terminal_size((200, 24)).columns
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    console.print(table)
    return console.file.getvalue()


_LATEX_ESCAPES = {
    "&": r"\&",
    "%": r"\%",
    "_": r"\_",
    "#": r"\#",
    "$": r"\$",
    "−": "$-$",
    "—": "--",
    "±": r"$\pm$",
    "σ": r"$\sigma$",
    "Δ": r"$\Delta$",
}


def _tex(cell: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in cell)


def _latex(header, rows, title) -> str:
    lines = [r"\begin{table}[t]", r"\centering"]
    if title:
        lines.append(rf"\caption{{{_tex(title)}}}")
    lines += [
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(_tex(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_tex(c) for c in r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def ti_table(results, reported: dict | None = None) -> tuple[list[str], list[list[str]]]:
    """The TI table of `rtransfer ti` and the study: TIs, their CIs, the group changes, the paper's values when
    `reported` (model → ReportedTI) is given."""
    reported = reported or {}
    with_ci = any(r.ci for r in results)
    header = ["model", "base", "method", "TI_other", "TI_non"]
    if with_ci:
        header += ["TI_other CI", "TI_non CI"]
    # The group changes, always beside the TI: points of the group's mean score (with their CI when resampled).
    header += [f"Δ{g}" for g in GROUPS]
    if with_ci:
        header += [f"Δ{g} CI" for g in GROUPS]
    if reported:
        header += ["paper TI_other", "paper TI_non", "diff other", "diff non", ""]
    cells = []
    for r in results:
        flag = ti_flag(r.undefined, r.unstable)
        (other, other_ci), (non, non_ci) = (ti_cells(r.ti[g], r.ci.get(g), flag) for g in ("other", "non"))
        row = [r.model, r.base, r.method, other, non]
        if with_ci:
            row += [other_ci, non_ci]
        row += [fmt(r.change.get(g, float("nan"))) for g in GROUPS]
        if with_ci:
            row += [fmt_ci(r.change_ci.get(g)) for g in GROUPS]
        rep = reported.get(r.model)
        if reported and rep:
            diffs = ["—" if flag else fmt(r.ti[g] - paper) for g, paper in (("other", rep.other), ("non", rep.non))]
            row += [fmt(rep.other), fmt(rep.non), *diffs]
            row.append(mark(r, rep))
        elif reported:
            row += ["", "", "", "", ""]
        cells.append(row)
    return header, cells
