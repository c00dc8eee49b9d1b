"""MC-TACO: temporal commonsense. Each row is one candidate answer to a question, judged plausible or not.

As lm-eval's `mc_taco` (EleutherAI/lm-evaluation-harness, lm_eval/tasks/mc_taco/default.yaml), which the
authors ran: context "{sentence}\\nQuestion: {question}\\nAnswer: {answer}\\nPlausible:", continuations " no" and
" yes" (lm-eval's target delimiter, dropped in chat mode: see rtransfer.grading.choice.TARGET_DELIMITER), score =
accuracy over the 9442 candidate rows, the number the paper reports.

`aggregate` also gives the official MC-TACO metrics (CogComp/MCTACO, evaluator/evaluator.py), per question, a
question being the rows that share (sentence, question):
  em  "strict accuracy": the share of questions whose candidates are all judged right;
  f1  for each question, P = TP / predicted-yes and R = TP / gold-yes over its candidates, where P is 1 when
      nothing is predicted yes and R is 1 when no candidate is gold yes; F1 = 2PR/(P+R), 0 when P+R = 0;
      the mean of F1 over questions.
lm-eval's own `f1` is one F1 over all rows pooled; it is given as `f1_rows` for comparison, not as MC-TACO's F1.
Only questions whose candidates are all graded count towards em and f1 (`questions` says how many).
`--limit N` scores all candidate rows of the first N questions (in order of appearance), so em and f1 count them.
"""

import csv
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rtransfer.benchmarks.base import Doc, Grade, Messages, Settings
from rtransfer.benchmarks.loading import Rows, RowTask, reading
from rtransfer.errors import DataError
from rtransfer.grading.choice import TARGET_DELIMITER, grade_loglik
from rtransfer.records import Record, doc_grades

FIELDS = ("sentence", "question", "answer", "label", "category")
LABELS = ("no", "yes")  # index = continuation index = the dataset's class id


def question_metrics(rows: Iterable[tuple[Hashable, bool, bool]]) -> tuple[float, float, int]:
    """(em, f1, number of questions) from (question key, gold is yes, predicted yes) rows; em, f1 in [0, 1]."""
    questions: dict[Hashable, list[tuple[bool, bool]]] = {}
    for key, gold, pred in rows:
        questions.setdefault(key, []).append((gold, pred))
    if not questions:
        return 0.0, 0.0, 0
    em = f1 = 0.0
    for pairs in questions.values():
        em += all(gold == pred for gold, pred in pairs)
        tp = sum(gold and pred for gold, pred in pairs)
        n_pred, n_gold = sum(pred for _, pred in pairs), sum(gold for gold, _ in pairs)
        p = tp / n_pred if n_pred else 1.0
        r = tp / n_gold if n_gold else 1.0
        f1 += 2 * p * r / (p + r) if p + r > 0 else 0.0
    return em / len(questions), f1 / len(questions), len(questions)


def _row_f1(golds: Sequence[bool], preds: Sequence[bool]) -> float:
    """Binary F1 of the "yes" class over all rows pooled (lm-eval's `f1`, sklearn's f1_score)."""
    tp = sum(g and p for g, p in zip(golds, preds, strict=True))
    denominator = sum(golds) + sum(preds)
    return 2 * tp / denominator if denominator else 0.0


class McTaco(RowTask):
    name = "mctaco"
    version = "1"
    grader_version = "1"
    kind = "loglik"
    settings = Settings(samples=1, temperature=0.0)
    hf_dataset = "CogComp/mc_taco"  # label is a class id (0 no, 1 yes)
    data_folder = "mctaco"

    def load(self, data_dir: Path | None, seed: int = 0) -> list[Doc]:
        """The rows in file order, id = the row index (rows have no id of their own), and each row's question:
        the official evaluator's key, (sentence, question), numbered in order of appearance."""
        docs, keys = super().load(data_dir, seed), {}
        for doc in docs:
            key = f"{doc.data['sentence']} {doc.data['question']}"
            doc.data["question_id"] = keys.setdefault(key, len(keys))
        return docs

    def limit(self, docs: list[Doc], n: int) -> list[Doc]:
        """Every row of the first n questions: a limit on rows would cut a question's candidates apart."""
        return [doc for doc in docs if doc.data["question_id"] < n]

    def local_rows(self, folder: Path) -> Rows:
        path = folder / "test_9442.tsv"
        # Fields hold bare quote characters: read with quoting off, as the dataset's readme says.
        with reading(path, "a TSV file"), open(path, encoding="utf-8", newline="") as f:
            lines = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        rows = []
        for number, fields in enumerate(lines, start=1):
            if len(fields) != len(FIELDS):
                raise DataError(f"{path}:{number}: {len(fields)} tab-separated fields, expected {len(FIELDS)}")
            rows.append((f"{path}:{number}", {**dict(zip(FIELDS, fields, strict=True)), "index": number - 1}))
        return rows

    def hub_rows(self) -> Rows:
        return [(where, {**row, "index": index}) for index, (where, row) in enumerate(super().hub_rows())]

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> Doc:
        label = row["label"] if isinstance(row["label"], str) else LABELS[int(row["label"])]
        if label not in LABELS:
            raise DataError(f"{where}: label {label!r} is not yes/no")
        return Doc(id=str(row["index"]), data={**{k: row[k] for k in FIELDS}, "label": label})

    def choices(self, doc: Doc) -> tuple[Messages, list[str]]:
        d = doc.data
        text = f"{d['sentence']}\nQuestion: {d['question']}\nAnswer: {d['answer']}\nPlausible:"
        return [{"role": "user", "content": text}], [TARGET_DELIMITER + label for label in LABELS]

    def grade_choices(self, doc: Doc, logprobs: Sequence[float]) -> Grade:
        grade = grade_loglik(logprobs, LABELS.index(doc.data["label"]))
        grade.extra.update(pred_label=LABELS[grade.extracted], gold_label=doc.data["label"])
        return grade

    def gold(self, doc: Doc) -> int:
        return LABELS.index(doc.data["label"])  # the index of the right continuation: 0 " no", 1 " yes"

    def aggregate(self, docs: Sequence[Doc], records: Sequence[Record]) -> dict[str, Any]:
        result = super().aggregate(docs, records)
        by_id = {doc.id: doc for doc in docs}
        ids, values, _ = doc_grades(records)
        rows = []  # (question id, gold is yes, predicted yes)
        for doc_id, value in zip(ids, values, strict=True):
            if doc_id not in by_id:
                raise DataError(f"mctaco record for row {doc_id}, which is not among the loaded rows")
            gold = by_id[doc_id].data["label"] == "yes"
            # A row's prediction follows from its grade: right means it predicted the gold label.
            rows.append((by_id[doc_id].data["question_id"], gold, gold if value >= 0.5 else not gold))
        size = Counter(doc.data["question_id"] for doc in docs)
        done = Counter(question for question, _, _ in rows)
        em, f1, questions = question_metrics(r for r in rows if done[r[0]] == size[r[0]])
        f1_rows = _row_f1([gold for _, gold, _ in rows], [pred for _, _, pred in rows])
        result.update(em=100.0 * em, f1=100.0 * f1, questions=questions, f1_rows=100.0 * f1_rows)
        return result


TASK = McTaco()
