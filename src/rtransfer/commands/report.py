"""`rtransfer report STUDY_DIR | RUN_DIR... [--base B] [--out DIR]`: the report of a study directory, or of eval
run directories compared with a base, from the files alone: report.html (self-contained: images embedded, no
JavaScript, opens offline), report.md with figures/*.png beside it, and tables/*.csv and *.tex."""

import argparse
from pathlib import Path

from rtransfer.errors import DataError

EPILOG = """examples:
  rtransfer report studies/lab                       the study's report, written into studies/lab
  rtransfer report runs/base runs/sft runs/rl --base runs/base --out reports/lab
"""


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="report of a study (or of run directories): HTML, Markdown, CSV and LaTeX tables",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", type=Path, help="a study directory, or eval run directories")
    p.add_argument("--base", help="with run directories: the base (a path among them, or its model name)")
    p.add_argument("--out", type=Path, help="where to write (default: the study directory; required for run dirs)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.report.build import write_report, write_run_report
    from rtransfer.report.collect import is_study

    for path in args.inputs:
        if not (path / "manifest.json").exists():
            raise DataError(f"{path}: neither a study directory nor a run directory (no manifest.json)")
    if len(args.inputs) == 1 and is_study(args.inputs[0]):
        if args.base:
            raise DataError("--base is for run directories; a study names its own bases")
        written = write_report(args.inputs[0], args.out)
    else:
        if any(is_study(p) for p in args.inputs):
            raise DataError("give one study directory, or only run directories")
        if args.out is None:
            raise DataError("with run directories, say where the report goes with --out DIR")
        written = write_run_report(args.inputs, args.base, args.out)
    for line in written["finding"]:
        print(f"  {line}")
    print(f"report: {written['html']}")
    print(f"        {written['md']} ({len(written['tables'])} table files in {written['html'].parent / 'tables'})")
    return 0
