"""Loading a benchmark's documents, written once: a benchmark says how to read its rows and how a row becomes a Doc.

A `RowTask` supplies
  local_rows(folder)  its own files under `<data-dir>/<data_folder>`, as (where, row) pairs, `where` naming the
                      file and line (or record) for error messages; read them through `reading` or `jsonl_rows`;
  to_doc(row, where, seed)  one Doc (or several: a CoQA story is one per turn) from a row;
and, where the hub copy is not one split of one config (`hf_dataset`, `hf_split`, `hf_config`), `hub_rows()`.
`load` does the rest, the same for every benchmark: local folder or hub, a malformed row as one DataError line
naming where it is, no two documents with one id, and at least one document.
"""

import csv
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from rtransfer.benchmarks import hub
from rtransfer.benchmarks.base import Doc, MissingDataError, Task
from rtransfer.errors import DataError, first_line
from rtransfer.jsonl import read_objects

Row = dict[str, Any]
Rows = Iterable[tuple[str, Row]]  # (where, row): where = "file:line", "file: record 3", "dataset row 3"

# What a malformed row raises when a benchmark reads it without checking each field first.
ROW_ERRORS = (KeyError, TypeError, ValueError)


@contextmanager
def reading(path: Path, what: str, hint: str = "") -> Iterator[None]:
    """Errors of reading `path` as one DataError line: "file not found" (plus `hint`), or "not {what} (why)"."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError):
        raise MissingDataError(f"{path}: file not found{hint}") from None
    except (OSError, EOFError, csv.Error, *ROW_ERRORS) as err:  # bad gzip, bad JSON, bad UTF-8, missing keys
        raise DataError(f"{path}: not {what} ({type(err).__name__}: {first_line(err)})") from None


def jsonl_rows(path: Path, required: Iterable[str] = ()) -> list[tuple[str, Row]]:
    """The objects of a JSON Lines file as ("file:line", object); each has the `required` fields, and the file at
    least one object (rtransfer.jsonl says which line is wrong, and how)."""
    if not Path(path).is_file():
        raise MissingDataError(f"{path}: file not found")
    return [(f"{path}:{number}", row) for number, row in read_objects(path, tuple(required))]


class RowTask(Task):
    """A benchmark whose documents come from rows of its data, local or on the hub (see the module doc)."""

    hf_split: ClassVar[str] = "test"
    hf_config: ClassVar[str | None] = None
    id_label: ClassVar[str] = "id"  # how a duplicate's error names the id ("key", "question_id", ...)

    def load(self, data_dir: Path | None, seed: int = 0) -> list[Doc]:
        """All documents in the order of their rows. From `data_dir / data_folder` when given, else the hub."""
        if data_dir is None:
            source, rows = self.hf_dataset, self.hub_rows()
        else:
            folder = self.folder(data_dir)
            source, rows = str(folder), self.local_rows(folder)
        docs: list[Doc] = []
        seen: set[str] = set()
        for where, row in rows:
            try:
                made = self.to_doc(row, where, seed)
            except ROW_ERRORS as err:
                raise DataError(f"{where}: malformed ({type(err).__name__}: {first_line(err)})") from None
            for doc in [made] if isinstance(made, Doc) else made:
                if doc.id in seen:
                    raise DataError(self.duplicate(doc, where))
                seen.add(doc.id)
                docs.append(doc)
        if not docs:
            raise DataError(f"{source}: no {self.name} documents")
        return docs

    def local_rows(self, folder: Path) -> Rows:
        raise NotImplementedError

    def hub_rows(self) -> Rows:
        """The rows of `hf_split` (of `hf_config`) of `hf_dataset`; a failed download is one DataError line."""
        name = f"{self.hf_dataset}:{self.hf_config}" if self.hf_config else self.hf_dataset
        rows = hub.hub_rows(self.hf_dataset, self.hf_split, self.hf_config)
        return [(f"{name} row {number}", row) for number, row in enumerate(rows, start=1)]

    def to_doc(self, row: Row, where: str, seed: int) -> Doc | list[Doc]:
        """The document(s) of one row. Raise DataError naming `where` for a row that is wrong in a way the reader
        should explain; a KeyError, TypeError or ValueError becomes "{where}: malformed (...)"."""
        raise NotImplementedError

    def duplicate(self, doc: Doc, where: str) -> str:
        """The message for a second document with `doc.id`, found at `where`."""
        return f"{where}: duplicate {self.id_label} {doc.id!r}"


def local_data(task: Task, data_dir: Path) -> tuple[str, str]:
    """Whether `task`'s data is in `data_dir`, cheaply: ("found", where) when its files are there and the first
    record reads (eval reads them all), ("missing", why), ("unreadable", why), or ("generated", "") for a
    benchmark that has no data files (the lab's)."""
    if not isinstance(task, RowTask):
        return "generated", ""
    try:
        folder = task.folder(data_dir)
        if next(iter(task.local_rows(folder)), None) is None:
            return "unreadable", f"{folder}: no records"
    except MissingDataError as err:
        return "missing", str(err)
    except DataError as err:
        return "unreadable", str(err)
    except ROW_ERRORS as err:
        return "unreadable", f"{type(err).__name__}: {first_line(err)}"
    return "found", str(folder)


def load_all(
    tasks: Sequence[Task], data_dir: Path | None, seed: int = 0, skip_missing: bool = False
) -> tuple[dict[str, list[Doc]], list[str]]:
    """Every task's documents, by name, and the names of the tasks left out for want of data. A task whose data
    is not found (MissingDataError) is left out with `skip_missing`; without it, that is an error, one line naming
    every such task and the flag. Any other error (a malformed file, the hub) stops the load."""
    docs: dict[str, list[Doc]] = {}
    missing: dict[str, str] = {}
    for task in tasks:
        try:
            docs[task.name] = task.load(data_dir, seed)
        except MissingDataError as err:
            missing[task.name] = str(err)
    if not missing:
        return docs, []
    first, *others = missing
    also = f"; no {', '.join(others)} data either" if others else ""
    if not docs:
        raise MissingDataError(f"{missing[first]}{also}: nothing to run")
    if not skip_missing:
        hint = f"--skip-missing runs the other {len(docs)} benchmark{'s' if len(docs) > 1 else ''} without "
        raise MissingDataError(f"{missing[first]}{also}; {hint}{'them' if others else 'it'}")
    return docs, list(missing)
