"""`rtransfer report STUDY_DIR | RUN_DIR... [--base B] | MONITOR_DIR [--out DIR]`: the report of a study directory,
of eval run directories compared with a base, or of a monitor folder (TransferCallback, `rtransfer watch`: the
model's last step against the base and its TI over the measured steps), from the files alone: report.html
(self-contained: images embedded, no JavaScript, opens offline), report.md with figures/*.png beside it, and
tables/*.csv and *.tex."""

import argparse
from pathlib import Path

from rtransfer.errors import DataError

EPILOG = """examples:
  rtransfer report studies/lab                       the study's report, written into studies/lab
  rtransfer report runs/base runs/sft runs/rl --base runs/base --out reports/lab
  rtransfer report runs/grpo/transfer                a monitor folder; written into runs/grpo/transfer/report
"""


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="report of a study (or of run directories): HTML, Markdown, CSV and LaTeX tables",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", type=Path, help="a study directory, eval run directories, or a monitor folder")
    p.add_argument("--base", help="with run directories: the base (a path among them, or its model name)")
    p.add_argument("--out", type=Path, help="where to write (default: the study directory; required for run dirs)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    written = _write(args)
    for line in written["finding"]:
        print(f"  {line}")
    print(f"report: {written['html']}")
    print(f"        {written['md']} ({len(written['tables'])} table files in {written['html'].parent / 'tables'})")
    return 0


def _write(args: argparse.Namespace) -> dict:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.report.build import write_monitor_report, write_report, write_run_report
    from rtransfer.report.collect import is_study

    if len(args.inputs) == 1 and (args.inputs[0] / "transfer.jsonl").exists():
        if args.base:
            raise DataError("--base is for run directories; a monitor folder holds its own base")
        return write_monitor_report(args.inputs[0], args.out)
    for path in args.inputs:
        if not (path / "manifest.json").exists():
            raise DataError(f"{path}: neither a study directory nor a run directory (no manifest.json)")
    if len(args.inputs) == 1 and is_study(args.inputs[0]):
        if args.base:
            raise DataError("--base is for run directories; a study names its own bases")
        return write_report(args.inputs[0], args.out)
    if any(is_study(p) for p in args.inputs):
        raise DataError("give one study directory, or only run directories")
    if args.out is None:
        raise DataError("with run directories, say where the report goes with --out DIR")
    return write_run_report(args.inputs, args.base, args.out)
