"""Train every arm of the lab study in several seeds and print what each did to the lab suite.

    python bench/train_lab.py [--out DIR] [--seeds 3] [--jobs 2] [--arms NAME ...]

Runs `rtransfer study --seeds N` (the default lab study: the lab base, the four arms with their default lab
recipes, each in N training seeds; resumable, so a second call only prints) and reads its run directories. Per arm
and seed: wall time of training, optimizer steps, and per group (math, other, non) the change of the group's mean
score with a paired-bootstrap 95 % CI (documents resampled per benchmark, the same draw for base and every arm,
since all answer the same test items), then the TI with its CI, exactly as `rtransfer ti` computes them, with σ
pooled over the four arms of that seed (as in a one-seed study). Then per arm the mean and the spread (min…max)
over seeds. Timings: the study trains --jobs arms at once, a share of the cores each. `--arms` re-measures some arms
only (a copy of the lab study with those arms, in OUT/study.toml); σ is then pooled over those arms alone, which
moves the TIs but not the group changes.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from rtransfer.benchmarks.names import GROUPS
from rtransfer.report.tables import ti_flag
from rtransfer.sources import load_run_dir
from rtransfer.study.config import load_study
from rtransfer.train.run import read_log
from rtransfer.transfer import transferability

REPLICATES = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rtransfer-train-lab"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--arms", nargs="+", help="only these arms of the lab study (default: all)")
    args = parser.parse_args()
    config = study_config(args.out, args.arms) if args.arms else "lab"
    study = [sys.executable, "-m", "rtransfer.cli", "study", config, "--out", str(args.out), "--seeds", str(args.seeds)]
    subprocess.run([*study, "--jobs", str(args.jobs)], check=True)
    arms = [arm.name for arm in load_study(config).arms]
    base, _ = load_run_dir(args.out / "runs" / "base")
    results = {}
    changes = " | ".join(f"Δ{g} (95 % CI)" for g in GROUPS)
    print(f"\n| arm | seed | train s | steps | {changes} | TI_other | TI_non |")
    print("|---|---|---|---|" + "---|" * (len(GROUPS) + 2))
    for seed in range(args.seeds):
        names = {arm: f"{arm}-s{seed}" if args.seeds > 1 else arm for arm in arms}
        rows = [base]
        for name in names.values():
            row, _ = load_run_dir(args.out / "runs" / name)
            row.model, row.base = name, base.model
            rows.append(row)
        for arm, r in zip(arms, transferability(rows, bootstrap=REPLICATES, seed=0), strict=True):
            model = args.out / "models" / names[arm]
            seconds = json.loads((model / "train.json").read_text())["seconds"]
            cells = [f"{r.change[g]:+.1f} ({r.change_ci[g][0]:+.1f}…{r.change_ci[g][1]:+.1f})" for g in GROUPS]
            flag = ti_flag(r.undefined, r.unstable)  # a flagged TI is never printed as a number
            ti = [
                f"{r.ti[g]:.0f}" + (f" ({r.ci[g][0]:.0f}…{r.ci[g][1]:.0f})" if g in r.ci else "")
                for g in ("other", "non")
            ]
            ti = [f"— ({flag})"] * 2 if flag else ti
            steps = read_log(model)[-1]["step"]
            print(f"| {arm} | {seed} | {seconds:.0f} | {steps} | " + " | ".join(cells + ti) + " |")
            results.setdefault(arm, []).append(r)
    print("\nPer arm over seeds: mean (min…max) of the group changes; math gain above 0 in every seed?")
    for arm, rs in results.items():
        cells = []
        for g in GROUPS:
            values = [r.change[g] for r in rs]
            cells.append(f"Δ{g} {statistics.mean(values):+.1f} ({min(values):+.1f}…{max(values):+.1f})")
        gains = [r.change_ci["math"][0] > 0 and r.change["math"] >= 10 for r in rs]
        print(f"- {arm}: " + ", ".join(cells) + f"; math +10 with CI above 0: {sum(gains)}/{len(rs)} seeds")
    print("\nbase:", ", ".join(f"{b} {v:.1f}" for b, v in base.scores.items()))


def study_config(out: Path, arms: list[str]) -> str:
    """The shipped lab study with only `arms`: its [[arms]] blocks that name other arms are left out."""
    from rtransfer.study.config import config_path

    head, *blocks = config_path("lab").read_text().split("[[arms]]\n")
    *blocks, tail = [*blocks[:-1], *blocks[-1].split("\n[eval]", 1)]
    kept = [b for b in blocks if b.split('"')[1] in arms]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "study.toml"
    path.write_text(head + "".join("[[arms]]\n" + b for b in kept) + "\n[eval]" + tail)
    return str(path)


if __name__ == "__main__":
    main()
