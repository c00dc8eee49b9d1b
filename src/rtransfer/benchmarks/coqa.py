"""CoQA (Reddy et al., 2019): questions about a passage asked as a conversation. Every turn is scored.

Prompt, as lm-eval's `coqa` task (EleutherAI/lm-evaluation-harness, lm_eval/tasks/coqa/utils.py `doc_to_text`),
which the authors ran (ReasoningTransfer/Transferability-of-LLM-Reasoning, commit a4f5ea8,
eval/lm-evaluation-harness/lm_eval/tasks/coqa/utils.py): the story and a blank line, each earlier turn as
"Q: {question}\\n\\nA: {gold answer}\\n\\n", then "Q: {question}\\n\\nA:"; one user message; greedy, one sample,
stop at "\\nQ:" (the yaml's `until`), 32768 new tokens (the paper's budget for reasoning models).

Grading, as the official evaluator (rtransfer.grading.overlap): the answer is the first line of the response once
thinking is removed (the authors' `process_results`), with a leading "Answer:" label dropped; its references are the
main answer followed by each `additional_answers` set (the dev set has three), duplicates kept; EM and F1 by the
evaluator's leave-one-out rule (a single reference: plain EM/F1). `score` is the mean F1 over turns (0–100), `em`
the mean EM; `by_source` splits both by the story's domain, as the official evaluator does.

Where we differ from the authors' lm-eval task:
* lm-eval makes one document per story whose prompt holds every turn but the last, so it scores only the last turn
  of each story (500 of the 7,983 dev questions). We make one document per turn, id "{story id}/{turn id}", and score
  all. `last_turn_f1` is the F1 over the last turns only, the turns lm-eval scores.
* lm-eval drops references that repeat another case-insensitively before the leave-one-out average; the official
  evaluator keeps them, as we do. `f1_max` / `em_max` give SQuAD's best-over-all-references rule for comparison.

Data: `<data-dir>/coqa/coqa-dev-v1.0.json` (the official dev file) when present, else every other `*.json` there
whose name does not contain "train", each in the official structure. Hub: EleutherAI/coqa (validation), the set lm-eval
loads; unlike stanfordnlp/coqa it keeps the story ids and the additional answers. Rows of stanfordnlp/coqa (no ids, one
reference per turn) are read too (`story_from_hub`).
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtransfer.benchmarks import hub
from rtransfer.benchmarks.base import Doc, Grade, Messages, MissingDataError, Settings
from rtransfer.benchmarks.loading import Rows, RowTask, reading
from rtransfer.errors import DataError
from rtransfer.grading.overlap import coqa_scores, exact_match, max_reference, read_answer, token_f1
from rtransfer.records import Record, doc_grades

OFFICIAL_DEV_FILE = "coqa-dev-v1.0.json"


def _texts(items: Any, where: str, what: str) -> list[str]:
    """The `input_text` of each turn: from a list of {"input_text": ...} (the official file), a dict of lists (the
    hub's columns) or a list of strings (stanfordnlp/coqa's questions)."""
    if isinstance(items, dict):
        items = items.get("input_text")
    if not isinstance(items, list):
        raise DataError(f"{where}: {what} is not a list of turns")
    out = []
    for turn, item in enumerate(items, start=1):
        text = item.get("input_text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise DataError(f"{where}: {what}, turn {turn}: no input_text")
        if isinstance(item, dict) and item.get("turn_id", turn) != turn:
            raise DataError(f"{where}: {what}, turn {turn}: turn_id {item['turn_id']} out of order")
        out.append(text)
    return out


def story_from_record(record: Any, where: str, default_id: str | None = None) -> dict[str, Any]:
    """One story in a fixed shape: id, source, story, questions, answers and `additional` (a list of answer lists,
    each one answer per turn). Reads the official file's records and both hub layouts."""
    if not isinstance(record, dict) or not isinstance(record.get("story"), str):
        raise DataError(f"{where}: expected a story object with a `story` text")
    story_id = record.get("id", default_id)
    if not story_id:
        raise DataError(f"{where}: story without an id")
    where = f"{where} (story {story_id})"
    questions = _texts(record.get("questions"), where, "questions")
    answers = _texts(record.get("answers"), where, "answers")
    if not questions or len(answers) != len(questions):
        raise DataError(f"{where}: {len(questions)} questions but {len(answers)} answers")
    extra = record.get("additional_answers") or {}
    if not isinstance(extra, dict):
        raise DataError(f"{where}: additional_answers is not an object")
    additional = []
    for key in extra:  # the file's order ("0", "1", "2"), as the official evaluator
        texts = _texts(extra[key], where, f"additional answers {key!r}")
        if len(texts) != len(questions):
            raise DataError(f"{where}: additional answers {key!r} have {len(texts)} turns, not {len(questions)}")
        additional.append(texts)
    return {
        "id": str(story_id),
        "source": str(record.get("source", "")),
        "story": record["story"],
        "questions": questions,
        "answers": answers,
        "additional": additional,
    }


def story_from_hub(row: dict[str, Any], index: int) -> dict[str, Any]:
    """A hub row (EleutherAI/coqa, or stanfordnlp/coqa whose rows have no id: "validation-{index}")."""
    return story_from_record(row, f"hub row {index}", default_id=f"validation-{index}")


