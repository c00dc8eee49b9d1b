"""GPQA-Diamond: 198 graduate-level science questions, 4-way multiple choice answered with chain of thought.

Prompt and settings are the authors' (ReasoningTransfer/Transferability-of-LLM-Reasoning, commit a4f5ea8,
eval/evalchemy/eval/chat_benchmarks/GPQADiamond/eval_instruct.py): one user turn, options on one line as
"A) ..., B) ...", the letter in \\boxed{}, 3 samples averaged, 32768 new tokens. Temperature and top-p are the
paper's (0.6 / 0.95; that file samples at 0.7).

One deliberate difference: evalchemy seeds `random.Random(42)` afresh for every question, so every question gets
the same permutation and the correct answer is always D. We shuffle each question by (seed, Record ID) instead.
`GpqaDiamondPaperOrder` reproduces the authors' fixed order, for comparison with their numbers.

The questions are not stored here (their authors ask that they stay off the web): the data comes from the official
CSV (idavidrein/gpqa `dataset.zip` → gpqa_diamond.csv) under <data-dir>/gpqa_diamond/, or from the gated hub set.
"""

import csv
import hashlib
import random
from pathlib import Path
from typing import Any, ClassVar

from rtransfer.benchmarks.base import Doc, Grade, Messages, Settings
from rtransfer.benchmarks.loading import Rows, RowTask, reading
from rtransfer.errors import DataError
from rtransfer.grading.choice import LETTERS, grade_choice

PROMPT = (
    "Return your final response within \\boxed{{}} and only include the letter choice (A, B, C, or D) as your final "
    "response.\nProblem: {problem}\nOptions: {options}\nAnswer:"
)
ANSWER_COLUMNS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
COLUMNS = ("Question", *ANSWER_COLUMNS, "Record ID")


class GpqaDiamond(RowTask):
    name = "gpqa_diamond"
    version = "1"
    grader_version = "1"
    kind = "generate"
    settings = Settings(samples=3, temperature=0.6, top_p=0.95, max_new_tokens=32768)
    hf_dataset = "Idavidrein/gpqa"  # gated: accept the terms on the hub first
    hf_split = "train"
    hf_config = "gpqa_diamond"
    data_folder = "gpqa_diamond"
    file_name: ClassVar[str] = "gpqa_diamond.csv"

    def order(self, doc_id: str, seed: int) -> list[int]:
        """Positions A–D as indices into ANSWER_COLUMNS (0 = the correct answer); a pure function of (seed, id)."""
        digest = hashlib.sha256(f"{seed}/{doc_id}".encode()).digest()
        order = list(range(4))
        random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
        return order

    def local_rows(self, folder: Path) -> Rows:
        path = folder / self.file_name
        gated = " (GPQA is gated: put the official gpqa_diamond.csv here)"
        with reading(path, "a CSV file", gated), open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: not the official GPQA CSV (missing columns: {', '.join(missing)})")
            rows = list(reader)
        return [(f"{path}: record {number}", row) for number, row in enumerate(rows, start=1)]

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> Doc:
        empty = [c for c in COLUMNS if not str(row.get(c) or "").strip()]
        if empty:
            raise DataError(f"{where}: empty {', '.join(empty)}")
        doc_id = str(row["Record ID"]).strip()
        order = self.order(doc_id, seed)
        # Texts are kept as in the CSV (no stripping), as evalchemy shows them.
        options = [row[ANSWER_COLUMNS[i]] for i in order]
        data = {
            "question": row["Question"],
            "options": options,
            "order": order,
            "answer": LETTERS[order.index(0)],
            "subdomain": row.get("Subdomain"),
            "domain": row.get("High-level domain"),
        }
        return Doc(id=doc_id, data=data)

    def duplicate(self, doc: Doc, where: str) -> str:
        return f"{where}: duplicate Record ID {doc.id}"

    def prompt(self, doc: Doc) -> Messages:
        options = ", ".join(f"{letter}) {text}" for letter, text in zip(LETTERS, doc.data["options"], strict=True))
        return [{"role": "user", "content": PROMPT.format(problem=doc.data["question"], options=options)}]

    def grade(self, doc: Doc, response: str) -> Grade:
        return grade_choice(response, doc.data["answer"])

    def gold(self, doc: Doc) -> str:
        return doc.data["answer"]  # the letter of the correct option in this document's order


class GpqaDiamondPaperOrder(GpqaDiamond):
    """The authors' option order: `random.Random(42).shuffle` per question, the same for all, correct answer at D."""

    version = "1-paper-order"

    def order(self, doc_id: str, seed: int) -> list[int]:
        order = list(range(4))
        random.Random(42).shuffle(order)
        return order


TASK = GpqaDiamond()
VARIANTS = {"paper-order": GpqaDiamondPaperOrder()}
