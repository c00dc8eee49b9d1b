"""`rtransfer regrade RUN_DIR`: grade a run directory's stored answers again with the graders installed now (a
fixed grader, a new math-verify), without generating anything. The records are rewritten atomically per
benchmark, and the manifest's grader versions and scores.json follow them; a regrade killed half-way leaves every
records file whole, and running it again finishes the job."""

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("regrade", help="grade a run directory's stored answers again", description=__doc__)
    p.add_argument("run_dir", type=Path, help="an rtransfer run directory")
    p.add_argument("--data-dir", type=Path, help="local benchmark data (default: the run's own, else the hub)")
    p.add_argument("--seed", type=int, help="the seed the prompts were built with (default: the run's)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per benchmark")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.commands.eval import print_scores
    from rtransfer.evaluate import regrade_run
    from rtransfer.runs import RunDir

    results = regrade_run(RunDir(args.run_dir), data_dir=args.data_dir, seed=args.seed)
    print_scores(results, args.json, title=f"regraded — {args.run_dir}")
    return 0
