"""HaluEval (Li et al., 2023): is this answer, response or summary hallucinated? Three tasks: qa, dialogue,
summarization; the score is the mean of the three accuracies.

Items. Each source record holds a right and a hallucinated version. The official script (RUCAIBox/HaluEval,
evaluation/evaluate.py) judges one of the two per record, drawn at random (unseeded), gold "Yes" for the hallucinated
one. The authors ran lm-eval tasks `halueval_{qa,dialogue,summarization}` (ReasoningTransfer/Transferability-of-LLM-
Reasoning, commit a4f5ea8, eval/lm-evaluation-harness/lm_eval/tasks/halueval/) on pminervini/HaluEval's
`{task}_samples` configs: also one judgment per record (10,000 per task), the draw made once by that dataset's author
with a seed we do not know (RUCAIBox/LLMBox documents qa_samples row 0 as record 0's hallucinated answer). Ours, by
default: one judgment per record, hallucinated with probability 1/2 by a hash of (seed, task, record index), so every
model sees the same items. Variants: `halueval:paper` reads the `{task}_samples` rows themselves (the authors' exact
items; hub, or local `{task}_samples.json`); `halueval:both` judges both versions of every record (twice the
documents, balanced labels, no draw); `halueval:qa`, `:dialogue`, `:summarization` run one task.

Prompt: the authors' (their utils.py; the official instructions are there too, commented out), one user message, no
system message: the task's instruction with ONE worked example (the official instruction files have 3–7; the authors
cut them, and added the record's knowledge, which the official prompts leave out), then "#Knowledge: …\\n#Question#:
…\\n#Answer#: …\\n#Your Judgement#:" (qa), "#Knowledge: …\\n#Dialogue History#: …\\n#Response#: …\\n#Your Judgement#:"
(dialogue) or "#Document#: …\\n#Summary#: …\\n#Your Judgement#:" (summarization). Typos and quoting are theirs ("act
as", "recommand", "#Knowledge: " without its closing "#", `"No"".`). Greedy, one sample, 32768 new tokens, no stop
string: their yaml sets no generation options, so lm-eval stops at its default "\\n\\n", which would cut a reasoning
model off inside its thinking.

Grading: the verdict is read by rtransfer.grading.yesno.parse_yes_no (thinking removed first); no verdict scores 0,
is marked `extra.unparseable` and counted (over all samples) in the aggregate's `unparseable`. `lm_eval_parse` is
the accuracy under the authors' reading (first line, case-sensitive substrings "Yes"/"No", so "Not sure" reads as
"No"), for comparison.

Score: each document weighs 1/(number of documents of its task), so `score` (the weighted mean the aggregate
contract asks for) equals the mean of the task accuracies when each task has the same share of its documents graded
(all of them, or N of the official 10,000 each); `qa`, `dialogue` and `summarization` are those accuracies.
lm-eval's group weights by size, which is the same with 10,000 records each.

Data: `<data-dir>/halueval/{task}_data.json` (JSON Lines, the official files, 10,000 records each;
`qa_data.first1000.json`, a 1,000-record subset some copies have, stands in for qa_data.json). A task whose file is
missing is left out. The metrics name the tasks scored (`tasks`), the documents of each task in the data (`sizes`)
and graded (`counts`), and
  complete  all three tasks scored, each in the same share (all, or N of each with --limit N and the official
            files): the score is then the mean of the three task accuracies, HaluEval's definition, and `rtransfer
            ti` uses it; otherwise `incomplete` says which task is missing or that the shares differ;
  full      complete, and every record of the official files graded: the paper's HaluEval; otherwise `partial`
            says what is short (a subset or another size of file, --limit, an unfinished run).
`--limit N` scores the first N documents of each task (lm-eval applies its limit per task), so a limited run on the
official files is complete, and not full. No task file at all is a MissingDataError, as is a missing file for a
single-task variant.
`general_data.json` (human-labelled ChatGPT answers) is not one of the paper's tasks: unused.
Hub: pminervini/HaluEval, configs qa, dialogue, summarization (split data).
"""

import hashlib
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Literal

from rtransfer.benchmarks import hub
from rtransfer.benchmarks.base import Doc, Grade, Messages, MissingDataError, Settings, Task
from rtransfer.benchmarks.loading import Rows, RowTask
from rtransfer.errors import DataError
from rtransfer.grading.yesno import lm_eval_verdict, parse_yes_no
from rtransfer.jsonl import read_objects
from rtransfer.records import Record, doc_grades

