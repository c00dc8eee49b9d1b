"""Everything a report shows, read from files into one object: a study directory, or a few eval run directories.

A study's numbers are taken as its compare stage wrote them (scores.json, ti.json, comparisons.json, with the
study's [ti] settings); the report computes none. Eval run directories alone have no compare stage, so the same
calls (comparisons.ti_table, comparisons.compare) run here, with the default settings (comparisons.Settings, =
study.config.TIConfig's defaults). Each model is the study's specs.ModelRef, read back from the manifest with the
same class. Nothing here runs a model.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtransfer.comparisons import Comparisons, Settings, arm_of, arms_of, compare, score_rows, ti_table
from rtransfer.errors import DataError
from rtransfer.runs import RunDir, read_json
from rtransfer.sources import load_inputs
from rtransfer.specs import ModelRef, model_from_json
from rtransfer.train.methods import policy_of
from rtransfer.transfer import align_documents

QUICK_BASE = "lab:quick"  # the seconds-long lab miniature: studies on it are smoke tests


@dataclass
class StudyModel:
    """One model of a report: who it is (the study's ModelRef) and where its files are."""

    ref: ModelRef
    run_dir: Path | None = None
    train_dir: Path | None = None
    steps: dict[int, Path] = field(default_factory=dict)  # checkpoint step -> its eval run dir
    probes: dict[str, Path] = field(default_factory=dict)  # "latent" / "tokens" -> result file

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def base(self) -> str | None:
        """The model it is compared with; None for a base and for a reference (shown, never compared)."""
        return self.ref.base if self.ref.role != "reference" else None

    @property
    def arm(self) -> str:
        return arm_of(self.ref)

    @property
    def method(self) -> str:
        return self.ref.method or ""

    @property
    def label(self) -> str:
        return self.ref.label


@dataclass
class ReportData:
    title: str
    root: Path  # where relative paths in the report start
    models: dict[str, StudyModel]  # in the study's order, bases first
    scores: list[dict[str, Any]]  # scores.json's rows
    ti: list[dict[str, Any]]  # ti.json's rows (TIResult.as_dict)
    comparisons: Comparisons  # comparisons.json
    manifest: dict[str, Any]  # the study's manifest, or {"runs": {model: run manifest}}
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # model -> log.jsonl rows
    training: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> train.json
    probes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # model -> probe -> result
    drift_law: dict[str, Any] | None = None  # drift_law.json, where the study measured its arms' drift
    notes: list[str] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.comparisons.settings

    @property
    def smoke(self) -> bool:
        """A smoke test, not a result: a study whose own manifest says its base is the quick lab base (what
        `rtransfer study --quick` trains), or that it ran as --quick. Read from the files, never the folder name."""
        config = self.manifest.get("config") or {}
        return config.get("base") == QUICK_BASE or config.get("quick") is True

    @property
    def tuned(self) -> list[StudyModel]:
        return [m for m in self.models.values() if m.base]

    def arms(self) -> dict[str, list[str]]:
        """Arm -> its models (one per seed), in the study's order; bases are no arm."""
        return {a: list(arm.models) for a, arm in self.comparisons.arms.items()}

    def method_of_arm(self, arm: str) -> str:
        return self.comparisons.arms[arm].method


def is_study(path: Path) -> bool:
    manifest = Path(path) / "manifest.json"
    return manifest.exists() and "study" in read_json(manifest, "manifest")


def load_study(root: str | Path) -> ReportData:
    root = Path(root)
    manifest = read_json(root / "manifest.json", "study manifest")
    if "study" not in manifest or not isinstance(manifest.get("models"), dict):
        raise DataError(f"{root}: not a study directory (its manifest.json has no 'study' and 'models')")
    models = _study_models(root, manifest["models"])
    scores = read_json(root / "scores.json", "study scores")
    ti = read_json(root / "ti.json", "study TI table")
    comparisons = Comparisons.from_dict(read_json(root / "comparisons.json", "study comparisons (its compare stage)"))
    index = comparisons.settings.index
    if any(r.get("index") != index for r in ti):
        raise DataError(
            f"{root}: ti.json and comparisons.json were written with other [ti] settings: run compare again"
        )
    data = ReportData(manifest.get("study") or root.name, root, models, scores, ti, comparisons, manifest)
    data.notes = list(comparisons.notes)
    if (root / "drift_law.json").exists():
        data.drift_law = read_json(root / "drift_law.json", "drift law (its compare stage)")
    for m in models.values():
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


def _study_models(root: Path, entries: dict[str, dict]) -> dict[str, StudyModel]:
    """The manifest's models (ModelRef fields and their files), bases first, the study's order kept."""
    models = {}
    for name, entry in entries.items():
        if "role" not in entry:
            raise DataError(
                f"{root}: its manifest lists models without a role (a study written by an older rtransfer): "
                "this report reads studies whose manifest holds ModelRefs; run the study again"
            )
        try:
            ref = model_from_json({"name": name, **entry})
        except (ValueError, TypeError, KeyError) as err:
            raise DataError(f"{root}/manifest.json: model {name!r}: {err}") from None
        models[name] = StudyModel(
            ref,
            run_dir=_path(root, entry.get("run_dir")),
            train_dir=_path(root, entry.get("train_dir")),
            steps={int(s): root / p for s, p in (entry.get("steps") or {}).items()},
            probes={kind: root / p for kind, p in (entry.get("probes") or {}).items() if p},
        )
    return dict(sorted(models.items(), key=lambda kv: kv[1].ref.role != "base"))


def load_runs(run_dirs: list[str | Path], base: str | None, steps: dict[int, Path] | None = None) -> ReportData:
    """A report's data from eval run directories alone, with `base` as in `rtransfer ti --base`; scores, the TI and
    the comparisons are computed here, as a study's compare stage computes them, with the default settings.
    `steps`: the run directories of the one tuned model's training steps (its TI over steps)."""

    rows, notes = load_inputs([str(p) for p in run_dirs], base=base)
    by_steps = _step_rows(steps, run_dirs, rows, base) if steps else None
    rows, aligned = align_documents(rows)  # the tables show the scores the TI compares
    models: dict[str, StudyModel] = {}
    manifests: dict[str, dict] = {}
    for p, row in zip(run_dirs, rows, strict=True):  # load_inputs keeps the order of its inputs
        manifests[row.model] = run = RunDir(p).manifest()
        role, arm = ("arm", row.model) if row.base else ("base", None)
        ref = ModelRef(row.model, str(run.get("model") or p), role, row.base, arm, row.method or None, run.get("seed"))
        models[row.model] = StudyModel(ref, run_dir=Path(p))
    models = dict(sorted(models.items(), key=lambda kv: kv[1].base is not None))
    rows = sorted(rows, key=lambda r: list(models).index(r.model))
    scores = []
    for r in rows:
        m = models[r.model]
        scores += score_rows(m.name, m.arm, m.method, m.ref.seed, r, RunDir(m.run_dir).scores())
    settings = Settings()
    ti = [r.as_dict() for r in ti_table(rows, settings)]
    arms = arms_of([m.ref for m in models.values()], policy_of)
    comparisons = compare(rows, ti, arms, settings, steps=by_steps)
    data = ReportData("eval runs", Path.cwd(), models, scores, ti, comparisons, {"runs": manifests})
    data.notes = notes + aligned
    return data


def _step_rows(steps: dict[int, Path], run_dirs: list, rows: list, base: str | None) -> dict[str, dict[int, Any]]:
    """The one tuned model of `rows` (read from `run_dirs`, in order) at each of its `steps`, each run directory
    read as `rtransfer ti` reads it beside the base's."""
    tuned = [r for r in rows if r.base]
    if len(tuned) != 1:
        raise DataError(f"training steps belong to one tuned model, and these runs hold {len(tuned)}")
    base_dir = next(p for p, r in zip(run_dirs, rows, strict=True) if not r.base)
    found, _ = load_inputs([str(base_dir), *map(str, steps.values())], base=base)
    return {tuned[0].model: dict(zip(steps, found[1:], strict=True))}


def monitor_runs(folder: Path) -> tuple[Path, dict[int, Path]]:
    """A monitor folder's base run directory and those of the steps its transfer.jsonl lists (monitor.py writes
    base-<key>/ and step-<N>/)."""
    bases = sorted(folder.glob("base-*"))
    lines = (folder / "transfer.jsonl").read_text().splitlines()
    steps = {step: folder / f"step-{step}" for step in (json.loads(line)["step"] for line in lines if line.strip())}
    if len(bases) != 1 or not steps:
        raise DataError(f"{folder}: a monitor folder holds one base-<key>/ and step-<N>/ run directories")
    return bases[0], dict(sorted(steps.items()))


def load_monitor(folder: str | Path) -> ReportData:
    """A monitor folder (TransferCallback, `rtransfer watch`): the model at its last step against the base, and
    every measured step as its TI over training steps."""
    base, steps = monitor_runs(Path(folder))
    return load_runs([base, steps[max(steps)]], str(base), steps)


def _path(root: Path, rel: str | None) -> Path | None:
    return root / rel if rel else None
