"""A small study directory in the shape of `rtransfer study`'s contract, built from library calls on the quick lab
model, for the report's tests (and by hand: `python tests/study_fixture.py DIR` to look at a report).

Arms: off-policy SFT, on-policy SFT (two seeds, a checkpoint evaluated mid-way) and GRPO, a few steps each; base and
every arm evaluated on the lab suite (the first LIMIT documents per benchmark); probes of one arm. The manifest
lists each model as the study does (a specs.ModelRef and its files); scores.json, ti.json and comparisons.json are
written by the study's own compare stage (jobs.compare.write_results) with the [ti] settings TI.
"""

import dataclasses
import json
import os
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
TI = {"index": "v2", "sigma": "pooled", "bootstrap": BOOTSTRAP, "confidence": 0.95, "seed": 0}
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


def entry(model, run_dir: str, train_dir: str | None = None) -> dict:
    """A manifest's model entry, as the study writes it: the ModelRef's fields and where its files are."""
    return {**dataclasses.asdict(model), "run_dir": run_dir, "train_dir": train_dir, "steps": {}, "probes": {}}


def build_study(root: Path, probes: bool = True) -> Path:
    from rtransfer.jobs.compare import write_results
    from rtransfer.probes.pipeline import LatentSettings, TokenSettings, run_latent, run_tokens, write_result
    from rtransfer.runs import versions
    from rtransfer.specs import TEACHER_TRACES, ModelRef
    from rtransfer.train.run import TrainJob, resolve_base, train

    root = Path(root)
    started = time.time()
    base = resolve_base("lab:quick")
    refs = [ModelRef("base", str(base), "base")]
    models = {"base": entry(refs[0], "runs/base")}
    evaluate_dir(base, root / "runs" / "base", "base", None)
    for name, arm, method, thinking, seed, overrides, steps in ARMS:
        train_dir = root / "models" / name
        job = TrainJob(method=method, model="lab:quick", out=train_dir, seed=seed, overrides=overrides)
        train(dataclasses.replace(job, thinking=thinking) if thinking else job)
        evaluate_dir(train_dir, root / "runs" / name, name, "base", method)
        ref = ModelRef(name, str(train_dir), "arm", "base", arm, method, seed, TEACHER_TRACES.get(thinking or ""))
        refs.append(ref)
        models[name] = entry(ref, f"runs/{name}", f"models/{name}")
        for step in steps:
            rel = f"models/{name}/evals/step-{step}"  # where the study keeps a checkpoint's evaluation
            evaluate_dir(train_dir / "checkpoints" / f"checkpoint-{step}", root / rel, name, "base", method)
            models[name]["steps"][str(step)] = rel
    if probes:
        common = dict(base=base, tuned=str(root / "models" / PROBED), benchmarks=PROBE_BENCHMARKS, samples=12)
        common |= dict(bootstrap=100)
        out = root / "probes" / PROBED
        write_result(run_latent(LatentSettings(**common)), out, "latent")
        write_result(run_tokens(TokenSettings(**common, max_new_tokens=16)), out, "tokens")
        models[PROBED]["probes"] = {"latent": f"probes/{PROBED}/latent.json", "tokens": f"probes/{PROBED}/tokens.json"}
    manifest = {
        "study": "fixture",
        "config": {"base": "lab:quick", "limit": LIMIT, "arms": [a[0] for a in ARMS], "ti": TI},
        "seeds": [0, 1],
        "versions": versions(),
        "created": "2026-01-01T00:00:00+00:00",
        "models": models,
        "stages": {"all": {"key": "0" * 16, "seconds": round(time.time() - started, 1), "finished": "2026-01-01"}},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    write_results(refs, TI, False, root)  # the compare stage reads the manifest: where the runs and steps are
    return root


def recompare(study: Path, out: Path, **ti) -> Path:
    """The same study compared with other [ti] settings (TI with `ti` applied) in `out`: its manifest copied (with
    its config's ti), its files linked, its compare stage run again."""
    from rtransfer.jobs.compare import write_results
    from rtransfer.specs import model_from_json

    out.mkdir(parents=True)
    manifest = json.loads((study / "manifest.json").read_text())
    settings = TI | ti
    manifest["config"]["ti"] = settings
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    for folder in ("runs", "models", "probes"):
        if (study / folder).exists():
            os.symlink(study / folder, out / folder)
    write_results([model_from_json(e) for e in manifest["models"].values()], settings, False, out)
    return out


if __name__ == "__main__":
    print(build_study(Path(sys.argv[1])))
