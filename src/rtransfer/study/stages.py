"""Content-keyed, resumable stages, recorded in the study's manifest.json.

A stage's key is a hash of everything it depends on: its own settings and the keys of the stages it reads. A
stage whose key is recorded as finished is skipped. One recorded with another key is stale: its outputs are
removed and it runs again, so changing a recipe reruns that arm and what reads it, nothing else. One recorded
with the same key but not finished was killed: it runs again into its outputs, and the stage's own resume
(training checkpoints, evaluation records) continues where it stopped.
"""

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtransfer.records import now
from rtransfer.runs import write_json_atomic


def key_of(inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Stage:
    name: str  # "train:grpo", "eval:base", ...
    kind: str  # train, eval, probes, ti, report: what --only selects
    inputs: dict[str, Any]  # what the stage depends on, upstream stage keys included
    outputs: list[Path]  # removed when the stage is stale
    run: Callable[[], dict[str, Any] | None]  # does the work; what it returns is recorded with the stage
    needs: list[str] = field(default_factory=list)  # the stages whose outputs it reads

    @property
    def key(self) -> str:
        return key_of(self.inputs)


@dataclass
class Ledger:
    """The study's manifest.json: its config and the record of every stage."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path, header: dict[str, Any]) -> "Ledger":
        data = json.loads(path.read_text()) if path.exists() else {"created": now(), "stages": {}, "models": {}}
        data.update(header)
        ledger = cls(path, data)
        ledger.save()
        return ledger

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.data)

    def status(self, stage: Stage) -> str:
        """done, resume (same key, not finished), stale (another key) or new."""
        entry = self.data["stages"].get(stage.name)
        if entry is None:
            return "new"
        if entry["key"] != stage.key:
            return "stale"
        return "done" if entry.get("finished") else "resume"

    def run(self, stage: Stage, number: str = "") -> dict[str, Any]:
        if self.status(stage) == "done":
            say(f"{number} {stage.name}: done earlier, reused")
            return self.data["stages"][stage.name].get("info") or {}
        before = self.begin(stage, number)
        started = time.time()
        info = stage.run() or {}
        self.finish(stage, before, time.time() - started, info, number)
        return info

    def begin(self, stage: Stage, number: str = "", note: str = "") -> float:
        """Record `stage` as started (a stale one's outputs removed first); returns the seconds of its earlier
        attempts, which a resumed stage adds to."""
        status = self.status(stage)
        entry = self.data["stages"].get(stage.name, {})
        if status == "stale":
            for out in stage.outputs:
                shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
        say(f"{number} {stage.name}: " + ("resuming" if status == "resume" else "running") + f" …{note}")
        seconds = entry.get("seconds", 0.0) if status == "resume" else 0.0
        self.data["stages"][stage.name] = {"key": stage.key, "seconds": seconds, "finished": None}
        self.save()
        return seconds

    def finish(self, stage: Stage, before: float, elapsed: float, info: dict[str, Any], number: str = "") -> None:
        self.data["stages"][stage.name] = {
            "key": stage.key,
            "seconds": round(before + elapsed, 1),  # all attempts together
            "finished": now(),
            **({"info": info} if info else {}),
        }
        self.save()
        say(f"{number} {stage.name}: done in {elapsed:.0f} s")


def say(text: str) -> None:
    print(f"study: {text.strip()}", file=sys.stderr, flush=True)
