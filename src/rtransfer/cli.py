"""The `rtransfer` command. Each subcommand lives in rtransfer/commands/<name>.py with `register(subparsers)`;
heavy libraries are imported inside the commands, so `rtransfer ti` starts fast."""

import argparse
import importlib
import sys

from rtransfer import __version__
from rtransfer.errors import RtransferError

# Subcommands, in help order.
COMMANDS = ("study", "eval", "list", "grade", "regrade", "show", "lab", "probe", "ti", "train", "watch", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtransfer",
        description="Does math reasoning transfer? Evaluate, train, probe and report (Huan et al., 2507.00432).",
    )
    parser.add_argument("--version", action="version", version=f"rtransfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"rtransfer.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except RtransferError as err:
        print(f"rtransfer: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rtransfer: interrupted; what was written so far is kept and a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
