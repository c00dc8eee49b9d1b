"""Time `rtransfer lab build --rebuild` (an empty cache) and score the built base on the lab suite.

    python bench/lab_build.py [--seed 0] [--quick] [--from-scratch] [--limit N]

By default the base is mid-trained again from the pre-trained model shipped with rtransfer (minutes);
--from-scratch (or another --seed) pre-trains it here too (about 25 min on 2 cores). Prints the build's wall time,
whether the rebuilt weights are bit-identical to the base shipped with rtransfer (for the default settings; the
CPU's instruction set and torch's version, which bit-identity also depends on, are printed beside the shipped
base's), and the base's score on every lab benchmark next to the score of a blind guess (the target: between 10 %
and 90 % on each, so gains and losses both show, and above a blind guess, so the skill is real).
Run it on a quiet machine: other processes on the same cores stretch the time.
"""

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--from-scratch", action="store_true", help="pre-train here too")
    ap.add_argument("--limit", type=int, help="documents per lab benchmark (default: all 200)")
    args = ap.parse_args()
    os.environ["RTRANSFER_CACHE"] = tempfile.mkdtemp(prefix="rtransfer-bench-")

    from rtransfer.benchmarks.registry import SUITES, get_task
    from rtransfer.engines.hf import HFEngine
    from rtransfer.evaluate import EvalPlan, evaluate
    from rtransfer.lab.benchmarks import blind_guess
    from rtransfer.lab.build import build_base, defining_files, lab_config, shipped_base
    from rtransfer.runs import RunDir

    config = lab_config(args.seed, quick=args.quick, from_scratch=args.from_scratch)
    if shipped_base(config):
        start = time.perf_counter()
        build_base(config)
        print(f"lab build (copies the shipped base): {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    path = build_base(config, rebuild=True)
    built = time.perf_counter() - start
    print(f"lab build: {built:.1f} s ({built / 60:.2f} min), config {config}")
    if shipped := shipped_base(config):
        print(f"rebuilt base is bit-identical to the shipped one: {defining_files(path) == defining_files(shipped)}")
        for name, report in (("rebuilt", path), ("shipped", shipped)):
            info = json.loads((report / "lab_build.json").read_text())
            print(f"  {name}: torch {info.get('torch')}, CPU capability {info.get('cpu_capability')}")
    start = time.perf_counter()
    plan = EvalPlan([get_task(n) for n in SUITES["lab"]], limit=args.limit)
    results = evaluate(HFEngine.load(str(path), batch_size=64, device="cpu"), plan, RunDir(tempfile.mkdtemp()))
    print(f"lab suite evaluated in {time.perf_counter() - start:.1f} s")
    for name, metrics in results.items():
        lo, hi = metrics["ci"]
        inside = "ok" if 10 <= metrics["score"] <= 90 else "OUTSIDE 10-90"
        guess = blind_guess(name, args.limit)
        real = "above" if lo > guess else "NOT above"
        print(
            f"  {name:12s} {metrics['group']:5s} {metrics['score']:5.1f}  [{lo:5.1f}, {hi:5.1f}]  {inside}, "
            f"{real} a blind guess ({guess:.1f})"
        )


if __name__ == "__main__":
    main()
