"""AIME 2025 (I and II, 30 problems, integer answers). Boxed answer graded by equivalence, average over 10
samples.

Local data is MathArena's layout: aime_2025_{I,II}/problems/<n>.tex and aime_2025_{I,II}/answers.csv (id,answer).
Documents are ordered I-1 … I-15, II-1 … II-15, with ids "2025-I-1" … "2025-II-15".
"""

import csv
from pathlib import Path
from typing import Any

from rtransfer.benchmarks._math import SAMPLED, MathTask
from rtransfer.benchmarks.base import Doc, MissingDataError, Settings
from rtransfer.benchmarks.loading import Rows, reading
from rtransfer.errors import DataError

EXAMS = ("I", "II")


class Aime25(MathTask):
    """Rows are {"doc_id", "data"}: local ids are made from the layout, the hub copy has its own (local and hub runs
    are not merged)."""

    name = "aime25"
    version = "1"
    settings = Settings(samples=10, **SAMPLED)
    hf_dataset = "math-ai/aime25"
    data_folder = "aime2025"

    def local_rows(self, folder: Path) -> Rows:
        return [row for exam in EXAMS for row in _exam_rows(folder / f"aime_2025_{exam}", exam)]

    def hub_rows(self) -> Rows:
        return [(where, {"doc_id": str(row["id"]), "data": row}) for where, row in super().hub_rows()]

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> Doc:
        return Doc(id=row["doc_id"], data=row["data"])


def _exam_rows(folder: Path, exam: str) -> list[tuple[str, dict[str, Any]]]:
    answers = _read_answers(folder / "answers.csv")
    rows = []
    for number, answer in sorted(answers.items()):
        tex = folder / "problems" / f"{number}.tex"
        with reading(tex, "UTF-8 text", f" (answers.csv lists problem {number})"):
            problem = tex.read_text(encoding="utf-8").strip()
        if not problem:
            raise DataError(f"{tex}: empty problem")
        data = {"problem": problem, "answer": answer, "exam": f"AIME 2025 {exam}", "number": number}
        rows.append((str(tex), {"doc_id": f"2025-{exam}-{number}", "data": data}))
    unlisted = sorted({p.name for p in (folder / "problems").glob("*.tex")} - {f"{n}.tex" for n in answers})
    if unlisted:
        raise DataError(f"{folder / 'answers.csv'}: no answer for {', '.join(unlisted)}")
    return rows


def _read_answers(path: Path) -> dict[int, str]:
    if not path.is_file():
        raise MissingDataError(f"{path}: file not found")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["id", "answer"]:
            raise DataError(f"{path}:1: expected the header id,answer")
        answers: dict[int, str] = {}
        for row in reader:
            line = reader.line_num
            try:
                number, answer = int(row["id"]), str(int(row["answer"]))  # AIME answers are integers 0-999
            except (TypeError, ValueError):
                raise DataError(f"{path}:{line}: expected an integer id and answer, got {row}") from None
            if number in answers:
                raise DataError(f"{path}:{line}: problem {number} listed twice")
            answers[number] = answer
    if not answers:
        raise DataError(f"{path}: no answers")
    return answers


TASK = Aime25()
