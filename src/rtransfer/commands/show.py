"""`rtransfer show RUN_DIR`: read a run's answers. Per record: benchmark, document, sample and grade, the prompt
(the last user message; head and tail when long), the response, the extracted answer and the gold; for a
log-likelihood benchmark each choice with its log-probability, the picked one and the gold one marked.

Records graded before records carried their gold show "gold: (not recorded; run rtransfer regrade RUN_DIR)":
a regrade fills it from the documents the run was made with."""

import argparse
import json
from pathlib import Path

DEFAULT_N = 5  # records shown per benchmark

EPILOG = """examples:
  rtransfer show runs/base                               5 records of every benchmark
  rtransfer show runs/base --benchmark math500 --wrong -n 20
  rtransfer show runs/base --benchmark coqa,headqa --full
  rtransfer show runs/base --wrong -n 0 --json > wrong.json"""


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (all) or more, not {value}")
    return value


def register(sub) -> None:
    p = sub.add_parser(
        "show",
        help="print a run's answers beside their gold and grade",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="an rtransfer run directory")
    p.add_argument("--benchmark", help="only this benchmark (or a,b,...); default: every benchmark of the run")
    p.add_argument("--wrong", action="store_true", help="only records graded below 1")
    p.add_argument("-n", type=count, default=DEFAULT_N, help=f"records per benchmark (default {DEFAULT_N}; 0: all)")
    p.add_argument("--full", action="store_true", help="every prompt message and the response whole, not cut")
    p.add_argument("--json", action="store_true", help="print the records as stored, as a JSON list")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.samples import as_json, render, select

    benchmarks = [b.strip() for b in args.benchmark.split(",") if b.strip()] if args.benchmark else None
    selections = select(args.run_dir, benchmarks, wrong=args.wrong, n=args.n)
    print(json.dumps(as_json(selections), ensure_ascii=False, indent=2) if args.json else render(selections, args.full))
    return 0
