"""Training data: math queries (problem + gold answer) and teacher traces (prompt + completion).

Queries come from the lab's math train split (never a test item), a local JSON Lines file of problem/answer pairs,
or a Hugging Face dataset id (the authors' `ReasoningTransferability/math_rl_48k`, `math_sft_40K`). Every query is
shown to the model in the prompt of the benchmark it is graded like: lab items as they are, other problems in
MATH-500's prompt, so that training and evaluation see the same instructions.

Why the column mapping is written here: the datasets we read do not agree on a schema. math_rl_48k has `question`
and `golden_answer` (a full solution ending in `#### 18`, or a `\\boxed{18}`); verl rows have a chat-message
`prompt` and a nested `reward_model.ground_truth`; math_sft_40K has a think and a no-think completion column side by
side; ShareGPT files have `conversations`. The columns are chosen once per dataset, from its first row, and
recorded in the result's `.info`, so that train.json says which were used. `SOURCE#COLUMN` picks the completion
column of traces (the gold-answer column of queries) when a dataset has several.
"""

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtransfer import online
from rtransfer.benchmarks._math import EVALCHEMY_PROMPT, last_boxed
from rtransfer.benchmarks.hub import hub_rows
from rtransfer.errors import DataError
from rtransfer.jsonl import read_objects
from rtransfer.lab.splits import training_items

LAB_MATH = ("lab_arith", "lab_lineq")
LAB_QUERIES_PER_TASK = 2000  # the lab's math train split: plenty for a few hundred steps, drawn once per seed
PROBLEM_FIELDS = ("problem", "question", "prompt", "query")
ANSWER_FIELDS = ("answer", "gold", "golden_answer", "ground_truth", "solution_answer", "reward_model.ground_truth")
COMPLETION_FIELDS = (
    "completion",
    "response",
    "solution",
    "output",
    "generation",
    "target",
    "think_response",
    "thinking_response",
    "no_think_response",
    "nothink_response",
    "non_think_response",
)
CHAT_FIELDS = ("messages", "conversations")  # OpenAI-style {"role", "content"} or ShareGPT {"from", "value"}
USER_ROLES = ("user", "human")
ASSISTANT_ROLES = ("assistant", "gpt", "model")
EXAMPLE_SOURCE = "ReasoningTransferability/math_sft_40K#no_think_response"
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


class DataRows(list):
    """Queries or traces, and where they came from (`info`, for train.json): `source`, `columns` (role → column
    used, e.g. {"problem": "question", "answer": "golden_answer"}; None for the lab), `rows` (rows read), `kept`
    (after `limit`), `sampled` (the seed of the sample kept, None when every row is kept or the lab's first N are),
    `revision` (the hub dataset's commit; None for local files and the lab, and when it cannot be known, which
    `note` then says)."""

    def __init__(self, items=(), info: dict[str, Any] | None = None):
        super().__init__(items)
        self.info = dict(info or {})


@dataclass(frozen=True)
class Query:
    id: str
    prompt: str  # the user message, as the model sees it
    answer: str  # the gold answer, as the math grader expects it
    item: Any = field(default=None, compare=False)  # the lab item (the lab teacher writes from it)


def load_queries(source: str | None, seed: int = 0, limit: int = 0) -> DataRows:
    """Queries from `source`: None or "lab" (the lab's math train split), a local .jsonl/.json file, or a hub id,
    optionally as `SOURCE#COLUMN` to name the gold-answer column. `limit` keeps the lab's first `limit` queries (a
    seeded draw already), and a sample of `limit` rows drawn with `seed` (in file order) from a file or the hub."""
    if source in (None, "lab"):
        queries = lab_queries(seed)
        kept = queries[:limit] if limit else queries
        info = {"source": "lab", "columns": None, "rows": len(queries), "kept": len(kept), "sampled": None}
        return DataRows(kept, {**info, "revision": None})
    name, column = split_source(source)
    rows, info = _rows(name)
    columns = _query_columns(rows[0][1], f"{name}:{rows[0][0]}", column)
    queries, sampled = _sample(_queries(rows, columns, name), seed, limit)
    info.update(source=source, columns=columns, rows=len(rows), kept=len(queries), sampled=sampled)
    return DataRows(queries, info)