TASKS = ("qa", "dialogue", "summarization")
OFFICIAL_RECORDS = 10000  # per task file in RUCAIBox/HaluEval data/ and in pminervini/HaluEval's configs
SUBSET = "qa_data.first1000.json"  # a 1,000-record QA subset: stands in for qa_data.json, never complete
FILES = {
    "qa": ("qa_data.json", SUBSET),  # the first that exists
    "dialogue": ("dialogue_data.json",),
    "summarization": ("summarization_data.json",),
}
# Fields of the official records: the context shown as is, then the right and the hallucinated version.
CONTEXT = {
    "qa": ("knowledge", "question"),
    "dialogue": ("knowledge", "dialogue_history"),
    "summarization": ("document",),
}
VERSIONS = {
    "qa": ("right_answer", "hallucinated_answer"),
    "dialogue": ("right_response", "hallucinated_response"),
    "summarization": ("right_summary", "hallucinated_summary"),
}
# Field of the judged text in pminervini/HaluEval's {task}_samples rows (label: `hallucination`, "yes"/"no").
SAMPLE_FIELD = {"qa": "answer", "dialogue": "response", "summarization": "summary"}
# Prompt lines: (label, field); None is the judged text.
LINES = {
    "qa": (("#Knowledge: ", "knowledge"), ("#Question#: ", "question"), ("#Answer#: ", None)),
    "dialogue": (("#Knowledge: ", "knowledge"), ("#Dialogue History#: ", "dialogue_history"), ("#Response#: ", None)),
    "summarization": (("#Document#: ", "document"), ("#Summary#: ", None)),
}

# The authors' instructions (their utils.py QA_INSTURCTIONS, DIALOGUE_INSTRUCTIONS, SUMMARIZATION_INSTRUCTIONS): the
# opening and closing sentences of the official instruction files around one worked example.
_INSTRUCTION = (
    "I want you act as {judge}. Given {given}, your objective is to determine if the provided {item} contains "
    "non-factual or hallucinated information. You SHOULD give your judgement based on the following hallucination "
    "types and the world knowledge.\n\n{example}\n\nYou should try your best to determine if the {item} contains "
    "non-factual or hallucinated information according to the above hallucination types. The answer you give MUST be "
    '"Yes" or "No"".'
)
_EXAMPLES = {
    "qa": (
        "an answer judge",
        "a question and an answer",
        "answer",
        "You are trying to determine if the answer misunderstands the question context and intention.\n"
        "#Question#: What is a rare breed of dog that was derived as a variant of Rat Terrier, Shiloh Shepherd dog or "
        "American Hairless Terrier?\n#Answer#: American Hairless Terrier\n#Your Judgement#: No",
    ),
    "dialogue": (
        "a response judge",
        "a dialogue history and a response",
        "response",
        "You are trying to determine if the true entity in the response is replaced with a highly similar entity.\n"
        "#Dialogue History#: [Human]: Could you recommand movies similar to The Dark Knight? [Assistant]: The sequel "
        "to Batman Begins is The Dark Knight. [Human]: Okay. Who is the director of The Dark Knight and any other "
        "movies from him not related to Batman?\n#Response#: Christopher Nolan was the director. He also directed "
        "insomnia and inception.\n#Your Judgement#: No",
    ),
    "summarization": (
        "a summary judge",
        "a document and a summary",
        "summary",
        "You are trying to determine if the summary is factual but some information cannot be directly inferred or "
        "entailed from the document.\n#Document#: The panther chameleon was found on Monday by a dog walker in the "
        "wooded area at Marl Park. It had to be put down after X-rays showed all of its legs were broken and it had a "
        'deformed spine. RSPCA Cymru said it was an "extremely sad example of an abandoned and neglected exotic pet". '
        'Inspector Selina Chan said: "It is a possibility that the owners took on this animal but were unable to '
        'provide the care he needs and decided to release him to the wild. "We are urging potential owners of exotic '
        "animals to thoroughly research what is required in the care of the particular species before taking one on. "
        '"Potential owners need to make sure they can give their animal the environment it needs and they have the '
        "facilities, time, financial means and long-term commitment to maintain a good standard of care, as required "
        'under the Animal Welfare Act 2006." She added it was illegal to release non-native species into the wild.\n'
        "#Summary#: A chameleon that was found in a Cardiff park has been put down after being abandoned and "
        "neglected by its owners.\n#Your Judgement#: Yes",
    ),
}
INSTRUCTIONS = {
    task: _INSTRUCTION.format(judge=judge, given=given, item=item, example=example)
    for task, (judge, given, item, example) in _EXAMPLES.items()
}


