"""`rtransfer study`: the whole loop from one base — training arms on math, evaluation of every model in three
groups, the TI, probes, and the report — resumable, each stage rerun only when what it depends on changed."""

import argparse
import json
import sys
from pathlib import Path

EPILOG = """configs (shipped, or a TOML/YAML file; see docs/study.md):
  lab          the embedded lab on a CPU (default): 4 arms from the lab base, minutes
  qwen3-0.6b   a small real model: real benchmarks, the paper's recipes scaled down (a GPU)
  unireason    the paper's Qwen3-14B-Base study (GPUs; accelerate/vLLM, servers for evaluation)
  survey       no training: the paper's open models and their bases, scored and compared

examples:
  rtransfer study --out studies/lab                  the lab study (what `make demo` runs)
  rtransfer study --quick --out /tmp/q               a seconds-long smoke version
  rtransfer study qwen3-0.6b --out studies/q06 --dry-run
  rtransfer study --out studies/lab --only report    re-render the report from the files
"""


def register(sub) -> None:
    p = sub.add_parser(
        "study",
        help="the whole study: train arms, evaluate, TI, probes, report (resumable)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", default="lab", help="a shipped config name or a TOML/YAML file (default: lab)")
    p.add_argument("--out", type=Path, required=True, help="the study directory (created, or resumed)")
    p.add_argument("--seeds", type=int, help="training seeds per arm (overrides the config's)")
    p.add_argument("--jobs", type=int, help="training stages at once (overrides the config's train_jobs)")
    p.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="STAGE",
        help="run only these stage kinds: teacher train eval probes ti report",
    )
    p.add_argument("--quick", action="store_true", help="the config's [quick] version: a seconds-long smoke run")
    p.add_argument("--dry-run", action="store_true", help="validate everything and show what would run; run nothing")
    p.set_defaults(run=run)


def run(args) -> int:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.study.config import load_study
    from rtransfer.study.run import run_study

    config = load_study(args.config, quick=args.quick, seeds=args.seeds, train_jobs=args.jobs)
    result = run_study(config, args.out, only=tuple(args.only), dry_run=args.dry_run)
    if args.dry_run:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        for problem in result["problems"]:
            print(f"rtransfer: cannot run: {problem}", file=sys.stderr)
        return 1 if result["problems"] else 0
    report = result["stages"].get("report", {}).get("info", {})
    _print_ti(config, args.out, result)
    for line in report.get("finding", []):
        print(line)
    if report.get("html"):
        print(f"\nreport: {report['html']}")
    return 0


def _print_ti(config, out: Path, manifest: dict) -> None:
    """The TI table from the study's ti.json (not computed again)."""
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.report.tables import render, ti_table
    from rtransfer.transfer import TIResult

    if not manifest["stages"].get("ti", {}).get("finished"):
        return
    results = [TIResult.from_dict(row) for row in json.loads((out / "ti.json").read_text())]
    header, cells = ti_table(results)
    sys.stdout.write(render(header, cells, "terminal", f"{config.name}: Transferability Index {config.ti.index}"))
