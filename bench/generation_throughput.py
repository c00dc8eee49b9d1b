"""Generation throughput of the HF engine (length-sorted, left-padded batches) against a naive loop that calls
`generate` on one prompt at a time, on the same tiny local Qwen3 model and prompts. Prints tokens/s of both.

    python bench/generation_throughput.py [--prompts 64] [--new-tokens 64] [--batch-size 16] [--model DIR]
"""

import argparse
import tempfile
import time

import torch

from rtransfer.engines.base import SamplingParams
from rtransfer.engines.hf import HFEngine
from rtransfer.lab.tiny import build_tiny_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", help="a model directory (default: a fresh tiny model, hidden 256, 4 layers)")
    args = ap.parse_args()
    model = args.model or str(build_tiny_model(tempfile.mkdtemp() + "/tiny", hidden_size=256, layers=4, heads=8))
    engine = HFEngine.load(model, batch_size=args.batch_size)
    prompts = [[{"role": "user", "content": "Solve: " + "12 plus 30 " * (1 + i % 9)}] for i in range(args.prompts)]
    # No end-of-turn token, so both runs generate the same number of tokens whatever the random model says (a
    # min_new_tokens setting would do it too, but sends the engine to generate() instead of its own decoding).
    engine.model.generation_config.eos_token_id, engine.eos_ids = None, set()
    params = SamplingParams(max_new_tokens=args.new_tokens)

    start = time.perf_counter()
    batched = engine.generate(prompts, params, seeds=[0] * len(prompts))
    batched_s = time.perf_counter() - start
    batched_tokens = sum(g.tokens for g in batched)

    start = time.perf_counter()
    naive_tokens = 0
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([engine.encode(engine.render(p))], device=engine.device)
            out = engine.model.generate(
                input_ids=ids,
                max_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=engine.tokenizer.pad_token_id,
            )
            naive_tokens += out.shape[1] - ids.shape[1]
    naive_s = time.perf_counter() - start

    print(
        f"device {engine.device}, {args.prompts} prompts, {args.new_tokens} new tokens each, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"HF engine, batch {args.batch_size:3d}: {batched_tokens / batched_s:9.1f} tokens/s ({batched_s:.2f} s)")
    print(f"naive one-at-a-time loop: {naive_tokens / naive_s:9.1f} tokens/s ({naive_s:.2f} s)")
    print(f"speedup: {(batched_tokens / batched_s) / (naive_tokens / naive_s):.1f}x")


if __name__ == "__main__":
    main()
