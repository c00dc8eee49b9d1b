"""Train every arm of the lab study with its default lab recipe and print what it did to the lab suite.

    python bench/train_lab.py [--out DIR] [--arms sft-think,sft-nothink,onpolicy,grpo]

Per arm: wall time of training, optimizer steps, and per group (math, other, non) the mean score before and after
with a paired-bootstrap 95 % CI of the change (documents resampled per benchmark, the same draw for base and arm,
since both answer the same test items). Run it on a quiet machine: timings of two torch processes on 2 cores are
meaningless.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from rtransfer.benchmarks.names import GROUPS
from rtransfer.records import doc_grades
from rtransfer.runs import RunDir
from rtransfer.train.run import TrainJob, evaluate_model, read_log, resolve_base, train

ARMS = {
    "sft-think": ("sft", "on"),
    "sft-nothink": ("sft", "off"),
    "onpolicy": ("onpolicy", None),
    "grpo": ("grpo", None),
}
REPLICATES = 2000


def grades(run: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """benchmark -> {doc_id: (avg grade, weight)} of a run directory (weights: lab_format's instruction counts)."""
    out = {}
    for bench in RunDir(run).benchmarks():
        ids, values, weights = doc_grades(RunDir(run).records(bench))
        out[bench] = dict(zip(ids, zip(values.tolist(), weights.tolist(), strict=True), strict=True))
    return out


def weighted(values: np.ndarray, weights: np.ndarray, draws: np.ndarray | None = None):
    if draws is None:
        return 100 * (values * weights).sum() / weights.sum()
    return 100 * (values[draws] * weights[draws]).sum(axis=1) / weights[draws].sum(axis=1)


def group_changes(base: dict, tuned: dict, groups: dict[str, str], seed: int = 0) -> dict[str, tuple]:
    """group -> (base mean, tuned mean, Δ, CI low, CI high), group mean = mean over its benchmarks' scores."""
    rng = np.random.default_rng(seed)
    out = {}
    for group in GROUPS:
        benches = [b for b in base if groups[b] == group and b in tuned]
        deltas = np.zeros(REPLICATES)
        base_mean = tuned_mean = 0.0
        for b in benches:
            ids = sorted(base[b])
            (x, w), (y, v) = (np.array([run[b][i] for i in ids]).T for run in (base, tuned))
            base_mean += weighted(x, w) / len(benches)
            tuned_mean += weighted(y, v) / len(benches)
            draws = rng.integers(0, len(ids), size=(REPLICATES, len(ids)))
            deltas += (weighted(y, v, draws) - weighted(x, w, draws)) / len(benches)
        lo, hi = np.percentile(deltas, [2.5, 97.5])
        out[group] = (base_mean, tuned_mean, tuned_mean - base_mean, lo, hi)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rtransfer-train-lab"))
    parser.add_argument("--arms", default=",".join(ARMS))
    args = parser.parse_args()
    base = resolve_base("lab")
    evaluate_model(Path(base), args.out / "runs" / "base", "lab")
    base_grades = grades(args.out / "runs" / "base")
    groups = {
        b: m["group"] for b, m in json.loads((args.out / "runs/base/scores.json").read_text())["benchmarks"].items()
    }
    rows = []
    for arm in args.arms.split(","):
        method, thinking = ARMS[arm]
        model = train(TrainJob(method=method, model="lab", out=args.out / "models" / arm, thinking=thinking))
        seconds = json.loads((model / "train.json").read_text())["seconds"]  # also when trained by an earlier run
        evaluate_model(model, args.out / "runs" / arm, "lab")
        steps = read_log(model)[-1]["step"]
        changes = group_changes(base_grades, grades(args.out / "runs" / arm), groups)
        rows.append((arm, seconds, steps, changes))
        print(f"{arm}: {seconds:.0f} s, {steps} steps", flush=True)
    print("\n| arm | train s | steps | " + " | ".join(f"{g} before → after (Δ, 95 % CI)" for g in GROUPS) + " |")
    print("|---|---|---|" + "---|" * len(GROUPS))
    for arm, seconds, steps, changes in rows:
        cells = [f"{b:.1f} → {t:.1f} ({d:+.1f}, {lo:+.1f}…{hi:+.1f})" for b, t, d, lo, hi in changes.values()]
        print(f"| {arm} | {seconds:.0f} | {steps} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
