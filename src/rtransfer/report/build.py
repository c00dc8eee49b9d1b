"""The report stage: files in, report out.

    write_report(STUDY_DIR)                  a study directory (`rtransfer study`): report.html, report.md,
                                             figures/*.png, tables/*.csv and *.tex in STUDY_DIR (or `out`)
    write_run_report(RUN_DIRS, base, OUT)    eval run directories alone, compared with `base`
    write_monitor_report(FOLDER, OUT)        a monitor folder (TransferCallback, `rtransfer watch`): the TI over steps

Reads only files (records, scores, TI, probe results, training logs); imports no engine and no torch.
"""

from pathlib import Path

from rtransfer.report.collect import ReportData, load_monitor, load_runs, load_study
from rtransfer.report.document import Section, Table
from rtransfer.report.drift_law import drift_law
from rtransfer.report.evidence import EVIDENCE_SECTIONS
from rtransfer.report.html import render_html
from rtransfer.report.markdown import render_markdown
from rtransfer.report.sections import RESULT_SECTIONS, Results
from rtransfer.report.tables import render


def build_sections(data: ReportData) -> tuple[list[Section], Results]:
    results = Results(data)
    return [make(data, results) for make in (*RESULT_SECTIONS, drift_law, *EVIDENCE_SECTIONS)], results


SMOKE_BANNER = (
    "Smoke test on the quick lab base: not a result. This study trained a miniature model for a few steps and "
    "scored it on a few documents per benchmark, to check that every stage runs; its numbers do not test the "
    "paper's claim. Run the study without --quick for a result."
)


def write_report(study_dir: str | Path, out: str | Path | None = None) -> dict:
    data = load_study(study_dir)
    title = f"rtransfer report: study {data.title}" + (" (smoke test)" if data.smoke else "")
    return _write(data, Path(out) if out else Path(study_dir), title, SMOKE_BANNER if data.smoke else "")


def write_run_report(run_dirs: list[str | Path], base: str | None, out: str | Path) -> dict:
    data = load_runs(run_dirs, base)
    return _write(data, Path(out), "rtransfer report: " + ", ".join(data.models))


def write_monitor_report(folder: str | Path, out: str | Path | None = None) -> dict:
    data = load_monitor(folder)
    return _write(data, Path(out) if out else Path(folder) / "report", "rtransfer report: transfer over training")


def _write(data: ReportData, out: Path, title: str, banner: str = "") -> dict:
    sections, results = build_sections(data)
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    (out / "tables").mkdir(exist_ok=True)
    tables = []
    for section in sections:
        for figure in section.figures():
            (out / "figures" / f"{figure.name}.png").write_bytes(figure.png)
            if figure.data:  # the numbers a figure plots: CSV only, for whoever checks or redraws it
                tables += _write_table(out, figure.data, ("csv",))
        for table in section.tables():
            if table.name:
                tables += _write_table(out, table, ("csv", "latex"))
    html, md = out / "report.html", out / "report.md"
    html.write_text(render_html(title, sections, banner), encoding="utf-8")
    md.write_text(render_markdown(title, sections, banner), encoding="utf-8")
    return {"html": html, "md": md, "tables": tables, "finding": results.finding}


SUFFIX = {"csv": "csv", "latex": "tex"}


def _write_table(out: Path, table: Table, forms: tuple[str, ...]) -> list[Path]:
    paths = []
    for form in forms:
        path = out / "tables" / f"{table.name}.{SUFFIX[form]}"
        path.write_text(render(table.header, table.rows, form, table.caption), encoding="utf-8")
        paths.append(path)
    return paths
