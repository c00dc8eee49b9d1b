"""One entry point per kind of work: `run(spec)` runs a spec (rtransfer.specs) and is the only writer of its
outputs. The study runs every node through it: in its own process, in a spawned child, or under a launcher as
`python -m rtransfer.jobs SPEC.json` (accelerate launch, torchrun): the same spec, never re-planned.
"""

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from rtransfer.runs import write_json_atomic
from rtransfer.specs import Spec, from_json

# kind -> the module whose run(spec) does it; imported when a spec of that kind runs (a training child need not
# import the report, nor `rtransfer ti` torch).
RUNNERS = {
    "teacher": "rtransfer.jobs.teacher",
    "train": "rtransfer.jobs.train",
    "eval": "rtransfer.jobs.evaluate",
    "steps": "rtransfer.jobs.steps",
    "probes": "rtransfer.jobs.probe",
    "compare": "rtransfer.jobs.compare",
    "report": "rtransfer.jobs.report",
}


def run(spec: Spec) -> dict[str, Any]:
    """Do the work `spec` describes; returns what the study records with it."""
    return importlib.import_module(RUNNERS[spec.kind]).run(spec) or {}


def write(spec: Spec, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, spec.to_json())
    return path


def read(path: Path) -> Spec:
    return from_json(json.loads(Path(path).read_text()))


def say(text: str) -> None:
    """A progress line of the study (stderr: stdout carries the results)."""
    print(f"study: {text.strip()}", file=sys.stderr, flush=True)
