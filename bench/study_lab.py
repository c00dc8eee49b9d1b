"""Time the default lab study from nothing, then its rerun (everything reused), and print each stage's seconds.

    python bench/study_lab.py [--out DIR] [--config lab] [--quick]

The figures behind `make demo`'s targets: the whole study ≤ 10 minutes on this project's 2-core CPU, a rerun
≤ 1 minute. The study directory is removed first, so every stage runs (the lab base is copied from the package as
on a fresh machine). Run it on a quiet machine: other processes on the same cores stretch every figure.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(config: str, out: Path, quick: bool) -> float:
    command = [sys.executable, "-m", "rtransfer.cli", "study", config, "--out", str(out)]
    command += ["--quick"] if quick else []
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rtransfer-bench-study"))
    parser.add_argument("--config", default="lab")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    first = run(args.config, args.out, args.quick)
    manifest = json.loads((args.out / "manifest.json").read_text())
    stages = manifest["stages"]
    again = run(args.config, args.out, args.quick)
    print("| stage | seconds |\n|---|---|")
    for name, entry in stages.items():
        print(f"| {name} | {entry['seconds']:.0f} |")
    kinds: dict[str, float] = {}
    for name, entry in stages.items():
        kinds[name.split(":")[0]] = kinds.get(name.split(":")[0], 0.0) + entry["seconds"]
    print("\n" + ", ".join(f"{k} {v:.0f} s" for k, v in kinds.items()))
    jobs = manifest["config"].get("train_jobs", 1)
    if jobs > 1:
        print(f"(train: stage seconds added up; {jobs} arms trained at once, so the wall time is less)")
    print(f"study from nothing: {first:.0f} s ({first / 60:.1f} min); rerun, everything reused: {again:.0f} s")


if __name__ == "__main__":
    main()
