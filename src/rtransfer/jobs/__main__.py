"""`python -m rtransfer.jobs SPEC.json`: run one spec, as a child process or under a launcher (every process of
`accelerate launch` / `torchrun` runs it; the spec's runner decides which process writes)."""

import sys

from rtransfer.errors import RtransferError
from rtransfer.jobs import read, run


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m rtransfer.jobs SPEC.json", file=sys.stderr)
        return 2
    try:
        run(read(argv[0]))
    except RtransferError as err:
        print(f"rtransfer: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
