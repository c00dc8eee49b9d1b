"""Train every arm of the lab study with its default lab recipe and print what it did to the lab suite.

    python bench/train_lab.py [--out DIR] [--arms sft-think,sft-nothink,onpolicy,grpo]

Per arm: wall time of training, optimizer steps, and per group (math, other, non) the change of the group's mean
score with a paired-bootstrap 95 % CI (documents resampled per benchmark, the same draw for base and every arm,
since all answer the same test items), then the TI with its CI, exactly as `rtransfer ti` computes them. Run it
on a quiet machine: timings of two torch processes on 2 cores are meaningless.
"""

import argparse
import json
from pathlib import Path

from rtransfer.benchmarks.names import GROUPS
from rtransfer.sources import load_run_dir
from rtransfer.train.run import TrainJob, evaluate_model, read_log, resolve_base, train
from rtransfer.transfer import transferability

ARMS = {
    "sft-think": ("sft", "on"),
    "sft-nothink": ("sft", "off"),
    "onpolicy": ("onpolicy", None),
    "grpo": ("grpo", None),
}
REPLICATES = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rtransfer-train-lab"))
    parser.add_argument("--arms", default=",".join(ARMS))
    args = parser.parse_args()
    base = resolve_base("lab")
    evaluate_model(Path(base), args.out / "runs" / "base", "lab")
    rows, trained = [], {}
    for arm in args.arms.split(","):
        method, thinking = ARMS[arm]
        model = train(TrainJob(method=method, model="lab", out=args.out / "models" / arm, thinking=thinking))
        evaluate_model(model, args.out / "runs" / arm, "lab")
        info = json.loads((model / "train.json").read_text())  # seconds: also when trained by an earlier run
        trained[arm] = (info["seconds"], read_log(model)[-1]["step"])
        print(f"{arm}: {info['seconds']:.0f} s, {trained[arm][1]} steps", flush=True)
    for arm in ["base", *trained]:
        row, _ = load_run_dir(args.out / "runs" / arm)
        row.base = None if arm == "base" else "base"
        rows.append(row)
    # The group changes and TIs as `rtransfer ti` computes them: paired bootstrap over the shared test items.
    results = transferability(rows, bootstrap=REPLICATES, seed=0)
    print("\n| arm | train s | steps | " + " | ".join(f"Δ{g} (95 % CI)" for g in GROUPS) + " | TI_other | TI_non |")
    print("|---|---|---|" + "---|" * (len(GROUPS) + 2))
    for r in results:
        seconds, steps = trained[r.model]
        cells = [f"{r.change[g]:+.1f} ({r.change_ci[g][0]:+.1f}…{r.change_ci[g][1]:+.1f})" for g in GROUPS]
        ti = [f"{r.ti[g]:.0f} ({r.ci[g][0]:.0f}…{r.ci[g][1]:.0f})" if g in r.ci else "—" for g in ("other", "non")]
        print(f"| {r.model} | {seconds:.0f} | {steps} | " + " | ".join(cells + ti) + " |")
    for r in results:
        for problem in (r.undefined, r.unstable):
            if problem:
                print(f"- {r.model}: {problem}")
    base_scores = rows[0].scores
    print("\nbase:", ", ".join(f"{b} {v:.1f}" for b, v in base_scores.items()))


if __name__ == "__main__":
    main()
