"""The runner: benchmarks × one model → records → scores, resumable at any point.

For each benchmark: load the documents, skip every (doc, sample) already in the records, send the rest to the
engine (every pending generation in one call: the engine sorts and batches them and streams the answers back),
grade each answer in a pool as it arrives and append it to the records (grade_record is the one grading path:
`rtransfer grade` and `rtransfer regrade` use it too). Scores are computed from the records alone, so an
interrupted run, a resumed run and a re-graded run all score the same way.
"""

import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtransfer.benchmarks.base import Doc, Task
from rtransfer.benchmarks.registry import get_task, resolve_suite
from rtransfer.engines.base import Engine, SamplingParams
from rtransfer.engines.factory import make_engine
from rtransfer.errors import DataError, RunMismatchError
from rtransfer.records import Record, doc_grades, regrade
from rtransfer.runs import RunDir, new_manifest, versions, write_json_atomic
from rtransfer.transfer import percentile_interval

CI_REPLICATES = 1000
LOGLIK_CHUNK = 256  # documents per log-likelihood call: what a kill can lose, and plenty to batch


@dataclass
class Overrides:
    """Settings the user forces on every benchmark (None: the benchmark's own, as in the paper)."""

    samples: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None

    def apply(self, task: Task) -> tuple[int, SamplingParams]:
        s = task.settings
        params = SamplingParams(
            temperature=s.temperature if self.temperature is None else self.temperature,
            top_p=s.top_p if self.top_p is None else self.top_p,
            max_new_tokens=s.max_new_tokens if self.max_new_tokens is None else self.max_new_tokens,
            stop=s.stop,
        )
        return (s.samples if self.samples is None else self.samples), params


@dataclass
class EvalPlan:
    tasks: Sequence[Task]
    data_dir: Path | None = None
    limit: int | None = None
    seed: int = 0
    overrides: Overrides = field(default_factory=Overrides)
    # (doc, sample) pairs per engine call. None: every pending generation in one call, so the engine may sort and
    # batch all of them; it still streams (the HF engine a batch at a time, servers an answer at a time), and each
    # answer is written as it arrives. Log-likelihood engines answer a call at once: LOGLIK_CHUNK per call.
    chunk: int | None = None
    docs: dict[str, list[Doc]] = field(default_factory=dict)  # documents already loaded, by task name

    def load(self) -> "EvalPlan":
        """Load every task's documents now (a missing or malformed file fails before a model loads), once."""
        for task in self.tasks:
            if task.name not in self.docs:
                self.docs[task.name] = task.load(self.data_dir, self.seed)
        return self


