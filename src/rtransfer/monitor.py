"""Transfer monitoring while a model trains: each point (the live model at a step, or a checkpoint folder) scored on
a suite and compared with its base, the group changes and the TI with their CIs exactly as `rtransfer ti` computes
them on the run directories written here (`load_inputs` then `transferability`, the same calls).

The monitor's folder:
  base-<key>/      the base's evaluation, once per base content (or hub id), suite, limit, data folder and chat
                   thinking: a second run, or a restarted one, reuses it
  step-<N>/        each point's run directory, named `<name>@step-<N>` (resumable: an interrupted evaluation
                   keeps its records)
  transfer.jsonl   one line per point: step, the metrics, the forgetting alerts raised there
  transfer.png     the group changes and TIs against the step, with their CIs (the study report's figure)

Used by the TRL callback (integrations/trl.py) and by `rtransfer watch` (checkpoint folders of any trainer).
Hand-written: no library scores a model on benchmark groups against its base during training (TRL has no benchmark
callback; lm-eval and lighteval evaluate after the fact).
"""

import functools
import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtransfer.benchmarks.names import GROUPS
from rtransfer.benchmarks.registry import get_task, resolve_suite
from rtransfer.comparisons import QUANTITIES, Estimate
from rtransfer.engines.factory import EngineSpec, make_engine
from rtransfer.evaluate import EvalPlan, evaluate
from rtransfer.report.plots import step_curves
from rtransfer.runs import RunDir, fingerprint, write_text_atomic
from rtransfer.sources import load_inputs
from rtransfer.transfer import transferability

TRANSFER_GROUPS = ("other", "non")  # what training on math may cost; math is what it aims at
PREFIX = "transfer/"


@dataclass
class Point:
    """One measured step: the metrics as logged (`transfer/...`, finite values only), the TI table's row and the
    forgetting alerts first raised at it."""

    step: int
    metrics: dict[str, float]
    row: dict[str, Any]
    alerts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "metrics": self.metrics, "alerts": self.alerts, "ti": self.row}


@dataclass
class Monitor:
    """A model's transfer against `base` on `suite` (a suite or comma-separated benchmarks; `limit`: the first N
    documents of each), in `out`. `threshold` (points): a transfer group whose change has its whole CI below it
    raises a forgetting alert, once per group."""

    base: str
    out: Path
    suite: str = "lab"
    limit: int | None = None
    data_dir: Path | None = None
    thinking: bool | None = None
    name: str = "model"
    method: str | None = None  # what made the model (its run directories' manifests say so)
    batch_size: int = 64
    bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0
    threshold: float = 0.0
    _plan: Any = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.out = Path(self.out)
        self.limit = self.limit or None

    # --- what is measured -----------------------------------------------------------------------------------
    def plan(self):
        """The suite's tasks with their documents loaded (a bad suite or a missing file fails here, before any
        model is evaluated)."""
        if self._plan is None:
            tasks = [get_task(n) for n in resolve_suite(self.suite)]
            self._plan = EvalPlan(tasks, data_dir=self.data_dir, limit=self.limit).load()
        return self._plan

    @functools.cached_property
    def base_dir(self) -> Path:
        """base-<key>: the key from the base's content, computed once (a fingerprint reads its small files)."""
        local = Path(self.base).expanduser()
        identity = fingerprint(local) if local.exists() else self.base
        what = {"base": identity, "suite": self.suite, "limit": self.limit, "thinking": self.thinking}
        what["data_dir"] = str(self.data_dir) if self.data_dir else None
        key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]
        return self.out / f"base-{key}"

    def step_dir(self, step: int) -> Path:
        return self.out / f"step-{step}"

    def scored(self, run_dir: Path) -> bool:
        """Whether `run_dir` holds scores for every benchmark of the suite (then nothing needs a model)."""
        scores = RunDir(run_dir).scores().get("benchmarks", {}) if (run_dir / "scores.json").exists() else {}
        return all(t.name in scores for t in self.plan().tasks)

    # --- evaluating -----------------------------------------------------------------------------------------
    def evaluate_base(self) -> Path:
        """The base's run directory, evaluated now unless an earlier run did."""
        out = self.base_dir
        if not self.scored(out):
            engine = make_engine(EngineSpec(self.base, batch_size=self.batch_size, thinking=self.thinking))
            evaluate(engine, self.plan(), RunDir(out), name="base")
        return out

    def evaluate_engine(self, step: int, engine) -> Path:
        """`engine` (over a live model, or a checkpoint's) on the suite into step-<N>, named <name>@step-<N>."""
        out = self.step_dir(step)
        if not self.scored(out):
            name = checkpoint_name(self.name, step)
            evaluate(engine, self.plan(), RunDir(out), name=name, base="base", method=self.method)
        return out

    def evaluate_folder(self, step: int, folder: Path) -> Path:
        """A saved model folder (a checkpoint) on the suite into step-<N>."""
        if self.scored(self.step_dir(step)):
            return self.step_dir(step)
        engine = make_engine(EngineSpec(str(folder), batch_size=self.batch_size, thinking=self.thinking))
        return self.evaluate_engine(step, engine)

    # --- comparing ------------------------------------------------------------------------------------------
    def compare(self, step: int) -> Point:
        """The point of `step` against the base, as `rtransfer ti BASE STEP --base BASE` computes it; appended to
        transfer.jsonl with the alerts it raises first."""
        base = self.base_dir
        rows, _ = load_inputs([str(base), str(self.step_dir(step))], base=str(base))
        (result,) = transferability(rows, bootstrap=self.bootstrap, confidence=self.confidence, seed=self.seed)
        row = result.as_dict()
        earlier = self.points()
        raised = {a.split(":")[0] for p in earlier.values() if p.step != step for a in p.alerts}
        point = Point(step, metrics_of(row), row, self.alerts(step, row, raised))
        earlier[step] = point
        lines = [json.dumps(p.as_dict(), ensure_ascii=False) for _, p in sorted(earlier.items())]
        write_text_atomic(self.out / "transfer.jsonl", "".join(line + "\n" for line in lines))
        curves = {self.name: {p.step: estimates(p.metrics) for p in earlier.values()}}
        (self.out / "transfer.png").write_bytes(step_curves(curves, "% of the math domain index"))
        return point

    def alerts(self, step: int, row: dict[str, Any], raised: set[str]) -> list[str]:
        """A transfer group whose change lies wholly below the threshold, with its CI, the first time it does."""
        out = []
        for g in TRANSFER_GROUPS:
            change, ci = (row.get("change") or {}).get(g), (row.get("change_ci") or {}).get(g)
            if g in raised or change is None or not ci or ci[1] is None or not ci[1] < self.threshold:
                continue
            out.append(
                f"{g}: step {step}: {GROUP_WORDS[g]} changed by {change:+.1f} points [{ci[0]:.1f}, {ci[1]:.1f}], "
                f"its whole CI below {self.threshold:g}"
            )
        return out

    def points(self) -> dict[int, Point]:
        path = self.out / "transfer.jsonl"
        if not path.exists():
            return {}
        found = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
        return {p["step"]: Point(p["step"], p["metrics"], p["ti"], p["alerts"]) for p in found}


