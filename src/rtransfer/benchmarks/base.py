"""What a benchmark is: load its documents, build prompts, grade answers, aggregate. One small file each.

A benchmark module `rtransfer/benchmarks/<name>.py` defines `TASK`, an instance of a Task subclass. Engines know
nothing about benchmarks and graders know nothing about engines: a Task turns documents into prompts (chat
messages) and grades text or log-likelihoods; the runner (rtransfer.evaluate) moves data between them.
Benchmarks that read data subclass rtransfer.benchmarks.loading.RowTask, which implements `load` once for all.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from rtransfer.benchmarks.names import lookup
from rtransfer.errors import DataError
from rtransfer.grading.grade import Grade
from rtransfer.records import Record, doc_grades


class MissingDataError(DataError):
    """A benchmark's data is not where it was looked for (not: found but malformed). `eval --skip-missing` skips
    such a benchmark and runs the others."""


Messages = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": "..."}]


@dataclass(frozen=True)
class Doc:
    id: str  # the dataset's own id where it has one (MATH-500 unique_id, OlympiadBench id, ...)
    data: dict[str, Any]  # the record as loaded (plus derived fields, e.g. shuffled choices)


@dataclass(frozen=True)
class Settings:
    """The paper's generation settings for a benchmark; the CLI may override them."""

    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 32768
    stop: tuple[str, ...] = ()


class _DeclaredGroup:
    """`Task.group`, on the class or an instance: the group benchmarks/names.py declares for the task's name, so
    that a benchmark's group is written once. A task outside names.py (a test's toy, the training teacher's
    queries) sets its own `group`, which hides this one."""

    def __get__(self, task: "Task | None", owner: type["Task"]) -> str:
        bench = lookup(owner.name)
        if bench is None:
            raise AttributeError(f"{owner.__name__}: {owner.name!r} is not in benchmarks/names.py; set its group")
        return bench.group


class Task:
    name: ClassVar[str]
    group = _DeclaredGroup()  # one of names.GROUPS
    version: ClassVar[str] = "1"  # bump when the prompt or data handling changes
    grader_version: ClassVar[str] = "1"  # bump when grading changes
    kind: ClassVar[Literal["generate", "loglik"]] = "generate"
    settings: ClassVar[Settings] = Settings()
    hf_dataset: ClassVar[str] = ""  # where the data lives on the hub, for users with a connection
    data_folder: ClassVar[str] = ""  # the folder under --data-dir (layout of shared/benchmarks)

    # --- data -------------------------------------------------------------------------------------------
    def load(self, data_dir: Path | None, seed: int = 0) -> list[Doc]:
        """All test documents, in a fixed order. From `data_dir / data_folder` when given, else the hub.
        Missing or malformed files raise DataError naming the file (and line)."""
        raise NotImplementedError

    def folder(self, data_dir: Path) -> Path:
        path = Path(data_dir) / self.data_folder
        if not path.exists():
            raise MissingDataError(f"{path}: no {self.name} data here (expected the layout of shared/benchmarks)")
        return path

    def limit(self, docs: list[Doc], n: int) -> list[Doc]:
        """What `eval --limit N` scores: the first N documents. A benchmark made of parts overrides it, so that a
        limited run still holds every part (HaluEval: N per task; MC-TACO: all rows of the first N questions)."""
        return docs[:n]

    # --- generation tasks ------------------------------------------------------------------------------
    def prompt(self, doc: Doc) -> Messages:
        raise NotImplementedError

    def grade(self, doc: Doc, response: str) -> Grade:
        raise NotImplementedError

    # --- log-likelihood tasks --------------------------------------------------------------------------
    def choices(self, doc: Doc) -> tuple[Messages, list[str]]:
        """The context (as messages) and the continuations whose log-likelihoods decide the answer."""
        raise NotImplementedError

    def grade_choices(self, doc: Doc, logprobs: Sequence[float]) -> Grade:
        raise NotImplementedError

    # --- the gold answer -------------------------------------------------------------------------------
    def gold(self, doc: Doc) -> Any:
        """What `grade` (or `grade_choices`) compares the answer with, as a JSON value, stored in every record
        (`Record.gold`) so that a reader sees it beside the answer: a math answer, a letter, CoQA's references,
        IFEval's instructions, the index of the right continuation, ... None: the task does not say (every
        registered benchmark does; tests check it)."""
        return None

    # --- aggregation -----------------------------------------------------------------------------------
    def aggregate(self, docs: Sequence[Doc], records: Sequence[Record]) -> dict[str, Any]:
        """Metrics of a finished run; `score` (0–100) is the primary one, the one the TI uses.

        `score` must be the weighted avg@k of the records' grades (each document's grade averaged over its
        samples, then weighted by `Record.weight`): that is what `rtransfer ti` recomputes and resamples from
        the records. Overrides add further metrics (MC-TACO's per-question EM and F1, say)."""
        ids, values, weights = doc_grades(records)
        return {"score": float(100.0 * (values * weights).sum() / weights.sum()) if ids else 0.0, "n": len(ids)}