def sample_seed(seed: int, benchmark: str, doc_id: str, sample: int) -> int:
    """A seed per (doc, sample) that does not depend on order, batch or limit."""
    digest = hashlib.sha256(f"{seed}:{benchmark}:{doc_id}:{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def benchmark_manifest(task: Task, plan: EvalPlan) -> dict[str, Any]:
    samples, params = plan.overrides.apply(task)
    entry = {"version": task.version, "grader_version": task.grader_version, "group": task.group, "kind": task.kind}
    if task.kind == "generate":
        entry.update(samples=samples, sampling=params.as_dict())
    return entry


def start_run(
    run: RunDir,
    engine: Engine,
    plan: EvalPlan,
    name: str | None = None,
    base: str | None = None,
    method: str | None = None,
) -> dict:
    info = engine.describe()
    manifest = new_manifest(
        info["model"],
        name=name,
        base=base,
        method=method,
        revision=info.get("revision"),
        chat_template=info.get("chat_template"),
        sampling={k: v for k, v in vars(plan.overrides).items() if v is not None},
        seed=plan.seed,
        engine=info.get("engine"),
        benchmarks={t.name: benchmark_manifest(t, plan) for t in plan.tasks},
    )
    manifest["engine_info"] = {k: v for k, v in info.items() if k != "chat_template"}
    # Where the documents came from, so that a later `rtransfer regrade` loads the same ones; what they and the
    # prompts were (hashes, as lm-eval records them), and the libraries the numbers depend on. Recorded, not
    # compared on resume: a run made before these fields existed still resumes.
    plan.load()
    manifest.update(
        data_dir=str(Path(plan.data_dir).resolve()) if plan.data_dir else None,
        limit=plan.limit,
        versions=versions(),
        provenance={t.name: content_hashes(t, plan.docs[t.name]) for t in plan.tasks},
    )
    return run.start(manifest)


def check_records_fit(run: RunDir, plan: EvalPlan) -> None:
    """Refuse a plan that asks for fewer documents than the run's records hold (another --limit, other data):
    scores.json would score the plan's documents while the records, which `rtransfer ti` reads, hold more, and
    the two would disagree. A larger --limit extends the run."""
    if not run.exists():
        return
    for task in plan.tasks:
        recorded = {r.doc_id for r in run.records(task.name)}
        if not recorded:
            continue
        wanted = {d.id for d in load_docs(task, plan)}
        extra = recorded - wanted
        if extra:
            raise RunMismatchError(
                f"{run.path}: {task.name}'s records hold {len(recorded)} documents, {len(extra)} of them outside the "
                f"{len(wanted)} asked for now (--limit {plan.limit}), so scores.json would disagree with them; use "
                f"the run's --limit ({run.manifest().get('limit') or 'none'}), a larger one, or another --out directory"
                if plan.limit
                else f"{run.path}: {task.name}'s records hold {len(extra)} documents that are not in its data here; "
                "use the --data-dir the run was made with, or another --out directory"
            )


def content_hashes(task: Task, docs: Sequence[Doc]) -> dict[str, str]:
    """Short hashes of a benchmark's loaded documents and of the prompts built from them (all of them, before
    --limit), so two runs can be checked to have seen the same items."""
    doc_hash, prompt_hash = hashlib.sha256(), hashlib.sha256()
    for doc in docs:
        doc_hash.update(json.dumps([doc.id, doc.data], sort_keys=True, default=str).encode())
        prompt = task.choices(doc) if task.kind == "loglik" else task.prompt(doc)
        prompt_hash.update(json.dumps(prompt, sort_keys=True, default=str).encode())
    return {"docs": doc_hash.hexdigest()[:16], "prompts": prompt_hash.hexdigest()[:16], "n": len(docs)}


def run_benchmark(
    engine: Engine, task: Task, run: RunDir, plan: EvalPlan, progress: Callable[[int, int], Any] | None = None
) -> dict[str, Any]:
    """Generate and grade whatever is missing from the records, then score. Returns the metrics."""
    docs = load_docs(task, plan)
    by_id = {d.id: d for d in docs}
    samples, params = plan.overrides.apply(task)
    if task.kind == "loglik":
        samples = 1
    with run.writer(task.name) as writer, grading_pool() as pool:
        pending = [(d, s) for d in docs for s in range(samples) if not writer.has(d.id, s)]
        done = len(docs) * samples - len(pending)
        if progress:
            progress(done, len(docs) * samples)
        # Answers are graded in a pool while the engine goes on (a slow grader, say LiveCodeBench's sandbox, must
        # not stall a server's requests), and written in the order they arrived, each once graded: a crash loses
        # only the answers in flight.
        queue: deque = deque()

        def write_graded(wait_all: bool) -> None:
            nonlocal done
            while queue and (wait_all or queue[0].done() or len(queue) > GRADING_BACKLOG):
                writer.write(queue.popleft().result())
                done += 1
                if progress:
                    progress(done, len(docs) * samples)

        step = plan.chunk or (LOGLIK_CHUNK if task.kind == "loglik" else max(1, len(pending)))
        for start in range(0, len(pending), step):
            batch = pending[start : start + step]
            try:
                for record in _answer(engine, task, batch, params, plan.seed):
                    queue.append(pool.submit(grade_record, task, by_id[record.doc_id], record))
                    write_graded(wait_all=False)
            finally:  # also when the engine fails mid-chunk: every answer received reaches the records
                write_graded(wait_all=True)
    return score(task, docs, run.records(task.name))


def load_docs(task: Task, plan: EvalPlan) -> list[Doc]:
    """The documents a run scores: all, or with --limit what the task takes as its first N (Task.limit)."""
    docs = plan.docs[task.name] if task.name in plan.docs else task.load(plan.data_dir, plan.seed)
    return task.limit(docs, plan.limit) if plan.limit else docs


# --- grading: the one path that eval, `rtransfer grade` and `rtransfer regrade` share ----------------------------
GRADING_BACKLOG = 256  # answers waiting for their grade before the runner waits for the oldest


@contextmanager
def grading_pool(workers: int | None = None) -> Iterator[ThreadPoolExecutor]:
    """Threads for the graders: the slow ones (math-verify, the code sandbox) work in child processes, so
    threads are enough to keep them all busy."""
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2, thread_name_prefix="grade") as pool:
        yield pool


