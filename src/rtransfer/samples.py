"""Looking at a run's answers (`rtransfer show`): which records to show, and how they read on a terminal.

Only the run directory's records are read: no documents, no data files, no hub. The gold is the record's own
(`Record.gold`, set by rtransfer.evaluate.grade_record). A record graded before records carried it says so and names
the command that fills it, `rtransfer regrade`, instead of loading the documents again: the gold shown must be the one
the answer was graded against, which documents loaded now need not give (another seed shuffles GPQA's options and
draws other HaluEval items, a variant has other documents, a data file changes), and a run directory must stay
readable on a machine without its data.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rtransfer.benchmarks.names import lookup
from rtransfer.errors import DataError, UnknownBenchmarkError
from rtransfer.grading.choice import argmax_first
from rtransfer.records import Record
from rtransfer.runs import RunDir

# Long texts show their head and their tail: a prompt ends with its question (after a story, few-shot examples or
# instructions), a response with its answer (after the reasoning).
PROMPT_CHARS = (200, 600)
RESPONSE_CHARS = (300, 1200)
INDENT = "    "


@dataclass
class Selection:
    """The records of one benchmark chosen for showing."""

    benchmark: str
    records: list[Record]  # those shown, samples of one document together, documents in the order answered
    total: int  # records of the benchmark in the run
    matching: int  # records that pass the filter (--wrong), of which `records` are the first
    wrong_only: bool
    run_dir: Path


def select(run_dir: str | Path, benchmarks: list[str] | None, wrong: bool, n: int) -> list[Selection]:
    """The first `n` records (0: all) of each benchmark of the run, or of `benchmarks` (any accepted spelling);
    with `wrong`, only records graded below 1 (ungraded ones are not wrong). One-line errors for a path that is no
    run directory and for a benchmark the run does not have."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise DataError(f"{run.path}: no such run directory")
    present = run.benchmarks()
    if not present:
        raise DataError(f"{run.path}: not a run directory (no records/*.jsonl)")
    chosen = present if not benchmarks else [_in_run(b, present, run.path) for b in benchmarks]
    return [_select_one(run, bench, wrong, n) for bench in dict.fromkeys(chosen)]


def _in_run(name: str, present: list[str], path: Path) -> str:
    known = lookup(name.partition(":")[0])  # a variant (gpqa_diamond:paper-order) records under its benchmark
    bench = known.name if known is not None and known.name in present else name
    if bench not in present:
        raise UnknownBenchmarkError(f"{path} has no records of {name!r} (it has: {', '.join(present)})")
    return bench


def _select_one(run: RunDir, bench: str, wrong: bool, n: int) -> Selection:
    records = run.records(bench)
    order = {doc_id: i for i, doc_id in enumerate(dict.fromkeys(r.doc_id for r in records))}
    records.sort(key=lambda r: (order[r.doc_id], r.sample))
    matching = [r for r in records if not wrong or (r.grade is not None and r.grade < 1)]
    shown = matching[:n] if n > 0 else matching
    return Selection(bench, shown, len(records), len(matching), wrong, run.path)


# --- text --------------------------------------------------------------------------------------------------------
def render(selections: list[Selection], full: bool = False) -> str:
    """Every selection as text: a heading per benchmark, then each record (see `format_record`)."""
    blocks = []
    for sel in selections:
        blocks.append(heading(sel))
        blocks.extend(format_record(sel.benchmark, r, full, sel.run_dir) for r in sel.records)
    return "\n\n".join(blocks)


def heading(sel: Selection) -> str:
    if sel.wrong_only:
        shown = f"{len(sel.records)} of {sel.matching}" if sel.matching else "no"
        return f"=== {sel.benchmark}: {shown} wrong records ({sel.total} in all) ==="
    return f"=== {sel.benchmark}: {len(sel.records)} of {sel.total} records ==="


