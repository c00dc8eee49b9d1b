"""The study's scores.json and ti.json, from its evaluation run directories (the records are the truth)."""

from pathlib import Path
from typing import Any

from rtransfer.runs import RunDir, write_json_atomic


def load_rows(models, out: Path):
    """ModelScores per model (per-document grades included), named, based and labelled as the study says."""
    from rtransfer.sources import load_run_dir

    rows, notes = [], []
    for m in models:
        row, row_notes = load_run_dir(out / "runs" / m.name)
        row.model, row.method = m.name, m.method
        # A survey's reference rows (the paper's Qwen3-14B think/no-think) are shown, never compared.
        row.base = m.base if m.method != "reference" else None
        rows.append(row)
        notes += [f"{m.name}: {n}" for n in row_notes]
    return rows, notes


def score_rows(models, rows, out: Path) -> list[dict[str, Any]]:
    from rtransfer.report.collect import score_row

    return [r for m, row in zip(models, rows, strict=True) for r in score_row(m, row, RunDir(out / "runs" / m.name))]


def write_results(models, config, out: Path) -> dict[str, Any]:
    rows, notes = load_rows(models, out)
    write_json_atomic(out / "scores.json", score_rows(models, rows, out))
    results = _transferability(rows, config)
    ti = [r.as_dict() for r in results]
    if config.survey:  # the paper's own TI beside ours, for the models it reports
        from rtransfer.paper import comparison, reported_ti

        reported = reported_ti()
        for r, row in zip(results, ti, strict=True):
            if r.model in reported:
                row.update(comparison(r, reported[r.model]))
    write_json_atomic(out / "ti.json", ti)
    return {"notes": notes} if notes else {}


def _transferability(rows, config):
    from rtransfer.transfer import transferability

    t = config.ti
    return transferability(
        rows, index=t.index, sigma=t.sigma, bootstrap=t.bootstrap, confidence=t.confidence, seed=t.seed
    )
