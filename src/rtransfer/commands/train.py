"""`rtransfer train`: teacher traces (rejection sampling), off-policy SFT, on-policy SFT, GRPO and on-policy
distillation (`opd`, also `distill`) on math queries.

    rtransfer train teacher --teacher MODEL|lab --data QUERIES --out traces.jsonl [--samples K] [--thinking on|off]
    rtransfer train sft|onpolicy|grpo|opd --model BASE [--config FILE|NAME] [--data DATA] [--seed S] --out DIR
                                      [--set FIELD=VALUE ...] [--eval-every N --eval-suite lab]

Given a lab base (`--model lab`, or a lab base directory) and no --data, each method runs the lab recipe on the
lab's math train split (sft on the lab teacher's traces, --thinking on|off; opd from the lab teacher model). A
rerun of a killed command resumes from its newest checkpoint. Recipes: docs/training.md; shipped: lab, qwen3-0.6b,
unireason.
"""

import argparse
import json
import sys
from pathlib import Path

from rtransfer.train.methods import ALIASES, METHODS


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train on math: teacher traces, SFT, on-policy SFT, GRPO",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    methods = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    t = methods.add_parser("teacher", help="K solutions per query from a teacher; keep the correct ones")
    t.add_argument("--teacher", required=True, help="a model dir or hub id, or 'lab' (the lab's teacher)")
    t.add_argument("--data", help="queries: a JSONL of problem/answer, a hub id, or 'lab' (the default)")
    t.add_argument("--out", type=Path, required=True, help="the accepted traces (JSONL); records go to OUT.run/")
    t.add_argument("--samples", type=int, default=1, help="solutions per query (K)")
    t.add_argument("--thinking", choices=("on", "off"), default="on", help="the teacher's thinking mode")
    # The paper's sampled math settings: K samples per query are only worth drawing if they can differ.
    t.add_argument("--temperature", type=float, default=0.6, help="teacher sampling temperature (0: greedy)")
    t.add_argument("--top-p", type=float, default=0.95)
    t.add_argument("--max-new-tokens", type=int, default=4096)
    t.add_argument("--limit", type=int, default=0, help="the first N queries only")
    t.add_argument("--seed", type=int, default=0)
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.commands.eval import add_engine_arguments

    add_engine_arguments(t)
    t.set_defaults(run=run_teacher)
    for method, text in ((m.name, m.help) for m in METHODS.values()):
        m = methods.add_parser(
            method,
            aliases=[alias for alias, name in ALIASES.items() if name == method],
            help=text,
            description=text,
            epilog=recipe_epilog(method),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        m.add_argument("--model", required=True, help="the base: a model dir, a hub id, or 'lab'")
        m.add_argument("--config", help="a recipe file (TOML/YAML) or a shipped recipe: lab, qwen3-0.6b, unireason")
        m.add_argument("--data", help="sft: traces JSONL (prompt, completion); else queries JSONL or a hub id")
        m.add_argument("--seed", type=int)
        m.add_argument("--out", type=Path, required=True, help="the training directory")
        m.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help="override a recipe field (repeatable)",
        )
        if METHODS[method].data == "traces":
            m.add_argument(
                "--thinking",
                choices=("on", "off"),
                help="on the lab: the lab teacher's think (the default) or no-think traces",
            )
        m.add_argument(
            "--eval-every",
            type=int,
            default=0,
            help="measure the transfer every N steps (DIR/evals; docs/monitoring.md)",
        )
        m.add_argument("--eval-suite", default="lab", help="the suite evaluated at checkpoints")
        m.add_argument("--dry-run", action="store_true", help="validate the recipe and data, print them, train nothing")
        m.set_defaults(run=run_trainer)


def recipe_epilog(method: str, width: int = 118) -> str:
    """Every recipe field of `method` as --help lists it: name, type, default (as TOML and --set write it), help."""
    import textwrap

    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.train.config import recipe_fields

    rows = [(f.name, f.type, json.dumps(f.default), f.help) for f in recipe_fields(method)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    indent = 2 + sum(widths) + 6
    lines = [
        f"recipe fields: --set FIELD=VALUE, or in --config FILE at top level or in its [{method}] table "
        "(defaults: the lab recipe)",
        f"  {'field'.ljust(widths[0])}  {'type'.ljust(widths[1])}  {'default'.ljust(widths[2])}  help",
    ]
    for row in rows:
        head = "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  "
        lines += textwrap.wrap(row[3], width, initial_indent=head, subsequent_indent=" " * indent)
    return "\n".join(lines)


def run_trainer(args) -> int:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.train import ranks
    from rtransfer.train.run import TrainJob, check, read_log, train

    job = TrainJob(
        method=ALIASES.get(args.method, args.method),
        model=args.model,
        out=args.out,
        config=args.config,
        data=args.data,
        seed=args.seed,
        overrides=args.overrides,
        thinking=getattr(args, "thinking", None),
        eval_every=args.eval_every,
        eval_suite=args.eval_suite,
    )
    if args.dry_run:
        print(json.dumps(check(job), indent=2))
        return 0
    out = train(job)
    if not ranks.is_main():  # under a launcher, one summary for the run
        return 0
    log = read_log(out)
    last = log[-1] if log else {}
    summary = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float))
    print(f"rtransfer: trained {args.method} into {out} ({last.get('step', 0)} steps; last log: {summary})")
    return 0


def run_teacher(args) -> int:
    from tqdm import tqdm

    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.engines.base import SamplingParams
    from rtransfer.errors import DataError
    from rtransfer.train.data import load_queries
    from rtransfer.train.teacher import LabTeacher, run_teacher

    queries = load_queries(args.data, args.seed, args.limit)
    if args.teacher == "lab":
        if all(q.item is None for q in queries):
            raise DataError("the lab teacher solves the lab's math train split only (--data lab)")
        engine = LabTeacher(queries, think=args.thinking == "on")
    else:
        # lazy: a command loads its library when it runs, so every command starts fast
        from rtransfer.commands.eval import make_engine

        args.model = args.teacher
        engine = make_engine(args, args.thinking == "on")
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    bar = tqdm(desc="teacher", unit="answer", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    result = run_teacher(
        engine, queries, args.out, samples=args.samples, params=params, seed=args.seed, progress=progress
    )
    bar.close()
    for source, (kept, total) in sorted(result.by_source.items()):
        print(f"  {source}: kept {kept} of {total} ({100 * kept / total:.1f} %)")
    print(
        f"rtransfer: {result.accepted} of {result.total} solutions accepted "
        f"({100 * result.accepted / max(1, result.total):.1f} %) → {result.traces}"
    )
    return 0
