"""`rtransfer list`: the benchmarks (canonical and display names, group, kind, variants), the groups and the
suites; with --data-dir, which benchmarks' data is found there. Imports no model library: it answers at once."""

import argparse
import json
from pathlib import Path

EPILOG = """examples:
  rtransfer list
  rtransfer list --data-dir ../shared/benchmarks     # which benchmarks eval will find there
  rtransfer list --json
Any spelling in the name or display column works with --benchmarks; NAME:VARIANT picks a documented variant."""


def register(sub) -> None:
    p = sub.add_parser(
        "list",
        help="the benchmarks, groups and suites (and which data a folder holds)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-dir", type=Path, help="say which benchmarks' local data is found in this folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args) -> int:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.benchmarks.registry import catalog

    found = catalog(args.data_dir)
    print(json.dumps(found, indent=2, ensure_ascii=False) if args.json else "\n".join(_lines(found)))
    return 0


def _lines(found: dict) -> list[str]:
    header = ["name", "display", "group", "kind", "variants (NAME:VARIANT)"]
    if found["data_dir"] is not None:
        header.append(f"data in {found['data_dir']}")
    lines = ["benchmarks", *_table(header, [_row(b) for b in found["benchmarks"]]), "", "groups"]
    groups = [[g, v["title"], ", ".join(v["benchmarks"])] for g, v in found["groups"].items()]
    lines += [*_table(["group", "title", "benchmarks"], groups), "", "suites (--suite NAME)"]
    lines += _table(["suite", "benchmarks"], [[s, ", ".join(members)] for s, members in found["suites"].items()])
    return lines


def _row(bench: dict) -> list[str]:
    variants = ", ".join(v.partition(":")[2] for v in bench["variants"])
    row = [bench["name"], bench["display"], bench["group"], bench["kind"], variants]
    if "data" in bench:
        notes = {"found": "found", "generated": "generated (no files)"}
        row.append(notes.get(bench["data"]) or f"{bench['data']}: {bench['data_note']}")
    return row


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart; the last column runs on."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return [
        "  " + "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
        for r in [header, *rows]
    ]
