"""`rtransfer eval`: score one model on benchmarks; records, scores and a manifest go to --out."""

import argparse
import json
import sys
from pathlib import Path

from rtransfer.commands import add_benchmark_args, add_placement_args
from rtransfer.engines.factory import ENGINES, EngineSpec
from rtransfer.engines.factory import make_engine as build
from rtransfer.report.tables import fmt, fmt_ci, render

EPILOG = """examples:
  rtransfer eval --model Qwen/Qwen3-14B-Base --suite paper --out runs/base
  rtransfer eval --model lab --suite lab --out runs/lab      # the lab base on its own suite, no hub needed
  rtransfer eval --model ./my-model --benchmarks math500,headqa --data-dir ../shared/benchmarks --limit 50 --out runs/m
  rtransfer eval --model ./my-model --suite paper --data-dir ../shared/benchmarks --skip-missing --out runs/p
  rtransfer eval --engine openai --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen3-14B --suite paper --out runs/q
An interrupted run resumes where it stopped when run again with the same --out and settings."""


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on benchmarks (records + scores)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        help="hub id, local model directory, lab (the lab base shipped with rtransfer) or lab:quick (its seconds-long "
        "smoke version); openai: the server's model name",
    )
    add_benchmark_args(p)
    p.add_argument("--out", required=True, type=Path, help="run directory (created, or resumed)")
    p.add_argument(
        "--limit",
        type=int,
        help="the first N documents of each benchmark; HaluEval: the first N of each of its three tasks (as lm-eval); "
        "MC-TACO: every candidate row of the first N questions",
    )
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="skip the benchmarks whose data is not found (named on stderr) and run the others",
    )
    p.add_argument("--samples", type=int, help="samples per prompt (default: the paper's per benchmark)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: the paper's; 0 = greedy)")
    p.add_argument("--top-p", type=float, help="nucleus sampling (default: the paper's)")
    p.add_argument("--max-new-tokens", type=int, help="generation budget (default: the paper's, 32768)")
    p.add_argument("--thinking", choices=("on", "off"), help="enable_thinking for templates that support it")
    add_engine_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="the model's label in tables (default: the model path's name; lab, lab-quick)")
    p.add_argument("--base", help="the label of the base model this one is compared with (for rtransfer ti)")
    p.add_argument(
        "--method", help="how the model was made (sft, grpo, onpolicy, ...): shown by rtransfer ti and the report"
    )
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per benchmark")
    p.set_defaults(run=run)


def add_engine_arguments(p) -> None:
    """The flags that choose and configure an engine (eval, and the teacher of `train teacher`)."""
    p.add_argument("--no-chat", action="store_true", help="base-model mode: plain prompts, no chat template")
    p.add_argument(
        "--engine", choices=tuple(ENGINES), default="hf", help="hf: in-process transformers; openai: servers"
    )
    p.add_argument("--batch-size", type=int, default=8, help="hf: prompts (documents) per batch, at most")
    p.add_argument(
        "--batch-tokens", type=int, help="hf: padded prompt tokens per batch, at most (default 4096 CPU, 32768 GPU)"
    )
    p.add_argument(
        "--parallel-batches",
        type=int,
        help="hf: batches decoding at once, sharing torch's threads (default on a CPU: 1 or 2, as measured on this "
        "machine and cached)",
    )
    p.add_argument("--streams", type=int, dest="parallel_batches", help=argparse.SUPPRESS)  # its old name
    p.add_argument("--dtype", default="auto", help="hf: auto, float32, bfloat16 or float16")
    add_placement_args(p)
    p.add_argument("--revision", help="model revision on the hub")
    srv = p.add_argument_group("servers (--engine openai; see docs/scale-out.md)")
    srv.add_argument(
        "--base-url",
        action="append",
        help="an OpenAI-compatible server, e.g. http://host:8000/v1; "
        "repeat (or comma-separate) to spread the run over several",
    )
    srv.add_argument("--api-key-env", help="environment variable holding the servers' API key")
    srv.add_argument("--concurrency", type=int, default=16, help="requests in flight per server")
    srv.add_argument("--request-timeout", type=float, default=3600.0, help="seconds one request may take")
    srv.add_argument("--max-attempts", type=int, default=8, help="tries per request before the run stops")
    srv.add_argument("--tokenizer", help="local tokenizer for the chat template (default: --model)")


