"""run(ProbeSpec): base vs one model, the latent shift and the token-level shift on the model's own answers, with
the engine settings of the model's evaluation (chat thinking, dtype, placement); for a model trained here, its
drift at each evaluated point: every checkpoint with an evaluation (DIR/evals/step-N) and the final model."""

from pathlib import Path

from rtransfer.benchmarks.registry import get_task
from rtransfer.probes.drift import DriftPoint, DriftSettings, run_drift
from rtransfer.probes.pipeline import LatentSettings, TokenSettings, run_latent, run_tokens, write_result
from rtransfer.runs import RunDir
from rtransfer.specs import ProbeSpec
from rtransfer.train.outputs import final_step
from rtransfer.train.run import kept_steps


def run(spec: ProbeSpec) -> dict:
    p = spec.settings
    folder = Path(spec.out)
    common = {
        "base": spec.base_engine.model,
        "tuned": spec.engine.model,
        "data_dir": Path(spec.data_dir) if spec.data_dir else None,
        "samples": p["samples"],
        "bootstrap": p["bootstrap"],
        "noise_floor": p["noise_floor"],
        "dtype": spec.engine.dtype,  # both models, then held in one compute dtype (probes.models.load_pair)
        "device": spec.engine.device,
        "device_map": spec.engine.device_map,
        # Both models read the prompts as the tuned model answered them (its eval's chat thinking).
        "thinking": spec.engine.thinking,
    }
    names = list(spec.benchmarks)
    if p["latent"]:
        write_result(run_latent(LatentSettings(benchmarks=names, **common)), folder, "latent")
    generated = [n for n in names if get_task(n).kind == "generate"]  # log-likelihood tasks write no answers
    if p["tokens"] and generated:
        settings = TokenSettings(benchmarks=generated, responses=Path(spec.answers), **common)
        write_result(run_tokens(settings), folder, "tokens")
    if p.get("drift") and spec.train_dir:
        points = evaluated_points(Path(spec.train_dir), spec.engine.model, spec.answers)
        drift = {"points": points, "queries": spec.queries, "prompts": p["drift_prompts"]}
        settings = DriftSettings(benchmarks=names, **{**common, "samples": p["drift_samples"]}, **drift)
        write_result(run_drift(settings), folder, "drift")
    return {}


def evaluated_points(train_dir: Path, final: str, answers: str) -> list[DriftPoint]:
    """Each evaluated checkpoint (its weights in steps/step-N, its evaluation in evals/step-N), and the final
    model at its final step with its own evaluation."""
    evals = train_dir / "evals"  # jobs.steps evaluates steps/step-N into evals/step-N
    points = [
        DriftPoint(step, str(weights), str(evals / weights.name))
        for step, weights in kept_steps(train_dir, 1)
        if RunDir(evals / weights.name).scores()
    ]
    return [*points, DriftPoint(final_step(train_dir) or 0, final, answers)]
