"""Where TI inputs come from: a scores table, rtransfer run directories, lm-evaluation-harness results.

Each loader returns ModelScores rows with canonical benchmark names and scores in 0–100.
"""

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rtransfer.benchmarks.names import LmEval, benchmarks, canonical, known_names, lookup
from rtransfer.errors import DataError
from rtransfer.runs import RunDir, read_json
from rtransfer.transfer import DocGrades, ModelScores, check_rows

META_COLUMNS = ("model", "base", "method")
SCALES = (100, 1)  # points (0–100), or fractions (0–1) converted to points


def load_scores_csv(path: str | Path, scale: int = 100) -> list[ModelScores]:
    """A table shaped like the paper's: `model`, `base` (empty for base models), optional `method`, then one
    column per benchmark (canonical or display names). Empty cells are missing scores.

    Scores are in points (0–100) unless `scale` is 1 (fractions, multiplied by 100 here). A table read in the
    wrong scale gives a wrong TI without any error (v2 weighs each benchmark by 100 − R_base), so a table, or a
    row, whose scores all lie in 0–1 is refused in points. Each benchmark's resolution is its column's finest
    decimal: gains closer than that are not told apart (transfer.sigma_floor).
    """
    path = Path(path)
    if scale not in SCALES:
        raise DataError(f"--scale must be 100 (points) or 1 (fractions), not {scale}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            lines = list(reader)
    except FileNotFoundError:
        raise DataError(f"{path}: no such scores table") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: not a readable CSV table ({err})") from None
    for column in ("model", "base"):
        if column not in header:
            raise DataError(f"{path}: the header has no {column!r} column (found: {', '.join(header) or 'nothing'})")
    columns: dict[str, str] = {}
    for column in header:
        if column in META_COLUMNS:
            continue
        if lookup(column) is None:
            raise DataError(f"{path}: unknown benchmark column {column!r} (known: {known_names()})")
        name = canonical(column)
        if name in columns.values():
            raise DataError(f"{path}: two columns name the benchmark {name!r}")
        columns[column] = name
    rows = [_csv_row(path, number, line, columns, scale) for number, line in enumerate(lines, start=2)]
    if not rows:
        raise DataError(f"{path}: the table has no rows")
    if scale == 100:
        _check_points(path, rows)
    resolution = _column_resolution(lines, columns, scale)
    for row in rows:
        row.resolution = {b: resolution[b] for b in row.scores}
    check_rows(rows, str(path))
    return rows


def _check_points(path: Path, rows: list[ModelScores]) -> None:
    """Refuse scores that look like fractions: all of the table's, or all of a row's (three or more)."""
    values = [v for r in rows for v in r.scores.values()]
    if values and max(values) <= 1.0:
        raise DataError(
            f"{path}: every score lies in 0–1, but scores are read in points (0–100); "
            "pass --scale 1 to read them as fractions"
        )
    for number, r in enumerate(rows, start=2):
        mine = list(r.scores.values())
        if len(mine) >= 3 and max(mine) <= 1.0 and any(0 < v < 1 for v in mine):
            raise DataError(
                f"{path}:{number}: every score of {r.model!r} lies in 0–1 while the table is in points (0–100); "
                "write the row in points"
            )


def _column_resolution(lines: list[dict], columns: dict[str, str], scale: int) -> dict[str, float]:
    """Each benchmark's step in points: 10^-d for the most decimals d written in its column."""
    out = {}
    for column, name in columns.items():
        cells = [(line.get(column) or "").strip().lower() for line in lines]
        decimals = max((_decimals(c) for c in cells if c), default=0)
        out[name] = 10.0**-decimals * (100 / scale)
    return out


def _decimals(cell: str) -> int:
    mantissa, _, exponent = cell.partition("e")
    digits = len(mantissa.partition(".")[2])
    return max(digits - int(exponent or 0), 0)


def _csv_row(path: Path, number: int, line: dict, columns: dict[str, str], scale: int) -> ModelScores:
    if None in line:
        raise DataError(f"{path}:{number}: more cells than header columns")
    model = (line.get("model") or "").strip()
    if not model:
        raise DataError(f"{path}:{number}: empty model name")
    scores = {}
    for column, name in columns.items():
        cell = (line.get(column) or "").strip()
        if not cell:
            continue
        try:
            value = float(cell)
        except ValueError:
            raise DataError(f"{path}:{number}: {column} of {model!r} is {cell!r}, not a number") from None
        if not (math.isfinite(value) and 0.0 <= value <= scale):
            raise DataError(f"{path}:{number}: {column} of {model!r} is {cell}, outside 0–{scale}")
        scores[name] = value * 100 / scale
    return ModelScores(
        model=model,
        base=(line.get("base") or "").strip() or None,
        scores=scores,
        method=(line.get("method") or "").strip(),
    )


def load_run_dir(path: str | Path) -> tuple[ModelScores, list[str]]:
    """Scores of an rtransfer run directory, with per-document grades for bootstrap CIs, and notes.

    Scores come from the records (the source of truth, also after re-grading); a benchmark with no records
    file falls back to scores.json. A benchmark whose metrics say it is incomplete (HaluEval with a task file
    missing) is not the benchmark the paper reports: it is left out, and a note says so.
    """
    run = RunDir(path)
    manifest = run.manifest()
    row = ModelScores(
        model=manifest.get("name") or Path(path).name,
        base=manifest.get("base"),
        scores={},
        method=manifest.get("method") or "",
        provenance={canonical(b): p["docs"] for b, p in (manifest.get("provenance") or {}).items() if "docs" in p},
    )
    stored = {canonical(b): entry for b, entry in run.scores().get("benchmarks", {}).items()}
    incomplete = {b for b, entry in stored.items() if entry.get("complete") is False}
    for bench in run.benchmarks():
        name = canonical(bench)
        records = run.records(bench)
        if not records or name in incomplete:
            continue
        row.docs[name] = DocGrades.from_records(records)
        row.scores[name] = row.docs[name].score()
    for name, entry in stored.items():
        if name not in incomplete:
            row.scores.setdefault(name, float(entry["score"]))
    if not row.scores:
        raise DataError(f"{path}: the run has no graded records and no scores")
    notes = [
        f"{name} is incomplete in this run ({stored[name].get('incomplete') or stored[name].get('tasks')}); left out"
        for name in sorted(incomplete)
    ]
    return row, notes


# Where each benchmark's score is in lm-evaluation-harness results, as benchmarks/names.py declares it.
LM_EVAL_TASKS: dict[str, LmEval] = {b.name: b.lm_eval for b in benchmarks() if b.lm_eval}
FILTERS = ("custom-extract", "mcq-extract", "flexible-extract", "strict-match", "none")


def _metric(task_result: dict, metrics: tuple[str, ...]) -> tuple[str, float] | None:
    """(key, value) of the preferred metric in one task's results, e.g. ("exact_match,flexible-extract", 0.42)."""
    for metric in metrics:
        # Results written by old harness versions have no ",filter" suffix.
        for key in (*(f"{metric},{filt}" for filt in FILTERS), metric):
            value = task_result.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return key, float(value)
    return None


def _lm_eval_samples(folder: Path, task: str, key: str) -> DocGrades | None:
    """Per-document values of one metric from the `samples_<task>_*.jsonl` that `--log_samples` writes next to
    the results (the newest such file). List-valued metrics (IFEval's instruction level) become a ratio:
    value = mean of the list, weight = its length."""
    files = sorted(folder.glob(f"samples_{task}_*.jsonl"))
    if not files:
        return None
    metric, _, filt = key.partition(",")
    ids, values, weights = [], [], []
    with open(files[-1], encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
                if filt and sample.get("filter", "none") != filt:
                    continue
                value = sample[metric]
                doc_id = f"{task}/{sample['doc_id']}"
            except (ValueError, KeyError, TypeError) as err:
                raise DataError(f"{files[-1]}:{number}: not an lm-eval sample with {metric!r} ({err})") from None
            items = value if isinstance(value, list) else [value]
            if items:
                ids.append(doc_id)
                values.append(sum(float(v) for v in items) / len(items))
                weights.append(float(len(items)))
    return DocGrades(ids, np.array(values), np.array(weights)) if ids else None


def _combine(parts: list[DocGrades]) -> DocGrades:
    """Documents of several subtasks, weighted so that the score is the mean of the subtask scores."""
    return DocGrades(
        [d for p in parts for d in p.ids],
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.weights / p.weights.sum() for p in parts]),
    )


