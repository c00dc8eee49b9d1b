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

from rtransfer.benchmarks.base import Doc, Grade, Messages, Settings, Task
from rtransfer.errors import DataError
from rtransfer.grading.choice import TARGET_DELIMITER, grade_loglik
from rtransfer.records import Record


class HeadQA(Task):
    name = "headqa"
    group = "other"
    version = "1"
    grader_version = "1"
    kind = "loglik"
    settings = Settings(samples=1, temperature=0.0)
    # lm-eval's parquet copy of the original `head_qa` (whose loading script datasets>=4 no longer runs).
    hf_dataset = "EleutherAI/headqa"  # config en, split test
    data_folder = "headqa"

    def load(self, data_dir: Path | None, seed: int = 0) -> list[Doc]:
        if data_dir is None:
            from rtransfer.benchmarks.hub import hub_rows

            rows = hub_rows(self.hf_dataset, "test", "en")
            return self._docs(rows, f"{self.hf_dataset}:en")
        path = self.folder(data_dir) / "test_HEAD_EN.json"
        try:
            exams = json.loads(path.read_text(encoding="utf-8"))["exams"]
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"{path}: not a HEAD-QA JSON file ({type(err).__name__}: {err})") from None
        if not isinstance(exams, dict):
            raise DataError(f"{path}: 'exams' is not an object")
        rows = []
        for key, exam in exams.items():
            if not isinstance(exam, dict) or not isinstance(exam.get("data"), list):
                raise DataError(f"{path}: exam {key}: no question list")
            if not all(isinstance(q, dict) for q in exam["data"]):
                raise DataError(f"{path}: exam {key}: a question that is not an object")
            rows.extend({**q, "name": exam.get("name", key), "category": exam.get("category")} for q in exam["data"])
        return self._docs(rows, str(path))

    def _docs(self, rows: list[dict[str, Any]], source: str) -> list[Doc]:
        docs, seen = [], set()
        for number, q in enumerate(rows, start=1):
            try:
                answers = sorted(q["answers"], key=lambda a: int(a["aid"]))
                texts = [str(a["atext"]) for a in answers]
                gold = [int(a["aid"]) for a in answers].index(int(q["ra"]))
                doc_id = f"{q['name']}/{q['qid']}"
                question = str(q["qtext"])
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(f"{source}: question {number}: malformed ({type(err).__name__}: {err})") from None
            if doc_id in seen:
                raise DataError(f"{source}: question {number}: duplicate id {doc_id}")
            seen.add(doc_id)
            data = {"question": question, "answers": texts, "gold": gold, "category": q.get("category")}
            docs.append(Doc(id=doc_id, data=data))
        if not docs:
            raise DataError(f"{source}: no questions")
        return docs

    def choices(self, doc: Doc) -> tuple[Messages, list[str]]:
        context = [{"role": "user", "content": f"Question: {doc.data['question']}\nAnswer:"}]
        return context, [TARGET_DELIMITER + text for text in doc.data["answers"]]

    def grade_choices(self, doc: Doc, logprobs: Sequence[float]) -> Grade:
        return grade_loglik(logprobs, doc.data["gold"], self.choices(doc)[1])

    def aggregate(self, docs: Sequence[Doc], records: Sequence[Record]) -> dict[str, Any]:
        result = super().aggregate(docs, records)
        norm = [r.grading.get("acc_norm") for r in records]
        if records and all(v is not None for v in norm):  # absent in records graded elsewhere (e.g. ingested)
            result["acc_norm"] = 100.0 * sum(norm) / len(norm)
        return result


TASK = HeadQA()