GROUP_WORDS = {"other": "other reasoning", "non": "non-reasoning"}


def metrics_of(row: dict[str, Any]) -> dict[str, float]:
    """A TI table row as the metrics a trainer logs: transfer/Δ<group> and transfer/TI_<group>, each with its CI
    bounds (_low, _high). A value the row leaves undefined is left out (loggers take numbers only)."""
    values: dict[str, Any] = {}
    for g in GROUPS:
        values[f"Δ{g}"] = (row.get("change") or {}).get(g)
        values[f"Δ{g}_low"], values[f"Δ{g}_high"] = (row.get("change_ci") or {}).get(g) or (None, None)
    for g in TRANSFER_GROUPS:
        values[f"TI_{g}"] = row.get(f"TI_{g}")
        values[f"TI_{g}_low"], values[f"TI_{g}_high"] = row.get(f"TI_{g}_ci") or (None, None)
    return {PREFIX + k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}


def estimates(metrics: dict[str, float]) -> dict[str, Estimate]:
    """The logged metrics as the report's estimates (NaN and no CI where a value is undefined)."""
    out = {}
    for q in QUANTITIES:
        low, high = metrics.get(f"{PREFIX}{q}_low"), metrics.get(f"{PREFIX}{q}_high")
        ci = (low, high) if low is not None and high is not None else None
        out[q] = Estimate(metrics.get(PREFIX + q, math.nan), ci)
    return out


def point_line(point: Point) -> str:
    """One line per measured point: the group changes with their CIs, the TIs."""
    m = point.metrics

    def change(g: str) -> str:
        value = m.get(f"{PREFIX}Δ{g}")
        if value is None:
            return f"Δ{g} —"
        low, high = m.get(f"{PREFIX}Δ{g}_low"), m.get(f"{PREFIX}Δ{g}_high")
        ci = f" [{low:.1f}, {high:.1f}]" if low is not None and high is not None else ""
        return f"Δ{g} {value:+.1f}{ci}"

    tis = ", ".join(
        f"TI_{g} {m[f'{PREFIX}TI_{g}']:.2f}" if f"{PREFIX}TI_{g}" in m else f"TI_{g} —" for g in TRANSFER_GROUPS
    )
    return f"step {point.step}: " + ", ".join(change(g) for g in GROUPS) + f"; {tis}"


def checkpoint_name(model: str, step: int) -> str:
    """The model name of a checkpoint's evaluation: `<training dir or arm>@step-<N>`, so that the checkpoints of
    several runs can be compared in one `rtransfer ti` call (the final model is named `<training dir or arm>`)."""
    return f"{model}@step-{step}"


def say(text: str) -> None:
    """A line of the monitor's (the callback's, the watcher's) on stderr, beside the trainer's own output."""
    print(f"rtransfer: {text}", file=sys.stderr, flush=True)
