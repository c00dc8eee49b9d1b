"""MATH-500 (Lightman et al., 2023): 500 problems of the MATH test set. Boxed answer graded by equivalence,
average over 3 samples."""

from typing import Any

from rtransfer.benchmarks._math import SAMPLED, MathTask
from rtransfer.benchmarks.base import Doc, Settings


class Math500(MathTask):
    name = "math500"
    version = "1"
    settings = Settings(samples=3, **SAMPLED)
    hf_dataset = "HuggingFaceH4/MATH-500"
    data_folder = "math500"
    required = ("unique_id", "problem", "answer")

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> Doc:
        return Doc(id=str(row["unique_id"]), data=row)


TASK = Math500()
