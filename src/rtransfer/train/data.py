"""Training data: math queries (problem + gold answer) and teacher traces (prompt + completion).

Queries come from the lab's math train split (never a test item), a local JSON Lines file of problem/answer pairs,
or a Hugging Face dataset id (the authors' `ReasoningTransferability/math_rl_48k`, `math_sft_40K`). Every query is
shown to the model in the prompt of the benchmark it is graded like: lab items as they are, other problems in
MATH-500's prompt, so that training and evaluation see the same instructions.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtransfer.benchmarks._math import EVALCHEMY_PROMPT
from rtransfer.errors import DataError
from rtransfer.jsonl import read_objects

LAB_MATH = ("lab_arith", "lab_lineq")
LAB_QUERIES_PER_TASK = 2000  # the lab's math train split: plenty for a few hundred steps, drawn once per seed
PROBLEM_FIELDS = ("problem", "question", "prompt", "query")
ANSWER_FIELDS = ("answer", "gold", "ground_truth", "solution_answer")


@dataclass(frozen=True)
class Query:
    id: str
    prompt: str  # the user message, as the model sees it
    answer: str  # the gold answer, as the math grader expects it
    item: Any = field(default=None, compare=False)  # the lab item (the lab teacher writes from it)


def load_queries(source: str | None, seed: int = 0, limit: int = 0) -> list[Query]:
    """Queries from `source`: None or "lab" (the lab's math train split), a local .jsonl/.json file, or a hub id."""
    if source in (None, "lab"):
        queries = lab_queries(seed)
    elif Path(source).suffix in (".jsonl", ".json") or Path(source).exists():
        queries = _from_rows(read_objects(Path(source)), source)
    else:
        queries = _from_rows(_hub_rows(source), source)
    if not queries:
        raise DataError(f"{source}: no training queries")
    return queries[:limit] if limit else queries


def lab_queries(seed: int = 0, per_task: int = LAB_QUERIES_PER_TASK) -> list[Query]:
    from rtransfer.lab.splits import training_items

    items = [(name, i, item) for name in LAB_MATH for i, item in enumerate(training_items(name, per_task, seed))]
    # Interleaved, so that any first n queries hold both tasks.
    items.sort(key=lambda t: (t[1], t[0]))
    return [Query(f"{name}/train/{i}", item.prompt, item.answer, item) for name, i, item in items]


def _hub_rows(name: str) -> list[tuple[int, dict[str, Any]]]:
    from rtransfer.benchmarks.hub import hub_rows

    return list(enumerate(hub_rows(name, "train"), start=1))


def _from_rows(rows: list[tuple[int, dict[str, Any]]], where: str) -> list[Query]:
    queries, seen = [], set()
    for number, row in rows:
        problem = next((row[f] for f in PROBLEM_FIELDS if isinstance(row.get(f), str) and row[f].strip()), None)
        answer = next((row[f] for f in ANSWER_FIELDS if row.get(f) not in (None, "")), None)
        if problem is None:
            raise DataError(f"{where}:{number}: no problem text (one of {', '.join(PROBLEM_FIELDS)})")
        if answer is None:
            raise DataError(f"{where}:{number}: the query has no answer (one of {', '.join(ANSWER_FIELDS)})")
        query_id = str(row.get("id", number))
        if query_id in seen:
            raise DataError(f"{where}:{number}: id {query_id!r} appears twice")
        seen.add(query_id)
        queries.append(Query(query_id, EVALCHEMY_PROMPT.format(problem=problem), str(answer)))
    return queries


def kept(grade: float, finish_reason: str) -> bool:
    """Rejection sampling's rule (teacher traces, on-policy samples): a correct answer that finished; one cut off
    at the token budget is never kept, even when its last box happens to hold the answer."""
    return grade == 1.0 and finish_reason == "stop"


@dataclass(frozen=True)
class Trace:
    query_id: str
    prompt: str  # the user message
    completion: str  # the accepted answer, thinking included


COMPLETION_FIELDS = ("completion", "response", "solution", "output", "generation")


def read_traces(source: str | Path) -> list[Trace]:
    """Accepted traces: `rtransfer train teacher` output or any JSONL of prompt/completion pairs, or a hub id.
    A row is a `messages` list (a user turn, then the assistant's), or a problem field and a completion field."""
    path = Path(source)
    rows = read_objects(path) if path.suffix in (".jsonl", ".json") or path.exists() else _hub_rows(str(source))
    traces = [_trace(row, f"{source}:{number}", number) for number, row in rows]
    if not traces:
        raise DataError(f"{source}: no traces")
    return traces


def _trace(row: dict[str, Any], where: str, number: int) -> Trace:
    messages = row.get("messages")
    if isinstance(messages, list) and len(messages) >= 2 and all(isinstance(m, dict) for m in messages):
        prompt, completion = messages[-2].get("content"), messages[-1].get("content")
    else:
        prompt = next((row[f] for f in PROBLEM_FIELDS if f in row), None)
        completion = next((row[f] for f in COMPLETION_FIELDS if f in row), None)
    for name, value, fields in (("prompt", prompt, PROBLEM_FIELDS), ("completion", completion, COMPLETION_FIELDS)):
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: no {name} text (a messages list, or one of {', '.join(fields)})")
    return Trace(str(row.get("query_id", row.get("id", number))), prompt, completion)


def data_hash(rows) -> str:
    """A short content hash of training data, for train.json."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
