"""GRPO on the lab with TRL's rollouts (generate()) and with rtransfer's decoder (`sampler = "rtransfer"`).

    OMP_NUM_THREADS=1 python bench/grpo_rollouts.py [--steps 20] [--rounds 5] [--work DIR]

Both on one torch thread, as the study trains (recipe `threads = 1`), one after the other. Prints:
  - rollouts alone: the lab GRPO recipe's generation batch (16 prompts × 8 rollouts, 160 new tokens at most) drawn
    by the trainer's own `_generate` with each sampler, alternating, --rounds times each (median and range);
  - training: `rtransfer train grpo --model lab` for --steps steps with each sampler: the median step time (from
    log.jsonl, the first step left out), and the mean reward per step with a 95 % CI (t over steps) each way, and
    their difference: different draws from the same policy, so the rewards should agree within the CIs.
"""

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

SAMPLERS = ("trl", "rtransfer")


def rollout_times(work: Path, rounds: int) -> dict[str, list[float]]:
    import torch

    from rtransfer.lab.build import BuildConfig, shipped_base
    from rtransfer.train.config import load_recipe
    from rtransfer.train.data import load_queries
    from rtransfer.train.grpo import grpo_trainer
    from rtransfer.train.outputs import TrainDir

    torch.set_num_threads(1)
    base, queries = str(shipped_base(BuildConfig())), load_queries("lab")
    trainers = {
        s: grpo_trainer(base, queries, load_recipe("grpo", overrides=[f"sampler={s}"]), TrainDir(work / f"t-{s}"))
        for s in SAMPLERS
    }
    prompts = [[{"role": "user", "content": q.prompt}] for q in queries[:16] for _ in range(8)]
    times: dict[str, list[float]] = {s: [] for s in SAMPLERS}
    for _ in range(rounds):
        for sampler, trainer in trainers.items():
            start = time.perf_counter()
            trainer._generate(prompts)
            times[sampler].append(time.perf_counter() - start)
    return times


def train(work: Path, sampler: str, steps: int) -> list[dict]:
    out = work / f"grpo-{sampler}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "rtransfer.cli", "train", "grpo", "--model", "lab", "--out", str(out)]
    cmd += ["--set", f"max_steps={steps}", "--set", "log_every=1", "--set", f"sampler={sampler}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def mean_ci(values: list[float]) -> tuple[float, float]:
    """The mean and the half-width of its 95 % t interval."""
    from scipy import stats

    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return statistics.mean(values), half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rtransfer-grpo-rollouts"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print("rollouts alone (128 rows, the trainer's _generate, 1 thread):")
    times = rollout_times(args.work, args.rounds)
    for sampler, values in times.items():
        print(f"  {sampler:9} median {statistics.median(values):.2f} s (range {min(values):.2f}–{max(values):.2f})")
    ratio = statistics.median(times["trl"]) / statistics.median(times["rtransfer"])
    print(f"  rtransfer is {ratio:.2f}× TRL's speed")
    print(f"\ntraining ({args.steps} steps of the lab GRPO recipe, 1 thread):")
    rewards = {}
    for sampler in SAMPLERS:
        log = train(args.work, sampler, args.steps)
        walls = [row["wall_s"] for row in log]
        step = statistics.median(b - a for a, b in itertools.pairwise(walls[1:]))
        rewards[sampler] = [row["reward_mean"] for row in log]
        mean, half = mean_ci(rewards[sampler])
        print(f"  {sampler:9} median step {step:.2f} s; reward per step {mean:.3f} ± {half:.3f}")
    diff = [b - a for a, b in zip(rewards["trl"], rewards["rtransfer"], strict=True)]
    mean, half = mean_ci(diff)
    print(f"  reward difference (rtransfer − trl, paired by step): {mean:+.3f} ± {half:.3f}")


if __name__ == "__main__":
    main()
