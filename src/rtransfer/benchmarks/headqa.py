"""HEAD-QA (English): 2742 questions from Spanish healthcare specialisation exams, 4 options, by log-likelihood.

As lm-eval's `headqa_en` (EleutherAI/lm-evaluation-harness, lm_eval/tasks/headqa/headqa_en.yaml), which the
authors ran: context "Question: {qtext}\\nAnswer:", one continuation per option text, metric acc (the
likeliest option is the right one). acc_norm (per-character log-probability) is reported beside it. The
continuations start with lm-eval's target delimiter " ", which the engine drops in chat mode (see
rtransfer.grading.choice.TARGET_DELIMITER).

All 2742 test questions are kept, as in lm-eval, including the 67 that refer to an image the model never sees.
Document ids are "<exam name>/<qid>" (e.g. "Cuaderno_2016_1_B/1"): qid alone repeats across the 12 exams.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtransfer.benchmarks.base import Doc, Grade, Messages, Settings
from rtransfer.benchmarks.loading import Rows, RowTask, reading
from rtransfer.errors import DataError
from rtransfer.grading.choice import TARGET_DELIMITER, grade_loglik
from rtransfer.records import Record


class HeadQA(RowTask):
    name = "headqa"
    version = "1"
    grader_version = "1"
    kind = "loglik"
    settings = Settings(samples=1, temperature=0.0)
    # lm-eval's parquet copy of the original `head_qa` (whose loading script datasets>=4 no longer runs).
    hf_dataset = "EleutherAI/headqa"
    hf_config = "en"
    data_folder = "headqa"

    def local_rows(self, folder: Path) -> Rows:
        path = folder / "test_HEAD_EN.json"
        with reading(path, "a HEAD-QA JSON file"):
            exams = json.loads(path.read_text(encoding="utf-8"))["exams"]
        if not isinstance(exams, dict):
            raise DataError(f"{path}: 'exams' is not an object")
        rows = []
        for key, exam in exams.items():
            if not isinstance(exam, dict) or not isinstance(exam.get("data"), list):
                raise DataError(f"{path}: exam {key}: no question list")
            if not all(isinstance(q, dict) for q in exam["data"]):
                raise DataError(f"{path}: exam {key}: a question that is not an object")
            rows.extend({**q, "name": exam.get("name", key), "category": exam.get("category")} for q in exam["data"])
        return [(f"{path}: question {number}", q) for number, q in enumerate(rows, start=1)]

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> Doc:
        answers = sorted(row["answers"], key=lambda a: int(a["aid"]))
        gold = [int(a["aid"]) for a in answers].index(int(row["ra"]))
        data = {
            "question": str(row["qtext"]),
            "answers": [str(a["atext"]) for a in answers],
            "gold": gold,
            "category": row.get("category"),
        }
        return Doc(id=f"{row['name']}/{row['qid']}", data=data)

    def choices(self, doc: Doc) -> tuple[Messages, list[str]]:
        context = [{"role": "user", "content": f"Question: {doc.data['question']}\nAnswer:"}]
        return context, [TARGET_DELIMITER + text for text in doc.data["answers"]]

    def grade_choices(self, doc: Doc, logprobs: Sequence[float]) -> Grade:
        return grade_loglik(logprobs, doc.data["gold"], self.choices(doc)[1])

    def gold(self, doc: Doc) -> int:
        return doc.data["gold"]  # the index of the right continuation

    def aggregate(self, docs: Sequence[Doc], records: Sequence[Record]) -> dict[str, Any]:
        result = super().aggregate(docs, records)
        norm = [r.grading.get("acc_norm") for r in records]
        if records and all(v is not None for v in norm):  # absent in records graded elsewhere (e.g. ingested)
            result["acc_norm"] = 100.0 * sum(norm) / len(norm)
        return result


TASK = HeadQA()
