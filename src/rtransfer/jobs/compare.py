"""run(CompareSpec), the study's compare stage: scores.json, ti.json and comparisons.json, from its evaluation
run directories (the records are the truth), every TI and CI with the study's [ti] settings; and drift_law.json
from the arms' drift probes where the study measured them (rtransfer.drift_law). The report only renders these
files.

Where each model's files are is read from DIR/manifest.json (models[name]: run_dir, train_dir, steps), as the
study wrote it; a model the manifest does not list is read from DIR/runs/<name>, with no checkpoints. What each
trained model saw is its training directory's train.json `seen` (train/outputs.py); a survey model has none.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtransfer.comparisons import Settings, arm_of, arms_of, compare, score_rows, ti_table
from rtransfer.drift_law import fit_law, law_points
from rtransfer.paper import comparison, reported_ti
from rtransfer.runs import RunDir, read_json, write_json_atomic
from rtransfer.sources import load_run_dir
from rtransfer.specs import CompareSpec, ModelRef
from rtransfer.train.methods import policy_of
from rtransfer.train.outputs import final_step
from rtransfer.transfer import ModelScores


def run(spec: CompareSpec) -> dict[str, Any]:
    return write_results(spec.models, spec.ti, spec.survey, Path(spec.out))


def write_results(models: Sequence[ModelRef], ti: dict[str, Any], survey: bool, out: Path) -> dict[str, Any]:
    """Write DIR/scores.json, DIR/ti.json and DIR/comparisons.json; `ti` is study.config.TIConfig as a dict."""
    out = Path(out)
    settings = Settings.from_dict(ti)
    files = _manifest_models(out)
    rows, notes = load_rows(models, files, out)
    scores = []
    for m, row in zip(models, rows, strict=True):
        run_scores = RunDir(_run_dir(m, files, out)).scores()
        scores += score_rows(m.name, arm_of(m), m.method or "", m.seed, row, run_scores)
    write_json_atomic(out / "scores.json", scores)
    results = ti_table(rows, settings)
    ti_rows = [r.as_dict() for r in results]
    if survey:  # the paper's own TI beside ours, for the models it reports
        reported = reported_ti()
        for r, row in zip(results, ti_rows, strict=True):
            if r.model in reported:
                row.update(comparison(r, reported[r.model]))
    write_json_atomic(out / "ti.json", ti_rows)
    steps = step_rows(models, rows, files, out)
    seen = data_seen(models, files, out)
    comparisons = compare(rows, ti_rows, arms_of(models, policy_of), settings, steps, notes, seen)
    write_json_atomic(out / "comparisons.json", comparisons.as_dict())
    drift_files = {m: out / f["probes"]["drift"] for m, f in files.items() if (f.get("probes") or {}).get("drift")}
    drift = {m: read_json(path, "drift probe") for m, path in drift_files.items() if path.exists()}
    if drift:  # the drift law: each arm's drift at its points against what it retained there
        points = law_points(drift, comparisons, ti_rows)
        write_json_atomic(
            out / "drift_law.json", fit_law(points, settings.bootstrap, settings.seed, settings.confidence)
        )
    return {"notes": notes} if notes else {}


def load_rows(models: Sequence[ModelRef], files: dict[str, dict], out: Path) -> tuple[list[ModelScores], list[str]]:
    """ModelScores per model (per-document grades included), named, based and labelled as the study says."""

    rows, notes = [], []
    for m in models:
        row, row_notes = load_run_dir(_run_dir(m, files, out))
        row.model, row.method = m.name, m.method or ""
        # A survey's reference rows (the paper's Qwen3-14B think/no-think) are shown, never compared.
        row.base = m.base if m.role != "reference" else None
        rows.append(row)
        notes += [f"{m.name}: {n}" for n in row_notes]
    return rows, notes


def step_rows(
    models: Sequence[ModelRef], rows: Sequence[ModelScores], files: dict[str, dict], out: Path
) -> dict[str, dict[int, ModelScores]]:
    """Each model with evaluated checkpoints: step -> its scores there, the final model at its final step (train.json's
    step count, else the last logged step) included."""

    final_rows = {r.model: r for r in rows}
    steps = {}
    for m in models:
        entry = files.get(m.name) or {}
        if not entry.get("steps"):
            continue
        by_step = {int(s): load_run_dir(out / rel)[0] for s, rel in entry["steps"].items() if (out / rel).exists()}
        final = final_step(out / entry["train_dir"]) if entry.get("train_dir") else None
        if final is not None and final not in by_step:
            by_step[final] = final_rows[m.name]
        if by_step:
            steps[m.name] = by_step
    return steps


def data_seen(models: Sequence[ModelRef], files: dict[str, dict], out: Path) -> dict[str, dict[str, int]]:
    """Each trained model's `seen` (queries, sequences, tokens, steps), as its train.json records it."""
    seen = {}
    for m in models:
        train_dir = (files.get(m.name) or {}).get("train_dir")
        info = out / train_dir / "train.json" if train_dir else None
        if info and info.exists() and (counts := json.loads(info.read_text()).get("seen")):
            seen[m.name] = counts
    return seen


def _manifest_models(out: Path) -> dict[str, dict]:
    path = out / "manifest.json"
    return json.loads(path.read_text()).get("models") or {} if path.exists() else {}


def _run_dir(model: ModelRef, files: dict[str, dict], out: Path) -> Path:
    return out / ((files.get(model.name) or {}).get("run_dir") or f"runs/{model.name}")
