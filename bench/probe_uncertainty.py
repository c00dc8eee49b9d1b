"""What the probes' CIs and the weight probe cost, on the lab base (or any pair).

    python bench/probe_uncertainty.py [--tuned MODEL] [--replicates 1000]

Without --tuned, the tuned model is the lab base with 1 % Gaussian noise on every weight. Prints, in one run:
the latent probe on the lab suite without and with CIs; the per-replicate cost of refitting the PCA through
scikit-learn against the Gram-matrix refit that d_replicates uses (same d to 1e-9), on the lab's states and on
random states of a 14B model's shape (41 layers × 100 texts × 5120); the token probe's CI cost; `probe weights`.
Run it on a quiet machine.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def perturbed_lab_base(out: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rtransfer.train.run import resolve_base

    base = resolve_base("lab")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 0.01 * torch.randn_like(p))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def sklearn_replicate_ms(base: np.ndarray, tuned: np.ndarray, replicates: int) -> float:
    from rtransfer.probes.latent import _layer_points

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(replicates):
        idx = rng.integers(0, base.shape[1], base.shape[1])
        _layer_points(base[:, idx], tuned[:, idx])
    return 1000 * (time.perf_counter() - start) / replicates


def gram_replicate_ms(base: np.ndarray, tuned: np.ndarray, replicates: int) -> float:
    from rtransfer.probes.latent import d_replicates

    start = time.perf_counter()
    d_replicates(base, tuned, replicates)
    return 1000 * (time.perf_counter() - start) / replicates


def main() -> None:
    from rtransfer.benchmarks.registry import resolve
    from rtransfer.probes.latent import pooled_states
    from rtransfer.probes.models import load_engine
    from rtransfer.probes.pipeline import LatentSettings, TokenSettings, run_latent, run_tokens
    from rtransfer.probes.weights import weight_drift
    from rtransfer.train.run import resolve_base

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tuned")
    parser.add_argument("--replicates", type=int, default=1000)
    args = parser.parse_args()
    base = resolve_base("lab")
    with tempfile.TemporaryDirectory() as tmp:
        tuned = args.tuned or str(perturbed_lab_base(Path(tmp) / "tuned"))
        suite = resolve(suite="lab")
        common = {"base": base, "tuned": tuned, "benchmarks": suite, "samples": 200, "noise_floor": False}
        for replicates in (0, args.replicates):
            start = time.perf_counter()
            result = run_latent(LatentSettings(**common, bootstrap=replicates))
            print(f"latent, lab suite (7 × 200 texts), {replicates} replicates: {time.perf_counter() - start:.1f} s")
        for r in result["rows"]:
            print(f"  {r['benchmark']}: d {r['d']:.4g}, CI [{r['d_ci'][0]:.4g}, {r['d_ci'][1]:.4g}]")
        engine = load_engine(base, dtype="fp32")
        texts = [f"lab text {i}: what is {i} + {i}?" for i in range(200)]
        states = pooled_states(engine.model, engine.tokenizer, texts)
        noisy = states + 0.01 * np.random.default_rng(1).normal(size=states.shape)
        sk, gram = sklearn_replicate_ms(states, noisy, 50), gram_replicate_ms(states, noisy, 50)
        print(
            f"PCA refit per replicate, lab states {states.shape}: scikit-learn {sk:.1f} ms, Gram {gram:.1f} ms "
            f"({sk / gram:.1f}×)"
        )
        big = np.random.default_rng(2).normal(size=(41, 100, 5120))
        sk, gram = sklearn_replicate_ms(big, big + 0.1, 3), gram_replicate_ms(big, big + 0.1, 10)
        print(
            f"PCA refit per replicate, 14B-shaped states {big.shape}: scikit-learn {sk:.0f} ms, Gram {gram:.0f} ms "
            f"({sk / gram:.1f}×); {args.replicates} replicates ≈ {gram * args.replicates / 1000:.0f} s per benchmark"
        )
        for replicates in (0, args.replicates):
            start = time.perf_counter()
            run_tokens(TokenSettings(**common, bootstrap=replicates, max_new_tokens=64, batch_size=64))
            print(f"tokens, lab suite, {replicates} replicates: {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        drift = weight_drift(base, tuned)
        total = drift["total"]
        print(
            f"probe weights, lab base ({total['n']:,} weights, {total['tensors']} tensors): "
            f"{time.perf_counter() - start:.2f} s; unchanged {100 * total['unchanged_share']:.2f} %, "
            f"bf16-unchanged {100 * total['unchanged_bf16_share']:.2f} %, relative norm {total['relative_norm']:.4g}"
        )


if __name__ == "__main__":
    main()
