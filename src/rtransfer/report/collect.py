"""Everything a report shows, read from files into one object: a study directory, or a few eval run directories.

The study's own numbers (scores.json, ti.json) are taken as they are; the run directories give the per-document
grades that the report's own figures (arm differences, per-benchmark changes, TI over steps) resample, and the
records that example answers come from. Nothing here runs a model.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtransfer.benchmarks.names import group_of
from rtransfer.errors import DataError
from rtransfer.runs import RunDir, read_json
from rtransfer.sources import load_inputs, load_run_dir
from rtransfer.transfer import ModelScores, align_documents, transferability

QUICK_BASE = "lab:quick"  # the seconds-long lab miniature: studies on it are smoke tests
BOOTSTRAP = 1000  # replicates of every CI the report computes itself (fixed seed: the report is reproducible)
CONFIDENCE = 0.95
SEED = 0


@dataclass
class Model:
    """One model of the study: its arm (or "base"), training method, seed and where its files are."""

    name: str
    arm: str
    method: str = ""
    seed: int | None = None
    thinking: str | None = None
    base: str | None = None  # the model it is compared with; None for a base
    run_dir: Path | None = None
    train_dir: Path | None = None
    steps: dict[int, Path] = field(default_factory=dict)  # checkpoint step -> its eval run dir
    probes: dict[str, Path] = field(default_factory=dict)  # "latent" / "tokens" -> result file

    @property
    def label(self) -> str:
        return self.name if self.method in ("", self.name) else f"{self.name} ({self.method})"


@dataclass
class ReportData:
    title: str
    root: Path  # where relative paths in the report start
    models: dict[str, Model]  # in the study's order, bases first
    rows: list[ModelScores]  # scores with per-document grades where records exist, one row per model
    scores: list[dict[str, Any]]  # scores.json's rows
    ti: list[dict[str, Any]]  # ti.json's rows (TIResult.as_dict)
    manifest: dict[str, Any]  # the study's manifest, or {"runs": {model: run manifest}}
    steps: dict[str, dict[int, ModelScores]] = field(default_factory=dict)  # model -> step -> scores
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # model -> log.jsonl rows
    training: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> train.json
    probes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # model -> probe -> result
    notes: list[str] = field(default_factory=list)

    @property
    def smoke(self) -> bool:
        """A smoke test, not a result: a study whose own manifest says its base is the quick lab base (what
        `rtransfer study --quick` trains), or that it ran as --quick. Read from the files, never the folder name."""
        config = self.manifest.get("config") or {}
        return config.get("base") == QUICK_BASE or config.get("quick") is True

    @property
    def tuned(self) -> list[Model]:
        return [m for m in self.models.values() if m.base]

    def arms(self) -> dict[str, list[str]]:
        """Arm -> its models (one per seed), in the study's order; bases are no arm."""
        out: dict[str, list[str]] = {}
        for m in self.tuned:
            out.setdefault(m.arm, []).append(m.name)
        return out

    def method_of_arm(self, arm: str) -> str:
        return next(m.method for m in self.tuned if m.arm == arm)


def is_study(path: Path) -> bool:
    manifest = Path(path) / "manifest.json"
    return manifest.exists() and "study" in read_json(manifest, "manifest")


def load_study(root: str | Path) -> ReportData:
    root = Path(root)
    manifest = read_json(root / "manifest.json", "study manifest")
    if "study" not in manifest or not isinstance(manifest.get("models"), dict):
        raise DataError(f"{root}: not a study directory (its manifest.json has no 'study' and 'models')")
    scores = read_json(root / "scores.json", "study scores")
    ti = read_json(root / "ti.json", "study TI table")
    bases_of = {row["model"]: row["base"] for row in ti}
    declared_bases = [name for name, m in manifest["models"].items() if m.get("arm") == "base"]
    models: dict[str, Model] = {}
    for name, entry in manifest["models"].items():
        base = None
        if entry.get("arm") != "base":
            only = declared_bases[0] if len(declared_bases) == 1 else None
            base = entry.get("base") or bases_of.get(name) or only
        models[name] = Model(
            name=name,
            arm=entry.get("arm") or name,
            method=entry.get("method") or "",
            seed=entry.get("seed"),
            thinking=entry.get("thinking"),
            base=base,
            run_dir=_path(root, entry.get("run_dir")),
            train_dir=_path(root, entry.get("train_dir")),
            steps={int(s): root / p for s, p in (entry.get("steps") or {}).items()},
            probes={kind: root / p for kind, p in (entry.get("probes") or {}).items() if p},
        )
    models = dict(sorted(models.items(), key=lambda kv: kv[1].base is not None))  # bases first, order kept
    data = ReportData(manifest.get("study") or root.name, root, models, [], scores, ti, manifest)
    data.rows = [_study_row(data, m) for m in models.values()]
    _check_scores(data)
    for m in models.values():
        if m.steps:
            data.steps[m.name] = {s: _named(load_run_dir(p)[0], m) for s, p in sorted(m.steps.items()) if p.exists()}
        if m.train_dir and (m.train_dir / "log.jsonl").exists():
            data.logs[m.name] = [json.loads(line) for line in (m.train_dir / "log.jsonl").read_text().splitlines()]
        if m.train_dir and (m.train_dir / "train.json").exists():
            data.training[m.name] = read_json(m.train_dir / "train.json", "training record")
        for kind, p in m.probes.items():
            if p.exists():
                data.probes.setdefault(m.name, {})[kind] = read_json(p, f"{kind} probe result")
            else:
                data.notes.append(f"{m.name}: the {kind} probe result {p} is missing")
    return data


