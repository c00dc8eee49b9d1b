"""The study's stages: what each one depends on (its key) and what it does (library calls only)."""

import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rtransfer.errors import RtransferError
from rtransfer.study.config import StudyConfig
from rtransfer.study.stages import Stage

REPORT_VERSION = 2  # bump when the report's content changes, so a finished study renders it again


def train_stage(model, config: StudyConfig, base_identity: dict) -> Stage:
    from rtransfer.train.config import describe
    from rtransfer.train.run import job_recipe

    job = model.job
    inputs = {
        "base": base_identity,
        "method": job.method,
        "recipe": describe(job_recipe(job)),
        "data": job.data,
        "thinking": job.thinking,
        "launch": list(model.launch),
        # Checkpoint evaluations happen inside training: their settings are the training stage's too.
        "checkpoint_evals": _eval_inputs(config) if config.eval.eval_every else None,
    }
    return Stage(f"train:{model.name}", "train", inputs, [Path(job.out)], lambda: _train(model, config))


def _train(model, config: StudyConfig) -> dict[str, Any]:
    from rtransfer.train.run import checkpoint_evaluator, checkpoint_name, train

    job, out = model.job, Path(model.job.out)
    every = config.eval.eval_every

    def evaluate_checkpoint(checkpoint: Path, run_dir: Path) -> None:
        name = checkpoint_name(model.name, int(run_dir.name.removeprefix("step-")))
        _evaluate(str(checkpoint), run_dir, config, name, "base", None, method=model.method)

    if model.launch:
        from rtransfer.study.run import train_command

        command = train_command(model)  # no checkpoint evaluations: config.validate refuses them with a launcher
        done = subprocess.run(command, check=False)
        if done.returncode:
            raise RtransferError(f"training {model.name} failed (exit {done.returncode}): {' '.join(command)}")
    else:
        train(job, [checkpoint_evaluator(out, every, evaluate_checkpoint)] if every else [])
    steps = {}
    for step, run_dir in sorted((int(p.name.removeprefix("step-")), p) for p in (out / "evals").glob("step-*")):
        checkpoint = out / "checkpoints" / f"checkpoint-{step}"
        if not _complete(run_dir, config) and checkpoint.exists():  # killed during this checkpoint's evaluation
            evaluate_checkpoint(checkpoint, run_dir)
        if _complete(run_dir, config):
            steps[str(step)] = str(run_dir.relative_to(out.parent.parent))
    return {"steps": steps} if steps else {}


def _benchmarks(config: StudyConfig) -> list[str]:
    from rtransfer.benchmarks.registry import resolve_suite

    return resolve_suite(config.eval.suite)


def _complete(run_dir: Path, config: StudyConfig) -> bool:
    from rtransfer.runs import RunDir

    if not (run_dir / "scores.json").exists():
        return False
    done = RunDir(run_dir).scores().get("benchmarks", {})
    return all(b in done for b in _benchmarks(config))


def _eval_inputs(config: StudyConfig) -> dict[str, Any]:
    e = config.eval
    return {"suite": e.suite, "data_dir": e.data_dir, "limit": e.limit, "dtype": e.dtype}


def _evaluate(
    source: str,
    run_dir: Path,
    config: StudyConfig,
    name: str,
    base: str | None,
    server_name,
    thinking=None,
    method: str | None = None,
):
    from rtransfer.engines.factory import EngineSpec
    from rtransfer.evaluate import evaluate_spec

    e = config.eval
    urls = e.servers.get(server_name, []) if server_name else []
    spec = EngineSpec(
        source,
        engine="openai" if urls else "hf",
        base_urls=urls,
        api_key_env=e.api_key_env or None,
        batch_size=e.batch_size,
        dtype=e.dtype,
        device_map=e.device_map or None,
        thinking=None if thinking is None else thinking == "on",
        tokenizer=source if urls and Path(source).exists() else None,
    )
    return evaluate_spec(
        spec,
        run_dir,
        e.suite,
        data_dir=Path(e.data_dir) if e.data_dir else None,
        limit=e.limit or None,
        name=name,
        base=base,
        method=method or None,  # the base's "" is no method
        progress=_progress(name),
    )


def _progress(name: str):
    from rtransfer.study.stages import say

    def for_benchmark(benchmark: str):
        def update(done: int, total: int) -> None:
            if done >= total:
                say(f"  {name}: {benchmark} {done}/{total}")

        return update

    return for_benchmark


def eval_stage(model, config: StudyConfig, out: Path, weights_key: str) -> Stage:
    inputs = {"weights": weights_key, "chat_thinking": model.chat_thinking, **_eval_inputs(config)}
    run_dir = out / "runs" / model.name

    def run() -> None:
        _evaluate(model.source, run_dir, config, model.name, model.base, model.name, model.chat_thinking, model.method)

    needs = [f"train:{model.name}"] if model.trained else []
    return Stage(f"eval:{model.name}", "eval", inputs, [run_dir], run, needs)


def probe_stage(model, config: StudyConfig, out: Path, base: str, weights: dict, evals: dict) -> Stage:
    p = config.probes
    names = p.benchmarks or _benchmarks(config)
    inputs = {
        "base": weights[model.base],
        "tuned": weights[model.name],
        "answers": evals[model.name].key,  # the token probe scores the model's own eval answers
        **asdict(p),
        "benchmarks": names,
    }
    folder = out / "probes" / model.name

    def run() -> None:
        from rtransfer.benchmarks.registry import get_task
        from rtransfer.probes.pipeline import LatentSettings, TokenSettings, run_latent, run_tokens, write_result

        common = {
            "base": base,
            "tuned": model.source,
            "data_dir": Path(config.eval.data_dir) if config.eval.data_dir else None,
            "samples": p.samples,
            "bootstrap": p.bootstrap,
            "noise_floor": p.noise_floor,
        }
        if p.latent:
            write_result(run_latent(LatentSettings(benchmarks=names, **common)), folder, "latent")
        generated = [n for n in names if get_task(n).kind == "generate"]  # log-likelihood tasks write no answers
        if p.tokens and generated:
            settings = TokenSettings(benchmarks=generated, responses=out / "runs" / model.name, **common)
            write_result(run_tokens(settings), folder, "tokens")

    needs = [f"eval:{model.name}", f"eval:{model.base}"] + ([f"train:{model.name}"] if model.trained else [])
    return Stage(f"probes:{model.name}", "probes", inputs, [folder], run, needs)


def ti_stage(models, config: StudyConfig, out: Path, evals: dict) -> Stage:
    inputs = {"evals": {name: s.key for name, s in evals.items()}, **asdict(config.ti)}
    inputs["models"] = [(m.name, m.base, m.method) for m in models]

    def run() -> dict[str, Any]:
        from rtransfer.study.results import write_results

        return write_results(models, config, out)

    return Stage("ti", "ti", inputs, [out / "scores.json", out / "ti.json"], run, [f"eval:{m.name}" for m in models])


def report_stage(out: Path, upstream: list[Stage]) -> Stage:
    inputs = {"version": REPORT_VERSION, "upstream": {s.name: s.key for s in upstream}}

    def run() -> dict[str, Any]:
        from rtransfer.report.build import write_report

        written = write_report(out)
        return {"html": str(written["html"]), "finding": written.get("finding", [])}

    outputs = [out / "report.html", out / "report.md", out / "tables", out / "figures"]
    return Stage("report", "report", inputs, outputs, run, ["ti"])
