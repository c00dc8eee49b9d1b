"""Teacher traces by rejection sampling: K solutions per query from any engine, graded with the math grader; only
correct, finished ones are kept (the paper's off-policy SFT data).

Generation goes through the evaluation runner, so the teacher's answers are records in a run directory like an
eval's: resumable after a kill, re-gradable, with a manifest. The accepted traces are derived from those records
(rewritten at the end of every run), never kept as separate state.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtransfer.benchmarks.base import Doc, Grade, Messages, Settings, Task
from rtransfer.engines.base import AnswersInOrder, Generation, SamplingParams
from rtransfer.evaluate import EvalPlan, Overrides, run_benchmark, start_run
from rtransfer.grading.math import GRADER_VERSION, grade_math
from rtransfer.lab.teacher import teacher_solution
from rtransfer.runs import RunDir
from rtransfer.train.data import Query, kept

BENCHMARK = "train_queries"


class QueryTask(Task):
    """Training queries as a generation task graded like MATH-500 (math-verify against the gold answer)."""

    name = BENCHMARK
    group = "math"
    grader_version = GRADER_VERSION

    def __init__(self, queries: Sequence[Query], settings: Settings):
        self.queries = {q.id: q for q in queries}
        self.settings = settings  # type: ignore[misc]

    def load(self, data_dir: Path | None, seed: int = 0) -> list[Doc]:
        return [Doc(q.id, {"prompt": q.prompt, "answer": q.answer}) for q in self.queries.values()]

    def prompt(self, doc: Doc) -> Messages:
        return [{"role": "user", "content": doc.data["prompt"]}]

    def grade(self, doc: Doc, response: str) -> Grade:
        return grade_math(response, doc.data["answer"])

    def gold(self, doc: Doc) -> str:
        return doc.data["answer"]


class LabTeacher(AnswersInOrder):
    """The lab's programmatic teacher as an Engine: a correct solution in a foreign voice, drawn by the seed."""

    def __init__(self, queries: Sequence[Query], think: bool):
        self.items = {q.prompt: (q.id.split("/")[0], q.item) for q in queries if q.item is not None}
        self.think = think

    def generate(self, prompts: Sequence[Messages], params: SamplingParams, seeds: Sequence[int]) -> list[Generation]:

        out = []
        for messages, seed in zip(prompts, seeds, strict=True):
            benchmark, item = self.items[messages[-1]["content"]]
            text = teacher_solution(benchmark, item, think=self.think, seed=seed)
            out.append(Generation(text=text, tokens=len(text.split()), finish_reason="stop", seed=seed))
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError("the lab teacher only writes solutions")

    def describe(self) -> dict[str, Any]:
        return {"engine": "lab-teacher", "model": f"lab-teacher-{'think' if self.think else 'no-think'}"}


@dataclass
class TeacherResult:
    traces: Path
    accepted: int
    total: int
    by_source: dict[str, tuple[int, int]]  # source (id prefix) -> (accepted, total)


def run_teacher(
    engine,
    queries: Sequence[Query],
    out: Path,
    *,
    samples: int = 1,
    params: SamplingParams | None = None,
    seed: int = 0,
    progress: Callable[[int, int], Any] | None = None,
) -> TeacherResult:
    """Sample `samples` solutions per query into the run directory `<out>.run`, then write the accepted ones to
    `out` (JSON Lines: query_id, sample, prompt, completion)."""

    params = params or SamplingParams(temperature=0.0, max_new_tokens=4096)
    settings = Settings(
        samples=samples,
        temperature=params.temperature,
        top_p=params.top_p,
        max_new_tokens=params.max_new_tokens,
        stop=params.stop,
    )
    task = QueryTask(queries, settings)
    plan = EvalPlan([task], seed=seed, overrides=Overrides())
    run = RunDir(Path(str(out) + ".run"))
    start_run(run, engine, plan, name="teacher")
    run_benchmark(engine, task, run, plan, progress)
    # This call's queries and samples only: a run directory resumed with fewer keeps the others' records.
    records = [r for r in run.records(BENCHMARK) if r.doc_id in task.queries and r.sample < samples]
    accepted = [r for r in records if kept(r.grade, (r.extra or {}).get("finish_reason"))]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in accepted:
            row = {
                "query_id": r.doc_id,
                "sample": r.sample,
                "prompt": task.queries[r.doc_id].prompt,
                "completion": r.response,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)
    accepted_keys = {(r.doc_id, r.sample) for r in accepted}
    by_source: dict[str, list[int]] = {}
    for r in records:
        counts = by_source.setdefault(r.doc_id.split("/")[0] if "/" in r.doc_id else "queries", [0, 0])
        counts[0] += (r.doc_id, r.sample) in accepted_keys
        counts[1] += 1
    return TeacherResult(out, len(accepted), len(records), {k: (a, t) for k, (a, t) in by_source.items()})
