"""`rtransfer grade`: grade responses produced elsewhere against a benchmark's answers.

Each line of RESPONSES.jsonl: {"doc_id": ..., "response": "..."} or {"doc_id": ..., "responses": [...]} (k
samples: the score is avg@k). doc_id is the benchmark's own id (see the README's table).
"""

import argparse
import json
import sys
from pathlib import Path

from rtransfer.errors import DataError
from rtransfer.jsonl import read_objects


def register(sub) -> None:
    p = sub.add_parser(
        "grade",
        help="grade responses produced elsewhere",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("benchmark")
    p.add_argument("responses", type=Path, help="JSONL: doc_id and response (or responses)")
    p.add_argument("--data-dir", type=Path, help="local data in the layout of shared/benchmarks (default: the hub)")
    p.add_argument("--seed", type=int, default=0, help="the seed the prompts were built with (GPQA's shuffling)")
    p.add_argument("--json", action="store_true", help="print the score as JSON")
    p.add_argument("--out", type=Path, help="write one JSON line per (doc_id, sample): extracted answer and grade")
    p.set_defaults(run=run)


def read_responses(path: Path, known: set[str]) -> list[tuple[str, int, str]]:
    """(doc_id, sample, response) for every response in the file, with one-line errors naming the line."""
    out, seen = [], set()
    for number, item in read_objects(path, ("doc_id",)):
        doc_id = str(item["doc_id"])
        if doc_id not in known:
            raise DataError(f"{path}:{number}: unknown doc_id {doc_id!r} for this benchmark")
        if doc_id in seen:
            raise DataError(f"{path}:{number}: doc_id {doc_id!r} appears twice")
        seen.add(doc_id)
        responses = item.get("responses", [item["response"]] if "response" in item else None)
        if not isinstance(responses, list) or not responses or not all(isinstance(r, str) for r in responses):
            raise DataError(f"{path}:{number}: 'response' must be a string or 'responses' a list of strings")
        out.extend((doc_id, s, r) for s, r in enumerate(responses))
    return out


def run(args) -> int:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.benchmarks.registry import get_task
    from rtransfer.evaluate import grade_record, grading_pool, score
    from rtransfer.records import Record

    task = get_task(args.benchmark)
    if task.kind != "generate":
        raise DataError(f"{task.name} is scored by log-likelihood, not from text; use rtransfer eval")
    docs = {d.id: d for d in task.load(args.data_dir, args.seed)}
    responses = read_responses(args.responses, set(docs))
    ungraded = [Record(doc_id=d, sample=s, prompt=None, response=r) for d, s, r in responses]
    with grading_pool() as pool:
        records = list(pool.map(lambda r: grade_record(task, docs[r.doc_id], r), ungraded))
    graded_docs = [docs[d] for d in dict.fromkeys(d for d, _, _ in responses)]
    metrics = score(task, graded_docs, records)
    if len(graded_docs) < len(docs):
        print(f"rtransfer: note: graded {len(graded_docs)} of the {len(docs)} {task.name} documents", file=sys.stderr)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for r in records:
                f.write(
                    json.dumps(
                        {
                            "doc_id": r.doc_id,
                            "sample": r.sample,
                            "extracted": r.extracted,
                            "grade": r.grade,
                            **({"grading": r.grading} if r.grading else {}),
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.commands.eval import print_scores

    if args.json:
        ci = metrics.pop("ci", [None, None])
        print(json.dumps({"benchmark": task.name, **metrics, "ci_low": ci[0], "ci_high": ci[1]}, ensure_ascii=False))
    else:
        print_scores({task.name: metrics}, False, title=f"{task.name} — {args.responses}")
    return 0
