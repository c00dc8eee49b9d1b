"""A run directory: everything one model's evaluation produced, readable without the code that made it.

    RUN_DIR/manifest.json          who, with what settings, which versions, when
    RUN_DIR/records/<bench>.jsonl  per-sample records (rtransfer.records)
    RUN_DIR/scores.json            per-benchmark scores computed from the records

Resuming a run with other settings would mix two experiments in one file, so `RunDir.start` refuses when the
settings that define the run (model, revision, weights, chat template, sampling, seed, benchmark and grader
versions) differ from the stored manifest.
"""

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from rtransfer import __version__
from rtransfer.errors import DataError, RunMismatchError
from rtransfer.records import Record, RecordWriter, now, read_records

MANIFEST, SCORES, RECORDS = "manifest.json", "scores.json", "records"
IDENTITY = ("model", "revision", "model_fingerprint", "chat_template_hash", "sampling", "seed")
FULL_HASH_LIMIT = 16 * 2**20  # files above this are fingerprinted by name and size, not read whole
# What `rtransfer train` writes beside a model's files (rtransfer.train.outputs): records of how it was trained.
TRAINING_FILES = frozenset({"train.json", "log.jsonl", "traces.jsonl"})


def text_hash(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest()[:16] if text is not None else None


def file_hash(path: Path) -> str:
    """The sha256 of a file's bytes (short): what names local training data in a key, whatever its path."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def fingerprint(path: str | Path) -> str:
    """A content fingerprint of a local model directory (or file).

    Small files (configs, tokenizer, a tiny model's weights) are hashed in full; large weight shards by name
    and size only, so that fingerprinting a 30 GB checkpoint stays instant. Only the directory's own files count:
    a model directory is flat, and what lies in subfolders (a training directory's checkpoints/ and evals/) does
    not define the model; nor do the training records beside the weights (TRAINING_FILES).
    """
    root = Path(path)
    if root.is_file():
        files = [root]
    else:
        files = sorted(p for p in root.iterdir() if p.is_file() and p.name not in TRAINING_FILES)
    digest = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        digest.update(f"{f.relative_to(root) if f != root else f.name}\0{size}\0".encode())
        if size <= FULL_HASH_LIMIT:
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def new_manifest(
    model: str,
    *,
    name: str | None = None,
    base: str | None = None,
    method: str | None = None,
    revision: str | None = None,
    chat_template: str | None = None,
    sampling: dict | None = None,
    seed: int | None = None,
    engine: str | None = None,
    benchmarks: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """The manifest of a run. `model` is a hub id or a local path (local paths get a content fingerprint);
    `benchmarks` maps each benchmark to its {"version", "grader_version"}; `method` names how the model was made
    (sft, grpo, ...), for the report and `rtransfer ti`."""
    local = Path(model).expanduser()
    return {
        "name": name or (local.name if local.exists() else model),
        "model": model,
        "base": base,
        "method": method,
        "revision": revision,
        "model_fingerprint": fingerprint(local) if local.exists() else None,
        "chat_template_hash": text_hash(chat_template),
        "sampling": sampling or {},
        "seed": seed,
        "engine": engine,
        "benchmarks": benchmarks or {},
        "rtransfer_version": __version__,
        "python": platform.python_version(),
    }


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    # A temp name per process: two processes writing one file (ranks of a launched run) never rename each
    # other's temp away; the last os.replace wins whole.
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no {what} here") from None
    except ValueError as err:
        raise DataError(f"{path}: {what} is not valid JSON ({err})") from None


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def records_path(self, benchmark: str) -> Path:
        return self.path / RECORDS / f"{benchmark}.jsonl"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def manifest(self) -> dict:
        return read_json(self.manifest_path, "run manifest")

    def start(self, manifest: dict) -> dict:
        """Create the run, or resume it when the stored manifest has the same settings."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.exists():
            stored = self.manifest()
            for key in IDENTITY:
                if stored.get(key) != manifest.get(key):
                    raise RunMismatchError(
                        f"{self.path} holds a run with {key}={stored.get(key)!r}, not {manifest.get(key)!r}; "
                        "use another --out directory"
                    )
            for bench, versions in manifest.get("benchmarks", {}).items():
                old = stored.get("benchmarks", {}).get(bench)
                if old is not None and old != versions:
                    raise RunMismatchError(
                        f"{self.path}: {bench} was run with {old}, not {versions}; use another --out directory"
                    )
            benchmarks = {**stored.get("benchmarks", {}), **manifest.get("benchmarks", {})}
            manifest = {**stored, **manifest, "benchmarks": benchmarks}
            manifest["created"] = stored.get("created")
        else:
            manifest = {**manifest, "created": now()}
        manifest["updated"] = now()
        write_json_atomic(self.manifest_path, manifest)
        return manifest

    def writer(self, benchmark: str) -> RecordWriter:
        return RecordWriter(self.records_path(benchmark))

    def records(self, benchmark: str) -> list[Record]:
        return read_records(self.records_path(benchmark))

    def benchmarks(self) -> list[str]:
        return sorted(p.stem for p in (self.path / RECORDS).glob("*.jsonl"))

    def scores(self) -> dict:
        path = self.path / SCORES
        return read_json(path, "scores file") if path.exists() else {}

    def write_scores(self, scores: dict) -> None:
        write_json_atomic(self.path / SCORES, scores)


@functools.cache
def source_revision() -> dict[str, Any]:
    """rtransfer's git commit and whether its tracked files differ from it (as lm-eval records its own), when it
    runs from a git checkout; None for an installed copy. A forgotten version bump shows here."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return {"rtransfer_commit": None, "rtransfer_dirty": None}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"rtransfer_commit": commit, "rtransfer_dirty": None if status is None else bool(status)}


def versions() -> dict[str, Any]:
    """The versions of rtransfer (with its git commit) and the libraries its numbers depend on, for result files."""
    out: dict[str, Any] = {"rtransfer": __version__, **source_revision()}
    for name in ("torch", "transformers", "trl", "accelerate", "math-verify"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
