"""run(ProbeSpec): base vs one model, the latent shift and the token-level shift on the model's own answers, with
the engine settings of the model's evaluation (chat thinking, dtype, placement)."""

from pathlib import Path

from rtransfer.benchmarks.registry import get_task
from rtransfer.probes.pipeline import LatentSettings, TokenSettings, run_latent, run_tokens, write_result
from rtransfer.specs import ProbeSpec


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
    return {}
