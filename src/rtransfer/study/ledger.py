"""The study's manifest.json, written here only: what the study is, its models, and the record of every node of
its plan (study/plan.py).

A node's key is the hash of its spec and the keys of the nodes it reads. A node whose key is recorded as finished
is skipped. One recorded with another key is stale: its outputs are moved to DIR/stale/ (the comparison's and the
report's, derived in seconds, are replaced) and it runs again, so changing a recipe reruns that arm and what reads
it, nothing else. One recorded with the same key but not finished was killed: it runs again into its outputs, and
its own resume (training checkpoints, evaluation records) continues where it stopped.
"""

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtransfer.jobs import say
from rtransfer.records import now
from rtransfer.runs import write_json_atomic
from rtransfer.specs import Spec, StepEvalSpec


@dataclass(frozen=True)
class Node:
    """One unit of the study's work: a spec, and the kind `--only` selects it by."""

    name: str  # "train:grpo", "eval:base", "steps:grpo", "probes:grpo", "ti", "report"
    kind: str  # train, eval, probes, ti, report
    spec: Spec

    @property
    def key(self) -> str:
        return self.spec.key()

    @property
    def needs(self) -> list[str]:
        """The nodes whose outputs it reads (the spec names them, with their keys)."""
        return list(self.spec.after)

    @property
    def outputs(self) -> list[Path]:
        return [Path(p) for p in self.spec.outputs()]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "key": self.key, "needs": self.needs, "spec": self.spec.to_json()}


@dataclass
class Ledger:
    """The study's manifest.json: its config, its models and the record of every node. Only the Ledger writes it."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)  # the plan's, by name

    @classmethod
    def read(cls, path: Path) -> "Ledger":
        data = json.loads(path.read_text()) if path.exists() else {"stages": {}, "models": {}}
        return cls(path, data)

    @classmethod
    def open(cls, path: Path, header: dict[str, Any], nodes: list[Node]) -> "Ledger":
        """The manifest with this run's header; a node no longer in the plan is forgotten (its files stay)."""
        ledger = cls.read(path)
        ledger.data.setdefault("created", now())
        ledger.data.update(header)
        names = {n.name for n in nodes}
        ledger.data["stages"] = {k: v for k, v in ledger.data["stages"].items() if k in names}
        ledger.nodes = {n.name: n for n in nodes}
        ledger.save()
        return ledger

    def save(self) -> None:
        self._sync_steps()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.data)

    def _sync_steps(self) -> None:
        """Each model's evaluated checkpoints, as its finished checkpoint-evaluation node recorded them (paths
        relative to the study directory): derived from the node records, so they cannot disagree."""
        for name, node in self.nodes.items():
            if isinstance(node.spec, StepEvalSpec) and node.spec.template.model.name in self.data.get("models", {}):
                entry = self.data["stages"].get(name) or {}
                done = entry.get("finished") and entry.get("key") == node.key
                steps = (entry.get("info") or {}).get("steps", {}) if done else {}
                self.data["models"][node.spec.template.model.name]["steps"] = steps

    def relative(self, path: str | Path) -> str:
        return str(Path(path).resolve().relative_to(self.path.parent.resolve()))

    def status(self, node: Node) -> str:
        """done, resume (same key, not finished), stale (another key) or new."""
        entry = self.data["stages"].get(node.name)
        if entry is None:
            return "new"
        if entry["key"] != node.key:
            return "stale"
        return "done" if entry.get("finished") else "resume"

    def begin(self, node: Node, number: str = "", note: str = "") -> float:
        """Record `node` as started (a stale one's outputs moved aside first); returns the seconds of its earlier
        attempts, which a resumed node adds to."""
        status = self.status(node)
        entry = self.data["stages"].get(node.name, {})
        if status == "stale" and node.kind in ("ti", "report"):  # derived from files in seconds: replaced
            for out in node.outputs:
                shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
        elif status == "stale":
            self._move_aside(node, entry["key"])
        say(f"{number} {node.name}: " + ("resuming" if status == "resume" else "running") + f" …{note}")
        seconds = entry.get("seconds", 0.0) if status == "resume" else 0.0
        self.data["stages"][node.name] = {"key": node.key, "seconds": seconds, "finished": None}
        self.save()
        return seconds

    def _move_aside(self, node: Node, old_key: str) -> None:
        """A stale node's outputs go to DIR/stale/<node>-<old key>/, never deleted: a changed key may come from a
        changed rtransfer as well as from a changed config, and a training directory can hold days of GPU work."""
        aside = self.path.parent / "stale" / f"{node.name.replace(':', '-')}-{old_key}"
        for out in node.outputs:
            if out.exists():
                aside.mkdir(parents=True, exist_ok=True)
                shutil.move(out, aside / out.name)

    def finish(self, node: Node, before: float, elapsed: float, info: dict[str, Any], number: str = "") -> None:
        if isinstance(node.spec, StepEvalSpec):  # the study's files name each other relative to the study
            info = {**info, "steps": {step: self.relative(p) for step, p in info.get("steps", {}).items()}}
        self.data["stages"][node.name] = {
            "key": node.key,
            "seconds": round(before + elapsed, 1),  # all attempts together
            "finished": now(),
            **({"info": info} if info else {}),
        }
        self.save()
        say(f"{number} {node.name}: done in {elapsed:.0f} s")
