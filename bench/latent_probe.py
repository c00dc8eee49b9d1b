"""One forward pass for all layers versus the authors' one pass per layer, on the same inputs.

    python bench/latent_probe.py [--layers 8] [--samples 64] [--pooling mean|paper]

Builds two tiny random models (same tokenizer, different seeds), pools the hidden states of every layer of
the lab_arith prompts both ways, checks that the vectors, d and CKA are identical, and prints the speedup
(expected: close to the number of hidden-state layers, layers + 1).
"""

import argparse
import tempfile
import time

import numpy as np


def per_layer_states(model, tokenizer, texts, pooling: str, batch_size: int) -> np.ndarray:
    """The authors' procedure: for each layer, a full forward pass over all texts, keeping that layer only."""
    from rtransfer.probes import latent

    n_layers = model.config.num_hidden_layers + 1
    out = []
    for layer in range(n_layers):
        # Same pooling code, but a separate pass over the data for every layer.
        states = latent.pooled_states(model, tokenizer, texts, pooling=pooling, batch_size=batch_size)
        out.append(states[layer])
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--pooling", choices=("mean", "paper"), default="mean")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rtransfer.benchmarks.registry import get_task
    from rtransfer.lab.tiny import build_tiny_model
    from rtransfer.probes.latent import pca_shift, pooled_states

    torch.set_num_threads(2)
    tmp = tempfile.mkdtemp(prefix="rtransfer-bench-")
    base_dir = build_tiny_model(f"{tmp}/base", layers=args.layers, hidden_size=args.hidden, seed=0)
    tok = AutoTokenizer.from_pretrained(base_dir)
    tuned_dir = build_tiny_model(f"{tmp}/tuned", tokenizer=tok, layers=args.layers, hidden_size=args.hidden, seed=1)
    base, tuned = (AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval() for d in (base_dir, tuned_dir))
    task = get_task("lab_arith")
    texts = [task.prompt(d)[-1]["content"] for d in task.load(None)[: args.samples]]
    opts = {"pooling": args.pooling, "batch_size": args.batch_size}

    pooled_states(base, tok, texts[:2], **opts)  # warm-up: lazy imports and first-call costs out of the timing
    t0 = time.perf_counter()
    one = [pooled_states(m, tok, texts, **opts) for m in (base, tuned)]
    t1 = time.perf_counter()
    per = [per_layer_states(m, tok, texts, args.pooling, args.batch_size) for m in (base, tuned)]
    t2 = time.perf_counter()

    same = all(np.array_equal(a, b) for a, b in zip(one, per, strict=True))
    r1, r2 = pca_shift(*one), pca_shift(*per)
    print(f"models: {args.layers} blocks → {args.layers + 1} hidden-state layers; {len(texts)} texts; {args.pooling}")
    print(f"pooled vectors identical: {same}")
    print(f"d: one pass {r1['d']:.6f}   per layer {r2['d']:.6f}   identical: {r1['d'] == r2['d']}")
    print(f"CKA identical: {r1['cka'] == r2['cka']}")
    print(f"time: one pass {t1 - t0:.2f} s   per layer {t2 - t1:.2f} s   speedup {(t2 - t1) / (t1 - t0):.1f}x")
    if not (same and r1["d"] == r2["d"] and r1["cka"] == r2["cka"]):
        raise SystemExit("MISMATCH between the one-pass and the per-layer implementations")


if __name__ == "__main__":
    main()