def _sample(items: list, seed: int, limit: int) -> tuple[list, int | None]:
    """`limit` items drawn with `seed`, in their file order (a file or hub split may be sorted by source, so its
    first rows are no sample), and the seed; all of them and None when `limit` is 0 or covers them."""
    if not 0 < limit < len(items):
        return items, None
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), limit))], seed


def lab_queries(seed: int = 0, per_task: int = LAB_QUERIES_PER_TASK) -> list[Query]:

    items = [(name, i, item) for name in LAB_MATH for i, item in enumerate(training_items(name, per_task, seed))]
    # Interleaved, so that any first n queries hold both tasks.
    items.sort(key=lambda t: (t[1], t[0]))
    return [Query(f"{name}/train/{i}", item.prompt, item.answer, item) for name, i, item in items]


def gold_answer(text: str) -> str:
    """The final answer in a gold field, as math-verify grades it: the tail after the last `####` (GSM8K style;
    thousands separators dropped from a plain number), else the last `\\boxed{...}`, else the text, stripped."""
    text = str(text).strip()
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip()
        if tail:
            return tail.replace(",", "") if _THOUSANDS.fullmatch(tail) else tail
    boxed = last_boxed(text)
    return boxed if boxed else text


def split_source(source: str) -> tuple[str, str | None]:
    """`SOURCE#COLUMN` as (SOURCE, COLUMN); (source, None) without a `#`, or when the whole of it is a local path."""
    if "#" not in source or Path(source).exists():
        return source, None
    name, _, column = source.rpartition("#")
    if not name or not column.strip():
        raise DataError(f"{source}: expected SOURCE#COLUMN, e.g. {EXAMPLE_SOURCE}")
    return name, column.strip()


def is_local(name: str) -> bool:
    """Whether a source (without its #COLUMN) is a local file rather than a hub id."""
    return Path(name).suffix in (".jsonl", ".json") or Path(name).exists()


def _rows(name: str) -> tuple[list[tuple[int, dict[str, Any]]], dict[str, Any]]:
    """The numbered rows of a local file or a hub dataset, and the dataset's revision (None for a local file)."""
    if is_local(name):
        return read_objects(Path(name)), {"revision": None}
    rows, revision = _hub_rows(name)
    if not rows:
        raise DataError(f"{name}: no records")
    info: dict[str, Any] = {"revision": revision}
    if revision is None:
        info["note"] = f"the revision of {name} is unknown (the hub cannot be asked, and the local cache holds none)"
    return rows, info


def _hub_rows(name: str) -> tuple[list[tuple[int, dict[str, Any]]], str | None]:
    """A hub dataset's train split as numbered rows, and its commit (tests replace this function: no download)."""

    rows = list(enumerate(hub_rows(name, "train"), start=1))
    return rows, hub_revision(name)


def hub_revision(name: str, kind: str = "dataset") -> str | None:
    """The commit of a hub dataset (or, kind "model", a model): the hub's answer when it can be reached, else the
    one commit the local caches hold (huggingface_hub's ref or snapshot, the datasets cache's folder); None when
    neither knows, never an error."""
    if online.hub_offline() is None:
        try:
            from huggingface_hub import HfApi

            api = HfApi()
            info = api.dataset_info if kind == "dataset" else api.model_info
            return info(name, timeout=10).sha
        except Exception:  # the revision is provenance: its absence must not stop training
            pass
    return cached_revision(name, kind)


