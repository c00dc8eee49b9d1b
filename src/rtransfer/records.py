"""Per-sample records: the one thing that crosses from generation to grading.

One append-only JSONL file per (model run, benchmark); one line per (doc_id, sample). Crash safety comes from
three rules:
  * each record is written with a single os.write of one complete line, so a killed process leaves at most
    one torn line, at the end of the file;
  * opening a file for writing cuts such a torn tail off (that record was never completed) before appending;
  * a writer skips every (doc_id, sample) already on disk, so resuming never duplicates a sample.
A torn line anywhere but the end is not something a crash can make; it is reported as corruption, with its
line number, and never silently dropped.
"""

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rtransfer.errors import DataError

SCHEMA = 1
FSYNC_EVERY_S = 2.0  # os.write already survives a killed process; fsync bounds what a power cut can take.


@dataclass
class Record:
    doc_id: str
    sample: int
    prompt: Any  # the text or chat messages sent to the model
    response: str | None  # the model's output (None for log-likelihood tasks)
    extracted: Any = None  # the answer the grader read from the response
    grade: float | None = None  # in [0, 1]; None while ungraded
    weight: float = 1.0  # the document's weight in a ratio metric (IFEval: its instruction count)
    # What the grader compared the answer with (Task.gold), and for a log-likelihood task the continuations whose
    # log-probabilities are extra["logprobs"], in the same order. None in records graded before they existed:
    # a regrade fills them.
    gold: Any = None
    choices: list[str] | None = None
    grader_version: str | None = None
    seed: int | None = None
    grading: dict = field(default_factory=dict)  # the grader's details (Grade.extra); a re-grade replaces them
    extra: dict = field(default_factory=dict)  # the engine's details (tokens, finish reason, logprobs, ...)
    time: str = ""
    schema: int = SCHEMA

    @property
    def key(self) -> tuple[str, int]:
        return (self.doc_id, self.sample)

    @classmethod
    def from_dict(cls, data: dict) -> "Record":
        known = {f for f in cls.__dataclass_fields__}
        extra = {k: v for k, v in data.items() if k not in known}
        record = cls(**{k: v for k, v in data.items() if k in known})
        record.doc_id, record.sample = str(record.doc_id), int(record.sample)
        record.extra = {**record.extra, **extra}
        return record


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _parse_lines(path: Path, data: bytes) -> tuple[list[Record], int]:
    """Records in `data`, and the byte length of its complete part (a torn last line is not counted)."""
    complete = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:complete].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(Record.from_dict(json.loads(line)))
        except (ValueError, TypeError, AttributeError) as err:
            raise DataError(f"{path}:{number}: not a valid record ({err})") from None
    return records, complete


def read_records(path: str | Path) -> list[Record]:
    """All complete records of a file, first occurrence of each (doc_id, sample) kept, in file order."""
    path = Path(path)
    if not path.exists():
        return []
    records, _ = _parse_lines(path, path.read_bytes())
    return list(_unique(records).values())


def _unique(records: Iterable[Record]) -> dict[tuple[str, int], Record]:
    unique: dict[tuple[str, int], Record] = {}
    for r in records:
        unique.setdefault(r.key, r)
    return unique


class RecordWriter:
    """Append records to one file; one writer per file at a time (an exclusive lock says so clearly)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise DataError(f"{self.path} is being written by another process") from None
        with open(self.path, "rb") as f:
            data = f.read()
        records, complete = _parse_lines(self.path, data)
        if complete < len(data):  # a torn line left by a killed writer: that record never finished
            os.ftruncate(self._fd, complete)
        self.done: dict[tuple[str, int], Record] = _unique(records)
        self._last_sync = time.monotonic()

    def has(self, doc_id: str, sample: int) -> bool:
        return (str(doc_id), sample) in self.done

    def write(self, record: Record) -> bool:
        """Append one record; False (and nothing written) when its (doc_id, sample) is already stored."""
        record.doc_id = str(record.doc_id)
        if record.key in self.done:
            return False
        record.time = record.time or now()
        line = (json.dumps(asdict(record), ensure_ascii=False) + "\n").encode()
        written = os.write(self._fd, line)
        while written < len(line):  # regular files take it whole; loop in case a filesystem does not
            written += os.write(self._fd, line[written:])
        self.done[record.key] = record
        if time.monotonic() - self._last_sync > FSYNC_EVERY_S:
            os.fsync(self._fd)
            self._last_sync = time.monotonic()
        return True

    def write_all(self, records: Iterable[Record]) -> int:
        return sum(self.write(r) for r in records)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = -1

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def regrade(path: str | Path, grade: Callable[[Record], Record], map_fn: Callable = map) -> list[Record]:
    """Grade stored records again without generating: `grade(record)` returns the record with its grade, extracted
    answer, weight, gold, choices, grading details and grader version replaced (rtransfer.evaluate.grade_record);
    `map_fn` may be a pool's map.

    The file is rewritten atomically (temporary file, fsync, rename), under the writers' lock: a regrade killed
    half-way leaves the old file whole.
    """
    path = Path(path)
    with RecordWriter(path) as writer:
        records = list(map_fn(grade, list(writer.done.values())))
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return records


def doc_grades(records: Iterable[Record]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per document: its id, its grade averaged over samples (avg@k), and its weight. Ungraded samples are
    an error here: a score must never silently leave records out."""
    grades: dict[str, list[float]] = {}
    weights: dict[str, float] = {}
    for r in records:
        if r.grade is None:
            raise DataError(f"record ({r.doc_id}, sample {r.sample}) has no grade; grade the run first")
        grades.setdefault(r.doc_id, []).append(float(r.grade))
        weights[r.doc_id] = float(r.weight)
    ids = list(grades)
    values = np.array([np.mean(grades[d]) for d in ids], dtype=float)
    return ids, values, np.array([weights[d] for d in ids], dtype=float)


def iter_record_files(run_dir: str | Path) -> Iterator[tuple[str, Path]]:
    """(benchmark, path) of each records file in a run directory."""
    for path in sorted((Path(run_dir) / "records").glob("*.jsonl")):
        yield path.stem, path
