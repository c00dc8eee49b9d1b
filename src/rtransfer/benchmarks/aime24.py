"""AIME 2024 (I and II, 30 problems, integer answers). Boxed answer graded by equivalence, average over 10
samples (BRIEF §2)."""

from pathlib import Path

from rtransfer.benchmarks._math import SAMPLED, MathTask, last_boxed, read_jsonl, unique_docs
from rtransfer.benchmarks.base import Doc, Settings
from rtransfer.benchmarks.hub import hub_rows
from rtransfer.errors import DataError


class Aime24(MathTask):
    name = "aime24"
    version = "1"
    settings = Settings(samples=10, **SAMPLED)
    hf_dataset = "math-ai/aime24"
    data_folder = "aime2024"

    def load(self, data_dir: Path | None, seed: int = 0) -> list[Doc]:
        if data_dir is None:
            where, rows = self.hf_dataset, hub_rows(self.hf_dataset, "test")
            for row in rows:  # the hub copy has no answer column: the answer is the solution's last box
                row["answer"] = row.get("answer") or last_boxed(str(row.get("solution") or ""))
                if not row["answer"]:
                    raise DataError(f"{where}: no answer for problem {row.get('id')!r}")
        else:
            path = self.folder(data_dir) / "test.jsonl"
            where, rows = str(path), read_jsonl(path, ("id", "problem", "answer"))
        docs = [Doc(id=str(row["id"]), data={**row, "answer": str(row["answer"])}) for row in rows]
        return unique_docs(docs, where)


TASK = Aime24()