def grade_record(task: Task, doc: Doc, record: Record) -> Record:
    """`record` graded by the task's grader: from its response, or for a log-likelihood task from the stored
    log-likelihoods of the choices. The grade, extracted answer, weight, details and grader version are replaced,
    and the gold and (log-likelihood) the choices are set here, so that a regrade fills them in old records too."""
    if task.kind == "loglik":
        g = task.grade_choices(doc, record.extra["logprobs"])
        record.choices = list(task.choices(doc)[1])
    else:
        g = task.grade(doc, record.response or "")
    record.extracted, record.grade, record.weight = g.extracted, float(g.score), float(g.weight)
    record.grading, record.grader_version = dict(g.extra), task.grader_version
    record.gold = task.gold(doc)
    return record


def _answer(engine: Engine, task: Task, batch, params: SamplingParams, seed: int) -> Iterator[Record]:
    """Ungraded records of the batch, as the engine's answers arrive."""
    if task.kind == "loglik":
        requests = [task.choices(doc) for doc, _ in batch]
        all_logprobs = engine.loglikelihood(requests)
        for (doc, _), request, logprobs in zip(batch, requests, all_logprobs, strict=True):
            yield Record(doc.id, 0, request[0], None, extra={"logprobs": logprobs})
        return
    prompts = [task.prompt(doc) for doc, _ in batch]
    seeds = [sample_seed(seed, task.name, doc.id, s) for doc, s in batch]
    # (index, generation) as each answer arrives: servers answer out of order.
    for i, gen in engine.generate_stream(prompts, params, seeds):
        (doc, s), prompt, seed_ = batch[i], prompts[i], seeds[i]
        extra = {"tokens": gen.tokens, "finish_reason": gen.finish_reason, "sampler_seed": gen.seed, **gen.extra}
        yield Record(doc.id, s, prompt, gen.text, seed=seed_, extra=extra)


def score(task: Task, docs: Sequence[Doc], records: Sequence[Record]) -> dict[str, Any]:
    """The task's metrics over the given documents, with a bootstrap CI of the primary score."""
    wanted = {d.id for d in docs}
    records = [r for r in records if r.doc_id in wanted]
    metrics = task.aggregate(docs, records)
    metrics["samples"] = max((r.sample for r in records), default=-1) + 1
    metrics["group"] = task.group
    if records:
        metrics["ci"] = bootstrap_ci(records)
    return metrics