def format_record(benchmark: str, record: Record, full: bool = False, run_dir: Path | None = None) -> str:
    """One record for reading: benchmark, document, sample and grade; the prompt (the last user message, its head
    and tail when long; `full`: every message whole); then the response, the extracted answer and the gold, or for
    a log-likelihood record each choice with its log-probability, the picked one and the gold one marked."""
    regrade = f"run rtransfer regrade {run_dir}" if run_dir else "run rtransfer regrade"
    lines = [f"--- {benchmark} · doc {record.doc_id} · sample {record.sample} · grade {_grade(record.grade)}"]
    lines += _prompt_lines(record.prompt, full)
    logprobs = record.extra.get("logprobs")
    loglik = record.response is None and isinstance(logprobs, list)
    if loglik:
        lines += _choice_lines(record, logprobs, regrade)  # the gold is marked among the choices
    else:
        lines.append("response:")
        lines.append(_indented(_shorten(record.response, RESPONSE_CHARS, full) if record.response else "(empty)"))
        lines.append(f"extracted: {_value(record.extracted)}")
    if record.gold is None:
        lines.append(f"gold: (not recorded; {regrade})")
    elif not loglik:
        lines.append(f"gold: {_value(record.gold)}")
    return "\n".join(lines)


def _grade(grade: float | None) -> str:
    return "(ungraded)" if grade is None else f"{grade:.3g}"


def _value(value: Any) -> str:
    """A one-line answer: text as it is (LaTeX stays readable), anything else (lists, objects, numbers) as JSON."""
    if value is None:
        return "(none)"
    if isinstance(value, str) and "\n" not in value and value.strip() == value and value:
        return value
    return json.dumps(value, ensure_ascii=False)


def _prompt_lines(prompt: Any, full: bool) -> list[str]:
    if prompt is None:
        return ["prompt: (not recorded)"]
    if isinstance(prompt, str):
        return ["prompt:", _indented(_shorten(prompt, PROMPT_CHARS, full))]
    messages = [m for m in prompt if isinstance(m, dict)]
    if not messages:
        return [f"prompt: {_value(prompt)}"]
    if full:
        return [line for m in messages for line in (f"prompt [{m.get('role')}]:", _indented(str(m.get("content"))))]
    users = [m for m in messages if m.get("role") == "user"]
    last = users[-1] if users else messages[-1]
    label = "prompt:" if len(messages) == 1 else f"prompt (the last user message of {len(messages)}; --full: all):"
    return [label, _indented(_shorten(str(last.get("content")), PROMPT_CHARS, full))]


def _shorten(text: str, keep: tuple[int, int], full: bool) -> str:
    head, tail = keep
    if full or len(text) <= head + tail:
        return text
    cut = len(text) - head - tail
    return f"{text[:head]}\n… [{cut} characters cut; --full shows all] …\n{text[-tail:]}"


def _indented(text: str) -> str:
    return "\n".join(INDENT + line if line.strip() else "" for line in text.split("\n"))


def _choice_lines(record: Record, logprobs: list[float], regrade: str) -> list[str]:
    picked = record.extracted if isinstance(record.extracted, int) else argmax_first(logprobs)  # ungraded: argmax
    choices = record.choices if record.choices and len(record.choices) == len(logprobs) else None
    lines = ["choices (log-probability, continuation):" if choices else f"choices (texts not recorded; {regrade}):"]
    for i, lp in enumerate(logprobs):
        text = json.dumps(choices[i], ensure_ascii=False) if choices else ""
        marks = [m for m, yes in (("picked", i == picked), ("gold", i == record.gold)) if yes]
        line = f"{INDENT}[{i}] {lp:10.4f}  {text}".rstrip()
        lines.append(line + (f"   <- {', '.join(marks)}" if marks else ""))
    return lines


# --- JSON --------------------------------------------------------------------------------------------------------
def as_json(selections: list[Selection]) -> list[dict[str, Any]]:
    """The selected records as stored, each with its benchmark."""
    return [{"benchmark": sel.benchmark, **asdict(r)} for sel in selections for r in sel.records]
