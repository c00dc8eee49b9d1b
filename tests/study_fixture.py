"""A small study directory in the shape of `rtransfer study`'s contract, built from library calls on the quick lab
model, for the report's tests (and by hand: `python tests/study_fixture.py DIR` to look at a report).

Arms: on-policy SFT (two seeds, a checkpoint evaluated mid-way) and GRPO, a few steps each; base and every arm
evaluated on the lab suite (the first LIMIT documents per benchmark); probes of one arm. scores.json and ti.json
are written as the study writes them: scores from the run dirs, TIs through transfer.transferability with σ
pooled over the arms.
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

LIMIT = 40  # documents per benchmark: enough for CIs, seconds on the quick model
BOOTSTRAP = 200
ONPOLICY = ["max_steps=4", "rollouts=2", "save_every=2", "batch_size=16", "log_every=1"]
GRPO = ["max_steps=3", "save_every=3", "batch_size=16", "rollouts=4", "log_every=1", "max_completion_length=48"]
SFT = ["max_steps=3", "save_every=3", "batch_size=8", "max_queries=16", "log_every=1", "lr=1e-3"]
ARMS = [  # (model name, arm, method, thinking, seed, overrides, steps evaluated)
    ("sft-nothink", "sft-nothink", "sft", "off", 0, SFT, []),
    ("onpolicy-s0", "onpolicy", "onpolicy", None, 0, ONPOLICY, [2]),
    ("onpolicy-s1", "onpolicy", "onpolicy", None, 1, ONPOLICY, []),
    ("grpo", "grpo", "grpo", None, 0, GRPO, []),
]
PROBED = "onpolicy-s0"
PROBE_BENCHMARKS = ["lab_arith", "lab_order", "lab_story"]


def evaluate_dir(model: Path | str, out: Path, name: str, base: str | None, method: str = "") -> None:
    from rtransfer.benchmarks.registry import get_task, resolve
    from rtransfer.engines.factory import EngineSpec, make_engine
    from rtransfer.evaluate import EvalPlan, evaluate
    from rtransfer.runs import RunDir

    engine = make_engine(EngineSpec(str(model), batch_size=64))
    plan = EvalPlan([get_task(n) for n in resolve(suite="lab")], limit=LIMIT)
    evaluate(engine, plan, RunDir(out), name=name, base=base)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["method"] = method
    manifest_path.write_text(json.dumps(manifest, indent=2))


def build_study(root: Path, probes: bool = True) -> Path:
    from rtransfer.benchmarks.names import group_of
    from rtransfer.probes.pipeline import LatentSettings, TokenSettings, run_latent, run_tokens, write_result
    from rtransfer.runs import versions
    from rtransfer.sources import load_run_dir
    from rtransfer.train.run import TrainJob, resolve_base, train
    from rtransfer.transfer import transferability

    root = Path(root)
    started = time.time()
    base = resolve_base("lab:quick")
    models = {
        "base": {"arm": "base", "method": "", "thinking": None, "seed": None, "run_dir": "runs/base"}
        | {"train_dir": None, "steps": {}, "probes": {}}
    }
    evaluate_dir(base, root / "runs" / "base", "base", None)
    for name, arm, method, thinking, seed, overrides, steps in ARMS:
        train_dir = root / "models" / name
        job = TrainJob(method=method, model="lab:quick", out=train_dir, seed=seed, overrides=overrides)
        train(dataclasses.replace(job, thinking=thinking) if thinking else job)
        evaluate_dir(train_dir, root / "runs" / name, name, "base", method)
        entry = {"arm": arm, "method": method, "thinking": thinking, "seed": seed, "run_dir": f"runs/{name}"}
        entry |= {"train_dir": f"models/{name}", "steps": {}, "probes": {}}
        for step in steps:
            rel = f"steps/{name}/step-{step}"
            evaluate_dir(train_dir / "checkpoints" / f"checkpoint-{step}", root / rel, name, "base", method)
            entry["steps"][str(step)] = rel
        models[name] = entry
    if probes:
        common = dict(base=base, tuned=str(root / "models" / PROBED), benchmarks=PROBE_BENCHMARKS, samples=12)
        common |= dict(bootstrap=100)
        out = root / "probes" / PROBED
        write_result(run_latent(LatentSettings(**common)), out, "latent")
        write_result(run_tokens(TokenSettings(**common, max_new_tokens=16)), out, "tokens")
        models[PROBED]["probes"] = {"latent": f"probes/{PROBED}/latent.json", "tokens": f"probes/{PROBED}/tokens.json"}
    rows = []
    for name, entry in models.items():
        row, _ = load_run_dir(root / entry["run_dir"])
        row.model, row.base, row.method = name, (None if name == "base" else "base"), entry["method"]
        rows.append(row)
    scores = []
    for row in rows:
        entry = models[row.model]
        for bench, score in row.scores.items():
            run_scores = json.loads((root / entry["run_dir"] / "scores.json").read_text())["benchmarks"][bench]
            ci = run_scores.get("ci") or [None, None]
            scores.append(
                {"model": row.model, "arm": entry["arm"], "method": entry["method"], "seed": entry["seed"]}
                | {"benchmark": bench, "group": group_of(bench), "score": score, "ci_low": ci[0], "ci_high": ci[1]}
            )
    results = transferability(rows, bootstrap=BOOTSTRAP, seed=0)
    (root / "scores.json").write_text(json.dumps(scores, indent=2))
    (root / "ti.json").write_text(json.dumps([r.as_dict() for r in results], indent=2))
    manifest = {
        "study": "fixture",
        "config": {"base": "lab:quick", "limit": LIMIT, "arms": [a[0] for a in ARMS]},
        "seeds": [0, 1],
        "versions": versions(),
        "created": "2026-01-01T00:00:00+00:00",
        "models": models,
        "stages": {"all": {"key": "0" * 16, "seconds": round(time.time() - started, 1), "finished": "2026-01-01"}},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


if __name__ == "__main__":
    print(build_study(Path(sys.argv[1])))