def bootstrap_ci(records: Sequence[Record], replicates: int = CI_REPLICATES, level: float = 0.95, seed: int = 0):
    """Percentile CI (0–100) of the avg@k score, resampling documents with replacement. Documents are taken in
    the order of their ids (as transfer.resampled_scores does), not of the records file, which depends on which
    batch finished first: the same records give the same CI."""
    ids, values, weights = doc_grades(records)
    order = np.argsort(ids, kind="stable")
    values, weights = values[order], weights[order]
    rng = np.random.default_rng(seed)
    n, uniform = len(values), np.full(len(values), 1.0 / len(values))
    # Replicates in chunks of about 4 M counts: one (replicates × n) matrix is 240 MB for HaluEval's 30,000
    # documents. The generator draws row by row, so the chunks give the same replicates as one call.
    step = max(1, 2**22 // n)
    chunks = []
    for start in range(0, replicates, step):
        counts = rng.multinomial(n, uniform, size=min(step, replicates - start))
        chunks.append(100.0 * (counts @ (values * weights)) / (counts @ weights))
    ci = percentile_interval(np.concatenate(chunks), level)
    return list(ci) if ci else None


def evaluate(
    engine: Engine,
    plan: EvalPlan,
    run: RunDir,
    *,
    name: str | None = None,
    base: str | None = None,
    method: str | None = None,
    progress: Callable[[str], Callable[[int, int], Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every task of the plan into `run`; scores.json is rewritten after each benchmark."""
    check_records_fit(run, plan)
    start_run(run, engine, plan, name=name, base=base, method=method)
    results = {}
    for task in plan.tasks:
        results[task.name] = run_benchmark(engine, task, run, plan, progress(task.name) if progress else None)
        stored = run.scores().get("benchmarks", {})
        run.write_scores({"benchmarks": {**stored, **results}})
    return results


def evaluate_spec(
    spec,
    run_dir: Path,
    suite: str,
    *,
    data_dir: Path | None = None,
    limit: int | None = None,
    name: str | None = None,
    base: str | None = None,
    method: str | None = None,
    progress=None,
) -> dict[str, dict[str, Any]]:
    """The model an EngineSpec describes on a suite (or comma-separated benchmark names), into `run_dir`: the
    evaluation that training's checkpoints and the study share. Data is loaded before the model."""

    plan = EvalPlan([get_task(n) for n in resolve_suite(suite)], data_dir=data_dir, limit=limit).load()
    engine = make_engine(spec)
    return evaluate(engine, plan, RunDir(run_dir), name=name, base=base, method=method, progress=progress)


def regrade_run(run: RunDir, data_dir: Path | None = None, seed: int | None = None, workers: int | None = None):
    """Grade every benchmark of a run directory again from its stored responses (and log-likelihoods), with the
    graders installed now: records rewritten atomically, the manifest's grader versions and scores.json follow
    the records. `data_dir` and `seed` default to the run's own. Returns the metrics per benchmark."""

    manifest = run.manifest()
    if data_dir is None and manifest.get("data_dir"):
        data_dir = Path(manifest["data_dir"])
    if seed is None:
        seed = manifest.get("seed") or 0
    results = {}
    for name in run.benchmarks():
        task = get_task(name)
        by_id = {d.id: d for d in task.load(data_dir, seed)}
        unknown = next((r.doc_id for r in run.records(name) if r.doc_id not in by_id), None)
        if unknown is not None:
            raise DataError(f"{run.records_path(name)}: doc {unknown!r} is not in {name}'s documents here")

        def regraded(record: Record, task: Task = task, by_id: dict[str, Doc] = by_id) -> Record:
            return grade_record(task, by_id[record.doc_id], record)

        with grading_pool(workers) as pool:
            records = regrade(run.records_path(name), regraded, pool.map)
        graded = {r.doc_id for r in records}
        results[name] = score(task, [d for d in by_id.values() if d.id in graded], records)
        manifest = run.manifest()
        manifest.setdefault("benchmarks", {}).setdefault(name, {})["grader_version"] = task.grader_version
        write_json_atomic(run.manifest_path, manifest)
        stored = run.scores().get("benchmarks", {})
        run.write_scores({"benchmarks": {**stored, name: results[name]}})
    return results