def load_lm_eval(path: str | Path) -> tuple[ModelScores, list[str]]:
    """Scores from lm-evaluation-harness `results_*.json` (a file, or a folder searched recursively; several
    files are merged, later ones winning). Per-document grades come from `samples_*.jsonl` files beside them
    when the run used --log_samples, giving bootstrap CIs. Returns the row and notes naming every benchmark not
    found."""
    path = Path(path)
    files = sorted(path.rglob("results_*.json")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no lm-evaluation-harness results_*.json here")
    results: dict[str, dict] = {}
    folder_of: dict[str, Path] = {}
    model = None
    for f in files:
        data = read_json(f, "lm-evaluation-harness results")
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            raise DataError(f"{f}: not an lm-evaluation-harness results file (no 'results' object)")
        results.update(data["results"])
        folder_of.update(dict.fromkeys(data["results"], f.parent))
        model = _lm_eval_model_name(data) or model
    row = ModelScores(model=model or (path.parent.name if path.is_file() else path.name), base=None, scores={})
    notes = []
    for bench, spec in LM_EVAL_TASKS.items():
        tasks, split, metrics = spec.tasks, spec.split, spec.metrics
        found = {t: m for t in tasks if t in results and (m := _metric(results[t], metrics))}
        if split and found and len(found) < len(tasks):
            missing = ", ".join(t for t in tasks if t not in found)
            notes.append(f"{bench}: only {len(found)} of {len(tasks)} subtasks (missing {missing}); left out")
            continue
        if not found:
            notes.append(f"{bench}: no task ({', '.join(tasks[:2])}{', ...' if len(tasks) > 2 else ''})")
            continue
        if not split:  # the first task found, in order of preference
            found = dict([next(iter(found.items()))])
        row.scores[bench] = 100.0 * sum(value for _, value in found.values()) / len(found)
        parts = [_lm_eval_samples(folder_of[t], t, key) for t, (key, _) in found.items()]
        if all(parts):
            docs = _combine(parts) if split else parts[0]
            if abs(docs.score() - row.scores[bench]) <= 1e-6 * 100:
                row.docs[bench] = docs
            else:
                notes.append(
                    f"{bench}: samples files give {docs.score():.4f}, results {row.scores[bench]:.4f}; no CI from them"
                )
    if not row.scores:
        raise DataError(f"{path}: none of the 12 benchmarks is among its tasks ({', '.join(sorted(results)[:8])})")
    return row, notes


def _lm_eval_model_name(data: dict) -> str | None:
    if data.get("model_name"):
        return str(data["model_name"])
    args = (data.get("config") or {}).get("model_args")
    if isinstance(args, str):
        for part in args.split(","):
            key, _, value = part.partition("=")
            if key.strip() in ("pretrained", "model", "path"):
                return value.strip()
    elif isinstance(args, dict):
        return args.get("pretrained") or args.get("model")
    return None


def load_inputs(
    paths: Sequence[str | Path], base: str | None = None, scale: int = 100
) -> tuple[list[ModelScores], list[str]]:
    """Rows from any mix of inputs, with `base` (an input path or a model name) as the base of every run
    directory and lm-eval input that does not name its own. An input written NAME=PATH is labelled NAME (two runs
    that call themselves the same, such as two trainings' `final`, can then be compared). `scale` is the scores
    tables' (100: points; 1: fractions). Returns (rows, notes)."""
    rows: list[ModelScores] = []
    notes: list[str] = []
    loose: list[tuple[Path, ModelScores]] = []  # rows whose base is set here
    renamed: dict[str, str] = {}  # a run's own name -> the label given to it
    for raw in paths:
        label, p = split_label(raw)
        if p.suffix.lower() == ".csv":
            if label:
                raise DataError(f"{raw}: a scores table names its models itself; NAME= is for one run or result")
            rows.extend(load_scores_csv(p, scale))
            continue
        if p.is_dir() and (p / "manifest.json").exists():
            row, found = load_run_dir(p)
        elif p.suffix.lower() == ".json" or p.is_dir():
            row, found = load_lm_eval(p)
        else:
            raise DataError(f"{p}: not a scores CSV, a run directory or lm-eval results")
        notes.extend(f"{p}: {n}" for n in found)
        if label:
            renamed[row.model], row.model = label, label
        loose.append((p, row))
    _check_names(loose)
    base_name = _resolve_base(base, loose, rows)
    for p, row in loose:
        row.base = renamed.get(row.base, row.base)
        if row.model == base_name:
            row.base = None
        elif row.base == row.model:
            raise DataError(
                f"{p}: the run names itself ({row.model!r}) as its base; give the base run with --base, or label "
                "the runs apart with NAME=PATH"
            )
        elif row.base is None:
            if base_name is None:
                raise DataError(f"{p}: which model is its base? name it with --base (a path or model name)")
            row.base = base_name
        rows.append(row)
    check_rows(rows, "inputs")
    return rows, notes


def split_label(raw: str | Path) -> tuple[str | None, Path]:
    """(NAME, PATH) of an input written NAME=PATH, or (None, PATH); a path that exists as written is never split."""
    p = Path(raw)
    if not p.exists() and "=" in str(raw):
        label, _, rest = str(raw).partition("=")
        if label and Path(rest).exists():
            return label, Path(rest)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    return None, p


def _check_names(loose: list[tuple[Path, ModelScores]]) -> None:
    seen: dict[str, Path] = {}
    for p, row in loose:
        if row.model in seen:
            raise DataError(
                f"{seen[row.model]} and {p} are both named {row.model!r}; label them apart with NAME=PATH "
                f"(e.g. {p.name}={p})"
            )
        seen[row.model] = p


def _resolve_base(base: str | None, loose: list[tuple[Path, ModelScores]], rows: list[ModelScores]) -> str | None:
    if base is None:
        return None
    for p, row in loose:
        if p.resolve() == Path(base).resolve():
            return row.model
    if any(r.model == base for r in rows) or any(r.model == base for _, r in loose):
        return base
    raise DataError(f"--base {base!r} is neither one of the inputs nor the name of a model in them")
