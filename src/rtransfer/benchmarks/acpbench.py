"""ACPBench (reasoning about action, change and planning): the 7 multiple-choice tasks, 2-shot chain of thought.

Source of prompt and settings: the authors' lm-eval fork (ReasoningTransfer/Transferability-of-LLM-Reasoning,
commit a4f5ea8, eval/lm-evaluation-harness/build/lib/lm_eval/tasks/acpbench/mcq_cot_2shot/): each turn reads
"**Question**: {context}  {question} **Thoughts**:" (two spaces, as in the yaml; the question already lists the
options A–D), the two worked examples of each task come from its yaml (src/rtransfer/data/acpbench/fewshot.json),
greedy decoding, the yaml's stop strings, exact match of the extracted letter.

Choices we made, and the paper's alternative where it differs:
* Max new tokens: 32768. The yaml says 1024, but the authors' run script passes `--gen_kwargs max_gen_toks=32768`,
  which overrides it (and a reasoning model's thinking does not fit in 1024).
* Few-shot layout, as the authors ran it: lm-eval with `--apply_chat_template` but without
  `--fewshot_as_multiturn`, which puts both examples and the question in one user message
  ("{shot} {answer}\\n\\n{shot} {answer}\\n\\n{question}"). The variant `acpbench:multiturn` presents the
  examples as user/assistant turns instead.
* Extraction: the examples end in "**Final Answer**: X."; rtransfer.grading.choice reads that (and \\boxed{X},
  "the answer is X"), with no fallback to a stray letter. The yaml's `multi_choice_regex` falls back to the last
  capital A–D anywhere in the text, which guesses.
* Score: the mean over all 900 documents (lm-eval's `acp_bench_mcq` group, weight_by_size: true; the authors'
  own report script also pools). `aggregate` adds each task's accuracy and their unweighted mean ("macro").
"""

import gzip
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from rtransfer.benchmarks import hub
from rtransfer.benchmarks.base import Doc, Grade, Messages, Settings
from rtransfer.benchmarks.loading import Rows, RowTask, reading
from rtransfer.errors import DataError
from rtransfer.grading.choice import LETTERS, grade_choice
from rtransfer.records import Record, doc_grades

TASKS = ("app", "areach", "just", "land", "prog", "reach", "val")
TURN = "**Question**: {context}  {question} **Thoughts**:"


def fewshot() -> dict[str, list[dict[str, str]]]:
    """The authors' two worked examples per task: {task: [{context, question, answer}, ...]}."""
    text = resources.files("rtransfer").joinpath("data/acpbench/fewshot.json").read_text(encoding="utf-8")
    return json.loads(text)["tasks"]


class AcpBench(RowTask):
    name = "acpbench"
    version = "1"
    grader_version = "1"
    kind = "generate"
    settings = Settings(
        samples=1, temperature=0.0, max_new_tokens=32768, stop=("\n\n\n\n", "**Question**:", "**Question:**", "Q:")
    )
    hf_dataset = "ibm-research/acp_bench"  # configs acp_<task>_mcq, split test
    data_folder = "acpbench"
    multiturn: ClassVar[bool] = False

    def __init__(self) -> None:
        self._shots = fewshot()

    def local_rows(self, folder: Path) -> Rows:  # a task's file is read once the previous task's rows are checked
        for task in TASKS:
            path = folder / task / "test.mcq.json.gz"
            with reading(path, "a gzipped JSON file"), gzip.open(path, "rt", encoding="utf-8") as f:
                records = json.load(f)
            yield from _task_rows(task, records, str(path))

    def hub_rows(self) -> Rows:
        for task in TASKS:
            config = f"acp_{task}_mcq"
            yield from _task_rows(task, hub.hub_rows(self.hf_dataset, "test", config), f"{self.hf_dataset}:{config}")

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> Doc:
        task, rec = row["task"], row["record"]
        if not isinstance(rec, dict) or any(k not in rec for k in ("id", "context", "question", "answer")):
            raise DataError(f"{where}: needs id, context, question and answer")
        if rec["answer"] not in LETTERS:
            raise DataError(f"{where}: answer {rec['answer']!r} is not one of A-D")
        return Doc(id=f"{task}/{rec['id']}", data={**rec, "task": task})

    def prompt(self, doc: Doc) -> Messages:
        shots = self._shots[doc.data["task"]]
        question = TURN.format(context=doc.data["context"], question=doc.data["question"])
        if self.multiturn:
            messages: Messages = []
            for shot in shots:
                messages.append({"role": "user", "content": TURN.format(**shot)})
                messages.append({"role": "assistant", "content": shot["answer"]})
            return [*messages, {"role": "user", "content": question}]
        # lm-eval's single-turn few-shot: target delimiter " ", few-shot delimiter "\n\n".
        context = "".join(f"{TURN.format(**shot)} {shot['answer']}\n\n" for shot in shots)
        return [{"role": "user", "content": context + question}]

    def grade(self, doc: Doc, response: str) -> Grade:
        return grade_choice(response, doc.data["answer"])

    def gold(self, doc: Doc) -> str:
        return doc.data["answer"]  # the letter A-D

    def aggregate(self, docs: Sequence[Doc], records: Sequence[Record]) -> dict[str, Any]:
        result = super().aggregate(docs, records)
        ids, values, _ = doc_grades(records)
        per_task: dict[str, list[float]] = {}
        for doc_id, value in zip(ids, values, strict=True):
            per_task.setdefault(doc_id.split("/", 1)[0], []).append(float(value))
        accuracy = {task: 100.0 * sum(v) / len(v) for task, v in per_task.items()}
        result["per_task"] = accuracy
        result["macro"] = sum(accuracy.values()) / len(accuracy) if accuracy else 0.0
        return result


def _task_rows(task: str, records: object, source: str) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(records, list) or not records:
        raise DataError(f"{source}: expected a non-empty JSON array of records")
    return [(f"{source}: record {n}", {"task": task, "record": rec}) for n, rec in enumerate(records, start=1)]


class AcpBenchMultiTurn(AcpBench):
    """The worked examples as user/assistant turns, then the question (not the authors' layout)."""

    version = "1-multiturn"
    multiturn = True


TASK = AcpBench()
VARIANTS = {"multiturn": AcpBenchMultiTurn()}