def load_runs(run_dirs: list[str | Path], base: str | None) -> ReportData:
    """A report's data from eval run directories alone, with `base` as in `rtransfer ti --base`; scores and the
    TI are computed here (the same calls as `rtransfer ti`), as no study computed them."""
    rows, notes = load_inputs([str(p) for p in run_dirs], base=base)
    rows, aligned = align_documents(rows)  # the tables show the scores the TI compares
    models: dict[str, Model] = {}
    manifests: dict[str, dict] = {}
    for p, row in zip(run_dirs, rows, strict=True):  # load_inputs keeps the order of its inputs
        manifests[row.model] = RunDir(p).manifest()
        arm = row.model if row.base else "base"
        models[row.model] = Model(row.model, arm, row.method, manifests[row.model].get("seed"), None, row.base, Path(p))
    models = dict(sorted(models.items(), key=lambda kv: kv[1].base is not None))
    rows = sorted(rows, key=lambda r: list(models).index(r.model))
    scores = [s for r in rows for s in score_row(models[r.model], r, RunDir(models[r.model].run_dir))]
    ti = [r.as_dict() for r in transferability(rows, bootstrap=BOOTSTRAP, confidence=CONFIDENCE, seed=SEED)]
    data = ReportData("eval runs", Path.cwd(), models, rows, scores, ti, {"runs": manifests})
    data.notes = notes + aligned
    return data


def _path(root: Path, rel: str | None) -> Path | None:
    return root / rel if rel else None


def _named(row: ModelScores, model: Model) -> ModelScores:
    row.model, row.base, row.method = model.name, model.base, model.method
    return row


def _study_row(data: ReportData, model: Model) -> ModelScores:
    """The model's scores with per-document grades from its run dir; from scores.json alone (no CIs of the
    report's own) when the study kept no run dir for it (a survey of published scores)."""
    if model.run_dir and model.run_dir.exists():
        row, notes = load_run_dir(model.run_dir)
        data.notes += [f"{model.name}: {n}" for n in notes]
        return _named(row, model)
    data.notes.append(f"{model.name}: no run directory; its figures come from scores.json without resampling")
    scores = {s["benchmark"]: float(s["score"]) for s in data.scores if s["model"] == model.name}
    return ModelScores(model.name, model.base, scores, model.method)


def _check_scores(data: ReportData) -> None:
    """scores.json must be what the run dirs say: the report shows the study's numbers and resamples the runs'."""
    by_model = {r.model: r for r in data.rows}
    for s in data.scores:
        row = by_model.get(s["model"])
        if row is None:
            raise DataError(f"{data.root}/scores.json: model {s['model']!r} is not in the study's manifest")
        mine = row.scores.get(s["benchmark"])
        if mine is not None and abs(mine - float(s["score"])) > 1e-6:
            data.notes.append(
                f"{s['model']} {s['benchmark']}: scores.json says {s['score']:.4f}, its records {mine:.4f}"
            )


def score_row(model, row: ModelScores, run: RunDir) -> list[dict[str, Any]]:
    """scores.json's rows of one model: `model` names it (name, arm, method, seed), `row` holds its scores (from
    the records), the run's scores.json the CIs."""
    stored = run.scores().get("benchmarks", {})
    out = []
    for bench, score in row.scores.items():
        ci = (stored.get(bench) or {}).get("ci") or [None, None]
        out.append(
            {"model": model.name, "arm": model.arm, "method": model.method, "seed": model.seed}
            | {"benchmark": bench, "group": group_of(bench), "score": score, "ci_low": ci[0], "ci_high": ci[1]}
        )
    return out
