"""GRPO's and on-policy SFT's rollouts drawn by rtransfer's decoder, through TRL's `rollout_func` hook.

TRL draws rollouts with transformers' generate(), which keeps a finished row in the batch until the longest row
ends and samples the whole batch from torch's global RNG. `engines/decode.py` (the evaluation engine's decoder)
drops each row as it ends and draws each row from its own seeded generator: the same sampling (generate()'s logits
warpers, multinomial draws; tested against generate()), fewer forward rows. TRL's hook hands over the prompts of
this process's generation batch (each prompt already repeated `rollouts` times by TRL's sampler) and takes one
completion per row, in order; the log-probs are left to TRL (None), which computes them from the live weights as
it does after generate().

Each row's seed is derived from the recipe's seed, the optimiser step and the row's place in the whole generation
batch, not from torch's RNG: a resumed run draws the rollouts the uninterrupted run drew, and a row's draw does not
depend on its batch-mates or the thread count. Why by hand: TRL leaves the sampler to the hook; this module is the
glue between the two (prompt rendering as TRL renders it, the end-of-turn token kept so the loss learns to stop).

Sharded runs (FSDP, ZeRO-3) hold a shard of each weight per process; the decoder needs whole weights, so they
refuse this sampler (use vLLM there).
"""

import hashlib
from typing import Any

from rtransfer.engines.base import SamplingParams
from rtransfer.engines.hf import HFEngine
from rtransfer.errors import RtransferError
from rtransfer.train.config import THINKING, SamplingRecipe


def row_seed(seed: int, step: int, row: int) -> int:
    """A 63-bit seed for one rollout row, from the recipe's seed, the optimiser step and the row's global index."""
    digest = hashlib.sha256(f"rollout:{seed}:{step}:{row}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def engine_rollouts(recipe: SamplingRecipe):
    """TRL's rollout_func drawing `recipe`'s rollouts with rtransfer's decoder from the trainer's live weights."""
    params = SamplingParams(
        temperature=recipe.temperature, top_p=recipe.top_p, max_new_tokens=recipe.max_completion_length
    )

    def rollout(prompts: list, trainer) -> dict[str, Any]:
        accelerator = trainer.accelerator
        if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
            raise RtransferError('sampler = "rtransfer" needs whole weights in each process: not FSDP or DeepSpeed')
        model = accelerator.unwrap_model(trainer.model)
        engine = HFEngine(
            model,
            trainer.processing_class,
            batch_size=len(prompts),
            one_thread_per_batch=True,  # the samples, and so the weights, never depend on a speed measurement
            thinking=THINKING[recipe.thinking],
        )
        engine.eos_ids = set(trainer.eos_token_ids)  # where TRL's own rollouts end, and its truncation check looks
        prompt_ids = [engine.encode(engine.render(p)) for p in prompts]
        first = accelerator.process_index * len(prompts)  # this process's rows in the whole generation batch
        seeds = [row_seed(recipe.seed, trainer.state.global_step, first + i) for i in range(len(prompts))]
        training = model.training
        model.eval()  # no dropout in sampling, and the cache on even under gradient checkpointing
        try:
            answers = engine.sample_ids(prompt_ids, params, seeds)
        finally:
            model.train(training)
        return {"prompt_ids": prompt_ids, "completion_ids": [ids for ids, _ in answers], "logprobs": None}

    return rollout