class CoQA(RowTask):
    name = "coqa"
    version = "1"
    grader_version = "1"
    kind = "generate"
    settings = Settings(samples=1, temperature=0.0, max_new_tokens=32768, stop=("\nQ:",))
    hf_dataset = "EleutherAI/coqa"  # stanfordnlp/coqa rows are read too (see the module doc)
    hf_split = "validation"
    data_folder = "coqa"

    # Rows are stories (`story_from_record`); each becomes one document per turn.
    def local_rows(self, folder: Path) -> Rows:
        official = folder / OFFICIAL_DEV_FILE
        paths = [official] if official.exists() else sorted(p for p in folder.glob("*.json") if "train" not in p.name)
        if not paths:
            expected = f"expected {OFFICIAL_DEV_FILE} or another *.json in its format"
            raise MissingDataError(f"{folder}: no CoQA file ({expected})")
        stories = []
        for path in paths:
            with reading(path, "a JSON file"):
                data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("data"), list):
                raise DataError(f"{path}: expected the official layout {{'version': ..., 'data': [stories]}}")
            for i, record in enumerate(data["data"], start=1):
                where = f"{path}: story {i}"
                stories.append((where, story_from_record(record, where)))
        return stories

    def hub_rows(self) -> Rows:
        rows = hub.hub_rows(self.hf_dataset, self.hf_split)
        return [(f"{self.hf_dataset} row {i}", story_from_hub(row, i)) for i, row in enumerate(rows)]

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> list[Doc]:
        s, docs = row, []  # a story
        turns = len(s["questions"])
        for t in range(turns):
            data = {
                "story_id": s["id"],
                "source": s["source"],
                "story": s["story"],
                "turn": t + 1,
                "last": t + 1 == turns,
                "question": s["questions"][t],
                "history": list(zip(s["questions"][:t], s["answers"][:t], strict=True)),  # gold answers
                "references": [s["answers"][t]] + [answers[t] for answers in s["additional"]],
            }
            docs.append(Doc(id=f"{s['id']}/{t + 1}", data=data))
        return docs

    def duplicate(self, doc: Doc, where: str) -> str:
        return f"{where}: story {doc.data['story_id']} appears twice"

    def prompt(self, doc: Doc) -> Messages:
        d = doc.data
        history = "".join(f"Q: {q}\n\nA: {a}\n\n" for q, a in d["history"])
        return [{"role": "user", "content": f"{d['story']}\n\n{history}Q: {d['question']}\n\nA:"}]

    def grade(self, doc: Doc, response: str) -> Grade:
        answer = read_answer(response)
        scores = coqa_scores(doc.data["references"], answer)
        return Grade(score=scores["f1"], extracted=answer, extra={"em": scores["em"]})

    def gold(self, doc: Doc) -> list[str]:
        return doc.data["references"]  # the main answer, then each additional answer set's

    def aggregate(self, docs: Sequence[Doc], records: Sequence[Record]) -> dict[str, Any]:
        result = super().aggregate(docs, records)  # score: mean F1 over turns
        by_id = {doc.id: doc for doc in docs}
        # EM and the SQuAD-rule numbers are recomputed from the stored answers, so they follow a re-grade too.
        samples: dict[str, list[dict[str, float]]] = {}
        for r in records:
            if r.doc_id not in by_id:
                raise DataError(f"coqa record for turn {r.doc_id}, which is not among the loaded turns")
            samples.setdefault(r.doc_id, []).append(_other_metrics(by_id[r.doc_id].data["references"], r.extracted))
        ids, f1s, _ = doc_grades(records)
        turns = []  # (doc data, metrics of the turn averaged over its samples)
        for doc_id, f1 in zip(ids, f1s, strict=True):
            per_sample = samples[doc_id]
            averaged = {k: sum(s[k] for s in per_sample) / len(per_sample) for k in per_sample[0]}
            turns.append((by_id[doc_id].data, {"f1": float(f1), **averaged}))

        def mean(metric: str, source: str | None = None, last_only: bool = False) -> float:
            values = [m[metric] for d, m in turns if (source in (None, d["source"])) and (d["last"] or not last_only)]
            return 100.0 * sum(values) / len(values) if values else 0.0

        sources = sorted({d["source"] for d, _ in turns})
        result.update(
            f1=result["score"],
            em=mean("em"),
            f1_max=mean("f1_max"),
            em_max=mean("em_max"),
            last_turn_f1=mean("f1", last_only=True),
            last_turns=sum(d["last"] for d, _ in turns),
            stories=len({d["story_id"] for d, _ in turns}),
            by_source={
                s: {"f1": mean("f1", s), "em": mean("em", s), "n": sum(d["source"] == s for d, _ in turns)}
                for s in sources
            },
        )
        return result


def _other_metrics(references: list[str], answer: str | None) -> dict[str, float]:
    """A stored answer's EM (CoQA's rule) and its F1 and EM by SQuAD's best-reference rule."""
    answer = answer or ""
    return {
        "em": coqa_scores(references, answer)["em"],
        "f1_max": max_reference(token_f1, references, answer),
        "em_max": max_reference(exact_match, references, answer),
    }


TASK = CoQA()