def run(args) -> int:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.benchmarks.loading import load_all
    from rtransfer.benchmarks.registry import get_task, resolve
    from rtransfer.errors import DataError
    from rtransfer.evaluate import EvalPlan, Overrides, evaluate
    from rtransfer.lab.build import LAB_MODELS
    from rtransfer.runs import RunDir

    for flag in (
        "limit",
        "samples",
        "max_new_tokens",
        "batch_size",
        "batch_tokens",
        "parallel_batches",
        "concurrency",
        "max_attempts",
    ):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise DataError(f"--{flag.replace('_', '-')} must be at least 1, not {value}")
    tasks = [get_task(n) for n in resolve(args.benchmarks, args.suite)]
    # The documents are loaded once, before the model: missing or malformed data fails first.
    docs, skipped = load_all(tasks, args.data_dir, args.seed, skip_missing=args.skip_missing)
    if skipped:
        print(f"rtransfer: note: no data found in {args.data_dir}, skipped: {', '.join(skipped)}", file=sys.stderr)
    plan = EvalPlan(
        tasks=[t for t in tasks if t.name in docs],
        data_dir=args.data_dir,
        limit=args.limit,
        seed=args.seed,
        overrides=Overrides(args.samples, args.temperature, args.top_p, args.max_new_tokens),
        docs=docs,
    )
    engine = make_engine(args, None if args.thinking is None else args.thinking == "on")
    name = args.name or (LAB_MODELS.get(args.model) if args.engine == "hf" else None)
    results = evaluate(
        engine, plan, RunDir(args.out), name=name, base=args.base, method=args.method, progress=_progress_bar
    )
    print_scores(results, args.json, title=f"{name or Path(args.model).name} — {args.out}")
    return 0


def make_engine(args, thinking: bool | None):
    """The engine the flags of add_engine_arguments ask for, serving `args.model`."""
    from rtransfer.lab.build import resolve_model  # lazy: a command loads its library when it runs

    spec = EngineSpec(
        model=resolve_model(args.model) if args.engine == "hf" else args.model,  # "lab": the lab base's directory
        engine=args.engine,
        revision=args.revision,
        chat=False if args.no_chat else None,
        thinking=thinking,
        dtype=args.dtype,
        device=args.device,
        device_map=args.device_map,
        batch_size=args.batch_size,
        batch_tokens=args.batch_tokens,
        parallel_batches=args.parallel_batches,
        base_urls=args.base_url or (),
        api_key_env=args.api_key_env,
        concurrency=args.concurrency,
        request_timeout=args.request_timeout,
        max_attempts=args.max_attempts,
        tokenizer=args.tokenizer,
    )
    engine = build(spec)
    if getattr(engine, "note", None):
        print(f"rtransfer: note: {engine.note}", file=sys.stderr)
    return engine


def _progress_bar(benchmark: str):
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=done, desc=benchmark, unit="sample", file=sys.stderr, leave=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def print_scores(results: dict[str, dict], as_json: bool, title: str = "") -> None:
    rows = [{"benchmark": name, **metrics} for name, metrics in results.items()]
    if as_json:
        for r in rows:
            ci = r.pop("ci", None) or [None, None]
            r["ci_low"], r["ci_high"] = ci
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    header = ["benchmark", "group", "score", "95% CI", "n", "samples", "other metrics"]
    cells = []
    for r in rows:
        known = {"benchmark", "group", "score", "ci", "n", "samples"}
        others = ", ".join(f"{k}={fmt(v) if isinstance(v, float) else v}" for k, v in r.items() if k not in known)
        cells.append(
            [
                r["benchmark"],
                r.get("group", ""),
                fmt(r["score"]),
                fmt_ci(r.get("ci")),
                str(r["n"]),
                str(r.get("samples", "")),
                others,
            ]
        )
    sys.stdout.write(render(header, cells, "terminal", title))
