"""rtransfer's runner against lm-evaluation-harness's `hf` backend on the same model, prompts and settings.

    python bench/vs_lmeval.py [--setup] [--model DIR] [--batch-size 16] [--repeats 3] [--phases lab,math500,loglik]

Phases (the lab base by default, fp32, greedy, on this machine's CPU):
  lab      the lab suite's 7 × 200 prompts, max 160 new tokens (lm-eval gets them in one call, as its evaluator
           sends every task's requests of a type together)
  math500  MATH-500's first 192 prompts, greedy, max 128 new tokens
  loglik   HEAD-QA + MC-TACO, 192 documents each (1,152 continuations)

rtransfer's time is its runner (`rtransfer eval` without start-up): engine, grading, records on disk. lm-eval's
is one `generate_until` / `loglikelihood` call, nothing graded. Both load the model first and warm up on 16
requests, and run one after the other, never together. Each phase runs --repeats rounds; a round is one run of
each tool back to back, who goes first alternating, and its ratio is lm-eval's seconds over rtransfer's. This
machine's speed drifts by ±20 % over minutes and its intra-op threading by more, so only ratios of neighbouring
runs are compared; the median round is printed with the spread. lm-eval runs with each of --lmeval-threads (1 and
--threads by default; its own default is every core) and its faster run of the round counts: on 2 cores one
thread is sometimes the faster. rtransfer decodes as its engine chooses on this machine: one batch on --threads
threads, or two at once sharing them (`HFEngine.parallel_batches`, measured once per machine and cached:
engines/calibration.py; measured before the first round).
Prints per phase the seconds, tokens/s (documents/s for log-likelihood), the ratio and the agreement of answers
(text) and choices (argmax) with every lm-eval run. lm-eval moves a context's trailing whitespace into the
continuation (here the chat template's final newline), so its log-probabilities include that token's: the same
offset for every choice of a document. The log-probability gap is therefore printed after removing each
document's mean offset.

lm-eval runs in its own venv (`--setup` makes bench/.venv-lmeval: torch 2.13.0 from this disk, lm-eval 0.4.13 and
this venv's transformers from PyPI); it is never a dependency of rtransfer.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

import torch

from rtransfer.benchmarks.registry import get_task, resolve_suite
from rtransfer.engines.hf import HFEngine
from rtransfer.evaluate import EvalPlan, Overrides, evaluate, load_docs
from rtransfer.runs import RunDir

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-lmeval"
LMEVAL = "lm-eval[hf]==0.4.13"
SHARED = HERE.parent.parent / "shared" / "benchmarks"
PHASES = {
    "lab": (resolve_suite("lab"), None, Overrides()),
    "math500": (["math500"], 192, Overrides(samples=1, temperature=0.0, top_p=1.0, max_new_tokens=128)),
    "loglik": (["headqa", "mctaco"], 192, Overrides()),
}


def setup() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)  # first, alone: pip finds this exact CPU wheel on disk
    subprocess.run([*pip, LMEVAL, f"transformers=={version('transformers')}"], check=True)


def lmeval_requests(engine: HFEngine, plan: EvalPlan) -> tuple[str, list]:
    """The phase's requests as lm-eval takes them: the prompts rtransfer renders, the same budgets and stops."""
    requests = []
    for task in plan.tasks:
        docs = load_docs(task, plan)
        if task.kind == "loglik":
            for context, choices in map(task.choices, docs):
                rendered = engine.render(context)
                requests += [[rendered, c.removeprefix(" ") if engine.chat else c] for c in choices]
        else:
            _, params = plan.overrides.apply(task)
            kwargs = {"until": list(params.stop), "max_gen_toks": params.max_new_tokens, "do_sample": False}
            requests += [[engine.render(task.prompt(d)), kwargs] for d in docs]
    return ("loglik" if plan.tasks[0].kind == "loglik" else "generate"), requests