def cached_revision(name: str, kind: str = "dataset") -> str | None:
    from datasets import config
    from huggingface_hub import constants

    hub = Path(constants.HF_HUB_CACHE) / f"{kind}s--{name.replace('/', '--')}"
    try:
        return (hub / "refs" / "main").read_text().strip() or None
    except OSError:
        pass
    prepared = (Path(config.HF_DATASETS_CACHE), f"{name.replace('/', '___')}/*/*/*")  # <config>/<version>/<commit>
    for folder, pattern in ((hub / "snapshots", "*"), *([prepared] if kind == "dataset" else [])):
        commits = {p.name for p in folder.glob(pattern) if re.fullmatch(r"[0-9a-f]{40}", p.name)}
        if len(commits) == 1:
            return commits.pop()
    return None


def _get(row: dict[str, Any], column: str) -> Any:
    """A row's value at `column`; a dotted name reaches into nested dicts (`reward_model.ground_truth`)."""
    if column in row:
        return row[column]
    value: Any = row
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _present(row: dict[str, Any], column: str) -> bool:
    return _get(row, column) not in (None, "", [], {})


def _missing(row: dict[str, Any], where: str, role: str, fields: tuple[str, ...], chats: bool) -> DataError:
    found, expected = ", ".join(row) or "none", ", ".join(fields)
    lists = " (or a messages or conversations list)" if chats else ""
    return DataError(f"{where}: cannot find the {role}: columns are {found}; expected one of {expected}{lists}")


def _chat_column(row: dict[str, Any]) -> str | None:
    return next((c for c in CHAT_FIELDS if isinstance(row.get(c), list) and row[c]), None)


def _query_columns(row: dict[str, Any], where: str, answer: str | None) -> dict[str, str]:
    """Which column holds the problem and which the gold answer, from a dataset's first row."""
    problem = next((c for c in PROBLEM_FIELDS if _present(row, c)), None) or _chat_column(row)
    if problem is None:
        raise _missing(row, where, "problem", PROBLEM_FIELDS, chats=True)
    if answer is None:
        answer = next((c for c in ANSWER_FIELDS if _present(row, c)), None)
        if answer is None:
            raise _missing(row, where, "answer", ANSWER_FIELDS, chats=False)
    elif not _present(row, answer):
        raise DataError(f"{where}: no column {answer!r}: columns are {', '.join(row)}")
    return {"problem": problem, "answer": answer}


def _queries(rows: list[tuple[int, dict[str, Any]]], columns: dict[str, str], name: str) -> list[Query]:
    queries, seen = [], set()
    for number, row in rows:
        where = f"{name}:{number}"
        problem = _text_or_user_turn(_get(row, columns["problem"]), where, columns["problem"])
        if not problem:
            raise DataError(f"{where}: no problem text (column {columns['problem']} is empty)")
        answer = _get(row, columns["answer"])
        answer = gold_answer(answer) if answer not in (None, "") else ""
        if not answer:
            raise DataError(f"{where}: the query has no answer (column {columns['answer']} is empty)")
        query_id = str(row.get("id", number))
        if query_id in seen:
            raise DataError(f"{where}: id {query_id!r} appears twice")
        seen.add(query_id)
        queries.append(Query(query_id, EVALCHEMY_PROMPT.format(problem=problem), answer))
    return queries


def _text_or_user_turn(value: Any, where: str, column: str) -> str:
    """A problem: a string, or the last user message of a chat list (verl's `prompt`, a `messages` list)."""
    if isinstance(value, list):
        users = [text for role, text in _turns(value, where, column) if role in USER_ROLES]
        value = users[-1] if users else ""
    return value.strip() if isinstance(value, str) else ""


def _turns(chat: list, where: str, column: str) -> list[tuple[str, str]]:
    """A chat list as (role, text) pairs, from {"role", "content"} or ShareGPT {"from", "value"} messages."""
    turns = []
    for message in chat:
        if not isinstance(message, dict):
            raise DataError(f"{where}: {column} holds a {type(message).__name__}, not a message object")
        role, text = message.get("role", message.get("from")), message.get("content", message.get("value"))
        turns.append((str(role).lower(), text if isinstance(text, str) else ""))
    return turns