def hallucinated_draw(seed: int, task: str, index: int) -> bool:
    """Whether record `index` of `task` is judged in its hallucinated version: probability 1/2, a pure function of
    (seed, task, index), so the items do not depend on file order, --limit or the model."""
    return hashlib.sha256(f"halueval/{seed}/{task}/{index}".encode()).digest()[0] < 128


class HaluEval(RowTask):
    name = "halueval"
    version = "1"
    grader_version = "1"
    kind = "generate"
    settings = Settings(samples=1, temperature=0.0, max_new_tokens=32768)
    hf_dataset = "pminervini/HaluEval"  # configs qa, dialogue, summarization (split data); {task}_samples: :paper
    data_folder = "halueval"
    tasks: ClassVar[tuple[str, ...]] = TASKS
    items: ClassVar[Literal["draw", "both", "samples"]] = "draw"

    # A row is one task's records, {"task", "rows": [(line or row number, record)]}: the documents of a task
    # depend on all of its records (their number, the subset), not on each alone.
    def local_rows(self, folder: Path) -> Rows:
        found = False
        for task in self.tasks:
            path = next((folder / n for n in self._file_names(task) if (folder / n).exists()), None)
            if path is None:
                if len(self.tasks) == 1:  # the user asked for this task alone
                    raise MissingDataError(f"{folder}: no {task} file (expected {' or '.join(self._file_names(task))})")
                continue  # a missing task is left out (see the module doc)
            found = True
            yield str(path), {"task": task, "rows": read_objects(path)}  # fields are checked in to_doc
        if not found:
            wanted = ", ".join(name for task in self.tasks for name in self._file_names(task))
            raise MissingDataError(f"{folder}: no HaluEval task file (expected one of: {wanted})")

    def hub_rows(self) -> Rows:
        for task in self.tasks:
            config = f"{task}_samples" if self.items == "samples" else task
            rows = list(enumerate(hub.hub_rows(self.hf_dataset, "data", config), start=1))
            yield f"{self.hf_dataset}:{config} row", {"task": task, "rows": rows}

    def limit(self, docs: list[Doc], n: int) -> list[Doc]:
        """The first n documents of each task, in load order: every task stays in a limited run."""
        taken: Counter[str] = Counter()
        kept = []
        for doc in docs:
            taken[doc.data["task"]] += 1
            if taken[doc.data["task"]] <= n:
                kept.append(doc)
        return kept

    def _file_names(self, task: str) -> tuple[str, ...]:
        return (f"{task}_samples.json",) if self.items == "samples" else FILES[task]

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> list[Doc]:
        task, rows = row["task"], row["rows"]
        if self.items == "samples":
            fields = (*CONTEXT[task], SAMPLE_FIELD[task], "hallucination")
        else:
            fields = (*CONTEXT[task], *VERSIONS[task])
        for number, record in rows:  # empty text is allowed
            bad = [f for f in fields if not isinstance(record.get(f), str)]
            if bad:
                raise DataError(f"{where}:{number}: field(s) {', '.join(bad)} missing or not text")
        return self._docs(task, where, rows, seed)

    def _docs(self, task: str, where: str, rows: list[tuple[int, dict[str, Any]]], seed: int) -> list[Doc]:
        items = []  # (id, judged text, label "yes" = hallucinated)
        right, hallucinated = VERSIONS[task]
        for index, (number, row) in enumerate(rows):
            if self.items == "samples":
                label = row["hallucination"].strip().lower()
                if label not in ("yes", "no"):
                    raise DataError(f"{where}:{number}: hallucination is {row['hallucination']!r}, not yes/no")
                items.append((f"{task}/{index}", row[SAMPLE_FIELD[task]], label))
            elif self.items == "both":
                items.append((f"{task}/{index}/right", row[right], "no"))
                items.append((f"{task}/{index}/hallucinated", row[hallucinated], "yes"))
            elif hallucinated_draw(seed, task, index):
                items.append((f"{task}/{index}", row[hallucinated], "yes"))
            else:
                items.append((f"{task}/{index}", row[right], "no"))
        context = [{f: row[f] for f in CONTEXT[task]} for _, row in rows]
        per_row = 2 if self.items == "both" else 1
        size = len(items)
        # What keeps a score from being the paper's HaluEval, whatever the model answers (None: nothing).
        if where.endswith(SUBSET):
            short = f"{task} is the {len(rows)}-record subset {SUBSET}"
        elif len(rows) != OFFICIAL_RECORDS:
            short = f"{task} has {len(rows)} records, not the official {OFFICIAL_RECORDS}"
        else:
            short = None
        return [
            Doc(
                id=doc_id,
                data={
                    "task": task,
                    "record": k // per_row,
                    **context[k // per_row],
                    "judged": text,
                    "label": label,
                    "size": size,  # documents of this task: each weighs 1/size
                    "weight": 1.0 / size,
                    "short": short,
                },
            )
            for k, (doc_id, text, label) in enumerate(items)
        ]

    def prompt(self, doc: Doc) -> Messages:
        d = doc.data
        lines = [label + (d["judged"] if field is None else d[field]) for label, field in LINES[d["task"]]]
        body = "\n".join([*lines, "#Your Judgement#:"])
        return [{"role": "user", "content": f"{INSTRUCTIONS[d['task']]}\n\n{body}"}]

    def grade(self, doc: Doc, response: str) -> Grade:
        verdict, rule = parse_yes_no(response)
        label = doc.data["label"]
        extra: dict[str, Any] = {"label": label, "rule": rule}
        if verdict is None:
            extra["unparseable"] = True
        return Grade(score=float(verdict == label), extracted=verdict, weight=doc.data["weight"], extra=extra)

    def gold(self, doc: Doc) -> str:
        return doc.data["label"]  # "yes": the judged text is the hallucinated version

    def aggregate(self, docs: Sequence[Doc], records: Sequence[Record]) -> dict[str, Any]:
        result = super().aggregate(docs, records)  # score: weighted mean = mean of the task accuracies
        by_id = {doc.id: doc for doc in docs}
        unknown = next((r.doc_id for r in records if r.doc_id not in by_id), None)
        if unknown is not None:
            raise DataError(f"halueval record for {unknown}, which is not among the loaded documents")
        ids, values, weights = doc_grades(records)
        per_task: dict[str, list[float]] = {}
        for doc_id, value in zip(ids, values, strict=True):
            per_task.setdefault(by_id[doc_id].data["task"], []).append(float(value))
        for task, task_values in per_task.items():
            result[task] = 100.0 * sum(task_values) / len(task_values)
        # The authors' reading of the same responses, weighted as `score` (avg over samples, then by task size).
        lm_eval: dict[str, list[float]] = {}
        for r in records:
            ok = r.response is not None and lm_eval_verdict(r.response) == by_id[r.doc_id].data["label"]
            lm_eval.setdefault(r.doc_id, []).append(float(ok))
        lm_values = [sum(lm_eval[i]) / len(lm_eval[i]) for i in ids]
        first = {d.data["task"]: d for d in reversed(docs)}
        graded = set(ids)  # documents with records: a loaded but ungraded document is not counted
        counts = {t: sum(d.data["task"] == t and d.id in graded for d in docs) for t in TASKS if t in first}
        sizes = {t: first[t].data["size"] for t in counts}
        scored = [t for t in TASKS if counts.get(t)]
        incomplete = [f"{t} is not scored" for t in TASKS if t not in scored]
        # Each document weighs 1/size of its task, so the score is the mean of the task accuracies only when every
        # task has the same share graded: all of it, or N of the official 10,000 each (--limit N).
        if not incomplete and len({Fraction(counts[t], sizes[t]) for t in scored}) > 1:
            shares = ", ".join(f"{t} {counts[t]} of {sizes[t]}" for t in scored)
            incomplete.append(f"the tasks are graded in unequal shares ({shares}), so the score is not their mean")
        partial = [first[t].data["short"] for t in scored if first[t].data.get("short")]
        partial += [f"{t}: {counts[t]} of {sizes[t]} documents" for t in scored if counts[t] < sizes[t]]
        result.update(
            tasks=scored,
            sizes=sizes,
            counts={t: counts[t] for t in scored},
            complete=not incomplete,
            **({"incomplete": "; ".join(incomplete)} if incomplete else {}),
            full=not incomplete and not partial,
            **({"partial": "; ".join(partial)} if partial else {}),
            unparseable=sum(r.extracted is None for r in records),
            lm_eval_parse=float(100.0 * (weights @ lm_values) / weights.sum()) if ids else 0.0,
        )
        return result


class HaluEvalBoth(HaluEval):
    """Both versions of every record are judged (the right one, gold "No"; the hallucinated one, gold "Yes")."""

    version = "1-both"
    items = "both"


class HaluEvalPaper(HaluEval):
    """The authors' items: pminervini/HaluEval's {task}_samples rows (local: {task}_samples.json, JSON Lines)."""

    version = "1-paper"
    items = "samples"


def _single(task: str) -> HaluEval:
    cls = type(f"HaluEval_{task}", (HaluEval,), {"version": f"1-{task}", "tasks": (task,)})
    return cls()


TASK = HaluEval()
VARIANTS: dict[str, Task] = {"both": HaluEvalBoth(), "paper": HaluEvalPaper(), **{t: _single(t) for t in TASKS}}
