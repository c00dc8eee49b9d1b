"""Training time on the lab with and without TransferCallback: what monitoring transfer costs.

    python bench/monitor_overhead.py [--steps 750] [--every 250] [--limit 100] [--out DIR]

Trains the lab's off-policy SFT arm (think traces, the lab recipe, one thread) from the lab base twice: without
the callback, then with it (every N steps, the last step included, on the first `limit` documents of each lab
benchmark). The base's evaluation is timed apart, first: it runs once per base, suite and limit, and a later run
finds it cached. Prints the three times and the overhead of the callback as a share of training. Run it on a quiet
machine.
"""

import argparse
import shutil
import time
from pathlib import Path

from rtransfer.integrations.trl import TransferCallback
from rtransfer.lab.build import resolve_model
from rtransfer.monitor import Monitor
from rtransfer.train.run import TrainJob, train


def timed_training(out: Path, steps: int, callbacks=()) -> float:
    job = TrainJob(method="sft", model="lab", out=out, thinking="on", overrides=[f"max_steps={steps}"])
    started = time.perf_counter()
    train(job, callbacks=list(callbacks))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=750, help="the lab SFT arm's steps (default: all 750)")
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rtransfer-bench-monitor"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    base = resolve_model("lab")
    folder = args.out / "transfer"
    started = time.perf_counter()
    Monitor(base=base, out=folder, suite="lab", limit=args.limit).evaluate_base()
    base_s = time.perf_counter() - started
    plain = timed_training(args.out / "plain", args.steps)
    callback = TransferCallback(base=base, suite="lab", limit=args.limit, every=args.every, out=folder)
    monitored = timed_training(args.out / "monitored", args.steps, [callback])
    points = len(Monitor(base=base, out=folder).points())
    print(f"lab SFT (think), {args.steps} steps; callback every {args.every} steps, {args.limit} documents/benchmark")
    print(f"training without the callback: {plain:.0f} s; with it: {monitored:.0f} s ({points} points measured)")
    print(f"overhead: {monitored - plain:.0f} s, {100 * (monitored - plain) / plain:.1f} % of training")
    print(f"the base's evaluation, once per base and suite (cached after): {base_s:.0f} s")


if __name__ == "__main__":
    main()