def kept(grade: float, finish_reason: str) -> bool:
    """Rejection sampling's rule (teacher traces, on-policy samples): a correct answer that finished; one cut off
    at the token budget is never kept, even when its last box happens to hold the answer."""
    return grade == 1.0 and finish_reason == "stop"


@dataclass(frozen=True)
class Trace:
    query_id: str
    prompt: str  # the user message
    completion: str  # the accepted answer, thinking included


def read_traces(source: str | Path, seed: int = 0, limit: int = 0) -> DataRows:
    """Accepted traces: `rtransfer train teacher` output or any JSONL of prompt/completion pairs, or a hub id,
    optionally as `SOURCE#COLUMN` to name the completion column. A row is a `messages` or ShareGPT
    `conversations` list (a user turn, then the assistant's), or a problem column and a completion column.
    `limit` keeps a sample of that many traces drawn with `seed`, in file order (0: all)."""
    name, column = split_source(str(source))
    rows, info = _rows(name)
    columns = _trace_columns(rows[0][1], f"{name}:{rows[0][0]}", name, column)
    traces, sampled = _sample([_trace(row, columns, f"{name}:{number}", number) for number, row in rows], seed, limit)
    info.update(source=str(source), columns=columns, rows=len(rows), kept=len(traces), sampled=sampled)
    return DataRows(traces, info)


def _trace_columns(row: dict[str, Any], where: str, name: str, completion: str | None) -> dict[str, str]:
    """A chat column, or the prompt and completion columns, from a dataset's first row."""
    chat = _chat_column(row)
    if completion is None and chat is not None:
        return {"chat": chat}
    prompt = next((c for c in PROBLEM_FIELDS if _present(row, c)), None)
    if prompt is None:
        raise _missing(row, where, "prompt", PROBLEM_FIELDS, chats=True)
    if completion is not None:
        if not _present(row, completion):
            raise DataError(f"{where}: no column {completion!r}: columns are {', '.join(row)}")
        return {"prompt": prompt, "completion": completion}
    found = [c for c in COMPLETION_FIELDS if _present(row, c)]
    if not found:
        raise _missing(row, where, "completion", COMPLETION_FIELDS, chats=True)
    if len(found) > 1:
        raise DataError(
            f"{where}: several completion columns ({', '.join(found)}); choose one with {name}#COLUMN, "
            f"e.g. {name}#{found[0]}"
        )
    return {"prompt": prompt, "completion": found[0]}


def _trace(row: dict[str, Any], columns: dict[str, str], where: str, number: int) -> Trace:
    query_id = str(row.get("query_id", row.get("id", number)))
    if "chat" in columns:
        return Trace(query_id, *_chat_trace(row.get(columns["chat"]), where, columns["chat"]))
    prompt = _text_or_user_turn(_get(row, columns["prompt"]), where, columns["prompt"])
    completion = _get(row, columns["completion"])
    for role, value in (("prompt", prompt), ("completion", completion)):
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: no {role} text (column {columns[role]} is empty)")
    return Trace(query_id, prompt, completion)


def _chat_trace(chat: Any, where: str, column: str) -> tuple[str, str]:
    """(prompt, completion) of a chat: its last message, the assistant's, and the user message before it."""
    turns = _turns(chat, where, column) if isinstance(chat, list) else []
    if not turns or turns[-1][0] not in ASSISTANT_ROLES or not turns[-1][1].strip():
        raise DataError(f"{where}: no completion text (the last message of {column} is not an assistant's answer)")
    users = [text for role, text in turns[:-1] if role in USER_ROLES]
    if not users or not users[-1].strip():
        raise DataError(f"{where}: no prompt text (no user message before the answer in {column})")
    return users[-1], turns[-1][1]


def data_record(rows, what: str) -> dict[str, Any]:
    """What train.json says of training data: how many `what` (queries, traces), their hash, and the `.info`
    of a DataRows (source, columns, revision)."""
    return {what: len(rows), "hash": data_hash(r.__dict__ for r in rows), **getattr(rows, "info", {})}


def data_hash(rows) -> str:
    """A short content hash of training data, for train.json."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
