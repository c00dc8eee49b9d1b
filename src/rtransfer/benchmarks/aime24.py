"""AIME 2024 (I and II, 30 problems, integer answers). Boxed answer graded by equivalence, average over 10
samples."""

from typing import Any

from rtransfer.benchmarks._math import SAMPLED, MathTask, last_boxed
from rtransfer.benchmarks.base import Doc, Settings
from rtransfer.errors import DataError


class Aime24(MathTask):
    name = "aime24"
    version = "1"
    settings = Settings(samples=10, **SAMPLED)
    hf_dataset = "math-ai/aime24"
    data_folder = "aime2024"
    required = ("id", "problem", "answer")

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> Doc:
        answer = row.get("answer")
        if answer in (None, ""):  # the hub copy has no answer column: the answer is the solution's last box
            answer = last_boxed(str(row.get("solution") or ""))
            if not answer:
                raise DataError(f"{where}: no answer for problem {row.get('id')!r}")
        return Doc(id=str(row["id"]), data={**row, "answer": str(answer)})


TASK = Aime24()
