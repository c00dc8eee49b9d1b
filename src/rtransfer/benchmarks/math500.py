"""MATH-500 (Lightman et al., 2023): 500 problems of the MATH test set. Boxed answer graded by equivalence,
average over 3 samples (BRIEF §2)."""

from pathlib import Path

from rtransfer.benchmarks._math import SAMPLED, MathTask, read_jsonl, unique_docs
from rtransfer.benchmarks.base import Doc, Settings
from rtransfer.benchmarks.hub import hub_rows


class Math500(MathTask):
    name = "math500"
    version = "1"
    settings = Settings(samples=3, **SAMPLED)
    hf_dataset = "HuggingFaceH4/MATH-500"
    data_folder = "math500"

    def load(self, data_dir: Path | None, seed: int = 0) -> list[Doc]:
        if data_dir is None:
            where, rows = self.hf_dataset, hub_rows(self.hf_dataset, "test")
        else:
            path = self.folder(data_dir) / "test.jsonl"
            where, rows = str(path), read_jsonl(path, ("unique_id", "problem", "answer"))
        return unique_docs([Doc(id=str(row["unique_id"]), data=row) for row in rows], where)


TASK = Math500()
