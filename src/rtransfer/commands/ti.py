"""`rtransfer ti`: the Transferability Index of tuned models against their bases."""

import argparse
import json
import sys

from rtransfer.errors import DataError
from rtransfer.report.tables import render, ti_table
from rtransfer.transfer import INDEXES, SIGMAS, ModelScores, TIResult, transferability

EPILOG = """inputs (any mix):
  scores.csv     columns model, base, [method], then one column per benchmark (the paper's shape), in points
                 (0–100; --scale 1 for fractions)
  RUN_DIR        an rtransfer run directory (per-sample records give bootstrap CIs)
  results.json   lm-evaluation-harness results_*.json, or a folder holding them
  NAME=PATH      a run directory or lm-eval result labelled NAME (two runs called `final`, say)

Runs with per-sample records are compared, per benchmark, on the documents (and samples) that all of them
answered; a note says what was left out, and the JSON gives `n` per benchmark. --strict refuses instead.

exit status: 0 when at least one TI is defined; 1 when none is (the table or JSON is still printed, every
row with its reason); 2 on bad input.

examples:
  rtransfer ti --paper                         the paper's table, reported vs recomputed
  rtransfer ti --scores scores.csv --json
  rtransfer ti runs/base runs/sft runs/rl --base runs/base
  rtransfer ti base=runs/base sft=studyA/evals/final rl=studyB/evals/final --base base
"""


def register(sub) -> None:
    p = sub.add_parser(
        "ti",
        help="Transferability Index (v1 or v2) of tuned models against their base",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="*", help="scores CSVs, run directories, lm-eval results (see below)")
    p.add_argument("--scores", action="append", default=[], metavar="CSV", help="a scores table (repeatable)")
    p.add_argument("--paper", action="store_true", help="the paper's own scores, compared with its reported TI")
    p.add_argument("--base", help="the base of every run dir / lm-eval input that names none (a path or model)")
    p.add_argument("--index", choices=INDEXES, default="v2", help="v2: Domain Index (default); v1: relative gains")
    p.add_argument(
        "--sigma",
        choices=SIGMAS,
        default="pooled",
        help="v2's σ_g: pooled over all compared gains per group (default, reproduces the paper) or each model's own",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap replicates for CIs when per-sample records exist (0: none; default 1000)",
    )
    p.add_argument("--confidence", type=float, default=0.95, help="CI level (default 0.95)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse runs scored on different documents or samples, instead of comparing the ones they share",
    )
    p.add_argument(
        "--scale",
        type=int,
        choices=(100, 1),
        default=100,
        help="the scale of scores tables: 100 (points, default) or 1 (fractions, converted to points)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON list, one object per tuned model")
    out.add_argument("--csv", action="store_true", help="print CSV")
    out.add_argument("--latex", action="store_true", help="print a LaTeX table")
    p.set_defaults(run=run)


def run(args) -> int:
    if not 0 < args.confidence < 1:
        raise DataError(f"--confidence must be between 0 and 1, not {args.confidence}")
    rows, notes = _rows(args)
    results = transferability(
        rows,
        index=args.index,
        sigma=args.sigma,
        bootstrap=max(args.bootstrap, 0),
        confidence=args.confidence,
        seed=args.seed,
        strict=args.strict,
    )
    reported = _reported() if args.paper and args.index == "v2" else {}
    for note in dict.fromkeys([*notes, *(n for r in results for n in r.notes)]):
        print(f"rtransfer: note: {note}", file=sys.stderr)
    for r in results:
        for problem in (r.undefined, r.unstable):
            if problem:
                print(f"rtransfer: note: {r.model}: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps([_json_row(r, reported) for r in results], indent=2, ensure_ascii=False))
    else:
        form = "csv" if args.csv else "latex" if args.latex else "terminal"
        header, cells = ti_table(results, reported)
        title = f"Transferability Index {args.index}" + (f", σ {args.sigma}" if args.index == "v2" else "")
        sys.stdout.write(render(header, cells, form, title))
        if reported and form == "terminal":
            _print_paper_summary(results, reported, args.sigma)
    if all(r.undefined for r in results):
        print("rtransfer: the TI is undefined for every model; the notes above say why and what to do", file=sys.stderr)
        return 1
    return 0


def _rows(args) -> tuple[list[ModelScores], list[str]]:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.sources import load_inputs

    if args.paper:
        if args.inputs or args.scores:
            raise DataError("--paper uses the packaged paper table; give no other inputs with it")
        # lazy: a command loads its library when it runs, so every command starts fast
        from rtransfer.paper import paper_scores

        return paper_scores(), []
    if not (args.inputs or args.scores):
        raise DataError("no inputs: give a scores CSV, run directories or lm-eval results (or --paper)")
    return load_inputs([*args.scores, *args.inputs], base=args.base, scale=args.scale)


def _reported():
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.paper import reported_ti

    return reported_ti()


def _json_row(r: TIResult, reported: dict) -> dict:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.paper import comparison

    row = r.as_dict()
    if r.model in reported:
        row.update(comparison(r, reported[r.model]))
    return row


def _print_paper_summary(results: list[TIResult], reported: dict, sigma: str) -> None:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.paper import summary_lines

    print("\n".join(summary_lines(results, reported, sigma)))