def rtransfer_run(engine: HFEngine, plan: EvalPlan) -> tuple[float, list]:
    """Seconds of one run of the runner over the phase's benchmarks (a fresh run directory), and its outputs in
    lm-eval's request order."""
    outputs = []
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "run")
        start = time.perf_counter()
        evaluate(engine, plan, run)
        seconds = time.perf_counter() - start
        for task in plan.tasks:
            by_id = {r.doc_id: r for r in run.records(task.name)}
            for doc in load_docs(task, plan):
                record = by_id[doc.id]
                outputs += record.extra["logprobs"] if task.kind == "loglik" else [(record.response, record.extra)]
    return seconds, outputs


class LmEval:
    """lm-eval's `hf` backend in its own venv and process, the model loaded once, each phase run on request."""

    def __init__(self, spec: dict, tmp: str):
        Path(tmp, "requests.json").write_text(json.dumps(spec))
        worker = [str(VENV / "bin" / "python"), str(HERE / "lmeval_worker.py"), f"{tmp}/requests.json"]
        self.process = subprocess.Popen(worker, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.versions = self._reply()["versions"]

    def run(self, phase: str, threads: int) -> tuple[float, list]:
        self.process.stdin.write(json.dumps({"phase": phase, "threads": threads}) + "\n")
        self.process.stdin.flush()
        reply = self._reply()
        return reply["seconds"], reply["outputs"]

    def _reply(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("RESULT "):
                return json.loads(line.removeprefix("RESULT "))
        raise SystemExit(f"lm-eval's worker ended (exit {self.process.wait()})")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def agreement(plan: EvalPlan, ours: list, theirs: list) -> tuple[str, str]:
    """(agreement line, throughput unit count): answers identical, or choices (argmax per document) identical."""
    if plan.tasks[0].kind != "loglik":
        same = sum(text == other for (text, _), other in zip(ours, theirs, strict=True))
        return f"answers identical {same}/{len(ours)}", str(sum(extra["tokens"] for _, extra in ours))
    same = docs = at = 0
    gap = 0.0
    for task in plan.tasks:
        for doc in load_docs(task, plan):
            n = len(task.choices(doc)[1])
            a, b = ours[at : at + n], theirs[at : at + n]
            same += a.index(max(a)) == b.index(max(b))
            offset = sum(y - x for x, y in zip(a, b, strict=True)) / n
            gap = max(gap, *(abs(y - x - offset) for x, y in zip(a, b, strict=True)))
            docs, at = docs + 1, at + n
    return f"choices identical {same}/{docs} (max |Δ log p| {gap:.1e} after each document's offset)", str(docs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setup", action="store_true", help=f"create {VENV.name} with {LMEVAL} first")
    ap.add_argument("--model", default=str(files("rtransfer") / "data" / "lab" / "base"))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lmeval-batch-size", help="lm-eval's batch size, e.g. auto (default: --batch-size)")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--repeats", type=int, default=3, help="rounds per phase, each one timed run of each tool")
    ap.add_argument("--data-dir", type=Path, default=SHARED)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument(
        "--lmeval-threads",
        type=lambda text: sorted({int(t) for t in text.split(",")}),
        help="torch thread counts lm-eval runs with each round, its fastest counting (default: 1 and --threads)",
    )
    args = ap.parse_args()
    args.lmeval_threads = args.lmeval_threads or sorted({1, args.threads})
    if args.setup or not (VENV / "bin" / "python").exists():
        setup()
    torch.set_num_threads(args.threads)
    names = args.phases.split(",")
    engine = HFEngine.load(args.model, batch_size=args.batch_size, dtype="float32", device="cpu")
    engine._parallel_batches()  # the machine's calibration (engines/calibration.py) now, outside every timed run
    plans = {}
    for name in names:
        tasks, limit, overrides = PHASES[name]
        plans[name] = EvalPlan([get_task(t) for t in tasks], data_dir=args.data_dir, limit=limit, overrides=overrides)
        plans[name].load()

    with tempfile.TemporaryDirectory() as tmp:
        phases = []
        for name in names:
            kind, requests = lmeval_requests(engine, plans[name])
            phases.append({"name": name, "kind": kind, "requests": requests})
        lmeval = LmEval(
            {"model": args.model, "batch_size": args.lmeval_batch_size or args.batch_size, "phases": phases}, tmp
        )
        try:
            results = {name: measure(engine, plans[name], lmeval, name, args) for name in names}
        finally:
            lmeval.close()

    print(
        f"model {args.model}, fp32, CPU, torch threads {args.threads} "
        f"(rtransfer: {engine._parallel_batches()} parallel batches), "
        f"batch {args.batch_size} (lm-eval {args.lmeval_batch_size or args.batch_size}, its faster of "
        f"{'/'.join(map(str, args.lmeval_threads))} threads each round); rtransfer {version('rtransfer')}, "
        f"lm-eval {lmeval.versions['lm_eval']}; {args.repeats} rounds, the tools alternating"
    )
    print(f"{'phase':8} {'rtransfer s':>11} {'lm-eval s':>9} {'units':>7} {'ours/s':>8} {'theirs/s':>8} {'ratio':>6}")
    for name in names:
        ours, theirs, ratios, by_threads, line, n = results[name]
        mine, their = statistics.median(ours), statistics.median(theirs)
        print(
            f"{name:8} {mine:11.2f} {their:9.2f} {n:7d} {n / mine:8.1f} {n / their:8.1f} "
            f"{statistics.median(ratios):5.2f}x  {line}"
        )
        spread = f"ratio {min(ratios):.2f}–{max(ratios):.2f}"
        print(f"{'':8} rounds: rtransfer {_runs(ours)}; lm-eval {_runs(theirs)}; {spread}")
        print(f"{'':8} lm-eval by threads: " + "; ".join(f"{t}: {_runs(s)}" for t, s in by_threads.items()))
    print(
        "seconds: medians over rounds; units: generated tokens (generation) or documents (loglik); ratio: the median "
        "over rounds of lm-eval's seconds / rtransfer's, each round's two runs back to back"
    )


def measure(engine: HFEngine, plan: EvalPlan, lmeval: LmEval, name: str, args) -> tuple:
    """Both tools on one phase, round by round (who goes first alternates, so the machine's drift falls on both):
    rtransfer's seconds per round, lm-eval's (its fastest thread count's) per round, the rounds' ratios,
    lm-eval's seconds per thread count, the agreement line (one per lm-eval thread count where they differ) and
    the unit count."""
    rtransfer_run(engine, EvalPlan(plan.tasks[:1], limit=16, overrides=plan.overrides, docs=plan.docs))  # warm-up
    ours, outputs, by_threads = [], {}, {t: [] for t in args.lmeval_threads}

    def run_ours() -> None:
        seconds, outputs["rtransfer"] = rtransfer_run(engine, plan)
        ours.append(seconds)

    def run_theirs() -> None:
        for threads in args.lmeval_threads:
            seconds, outputs[threads] = lmeval.run(name, threads)
            by_threads[threads].append(seconds)

    for round_ in range(args.repeats):
        for run in (run_ours, run_theirs)[:: 1 if round_ % 2 == 0 else -1]:
            run()
    theirs = [min(each) for each in zip(*by_threads.values(), strict=True)]
    agree = {t: agreement(plan, outputs["rtransfer"], outputs[t]) for t in args.lmeval_threads}
    lines = {line for line, _ in agree.values()}
    line = lines.pop() if len(lines) == 1 else "; ".join(f"{t} threads: {a[0]}" for t, a in agree.items())
    ratios = [t / o for o, t in zip(ours, theirs, strict=True)]
    return ours, theirs, ratios, by_threads, line, int(agree[args.lmeval_threads[0]][1])


def _runs(seconds: list[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in seconds) + " s"


if __name__ == "__main__":
    main()
