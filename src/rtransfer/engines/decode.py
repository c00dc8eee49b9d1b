"""Batched decoding that drops each answer from the batch as soon as it ends.

transformers' `generate()` keeps a finished row in the batch until the batch's longest answer ends, so a batch
costs rows × longest answer; evaluation's answers are short and unequal (lab suite: rows × longest is 1.2× the
answers' tokens in batches of 16, 1.6× in batches of 64). Its continuous batching
(`generate_batch`, which does drop finished requests) ran about 7× slower than `generate()` on a CPU here (the lab
base, 200 prompts: 14 s against 1.9 s), so this loop is written out: it is `generate()`'s greedy and multinomial
sampling path — the same position ids, the same logits warpers and stop-string criterion (transformers' own
classes) — with each finished row removed from the batch and from the KV cache (`Cache.batch_select_indices`).
One difference: generate() samples a whole batch from one RNG, so a row's draws depend on its batch-mates; here
each row samples from its own torch.Generator, seeded with its own seed, so a sampled answer is the one it would be
alone (a batch of one draws exactly as generate() does after `torch.manual_seed(seed)`).

The KV cache grows in place: transformers' DynamicCache concatenates every layer's keys and values at every step
(half of a decode step's time at batch 64 on the lab base, measured with torch.profiler), and its StaticCache
attends over the whole budget from the first step. `growing_cache` keeps the dynamic cache's layers, each writing
into a buffer with room to spare and handing attention a view of the part in use. The buffer grows by a fixed block
(`BLOCK` tokens), never past the batch's budget (longest prompt + max_new_tokens): a batch then never holds more KV
memory than the engine's admission rule charged it (rows × (prompt + max_new_tokens) × kv bytes per token), where
growing by half again could overshoot the budget by half (review G2).

A model spread over devices (`device_map`) keeps each layer's cache on that layer's device, while the logits, and so
the rows to keep, come back on the input's device: the indices are moved to each layer's device before selecting
(CUDA refuses indices from another GPU; review G1).

`supported(model)` says when the loop is `generate()`: a decoder-only model whose generation config asks for
nothing beyond ids, sampling settings and the cache. Anything else (a repetition penalty, a minimum length, ...)
goes to `generate()` instead.
"""

import functools
import inspect
from collections.abc import Sequence
from typing import Any

# Generation-config fields this loop honours, or that do not change what is decoded. Sampling settings come from
# the caller, never from the model's config, in both paths.
HANDLED = {
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "decoder_start_token_id",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "max_length",
    "max_new_tokens",
    "use_cache",
    "cache_implementation",  # a model's static-cache preference; rows are dropped from a dynamic cache instead
    "output_attentions",
    "output_hidden_states",
    "return_dict_in_generate",
    "transformers_version",
    "_from_model_config",
}


def supported(model) -> bool:
    """Whether `decode` reproduces `model.generate()` for this model (else the engine calls generate())."""
    if getattr(model.config, "is_encoder_decoder", False):
        return False
    extra = set(model.generation_config.to_diff_dict()) - HANDLED
    params = inspect.signature(model.forward).parameters
    return not extra and {"position_ids", "attention_mask"} <= set(params)


BLOCK = 256  # tokens a full buffer grows by: copies cost about used² / (2 × BLOCK) over an answer, <1% of attention


@functools.cache
def _growing_layer():
    """DynamicLayer with keys/values that are views into buffers growing by BLOCK tokens when full, up to `limit`
    tokens when one is set (a class made on first use: transformers is imported lazily)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                self.used, self.key_buffer, self.value_buffer = 0, None, None
            need = self.used + key_states.shape[-2]
            if self.key_buffer is None or need > self.key_buffer.shape[-2]:
                limit = getattr(self, "limit", None)
                self.key_buffer = _grown(self.key_buffer, key_states, self.used, need, limit)
                self.value_buffer = _grown(self.value_buffer, value_states, self.used, need, limit)
            self.key_buffer[..., self.used : need, :] = key_states
            self.value_buffer[..., self.used : need, :] = value_states
            self.used = need
            self.keys, self.values = self.key_buffer[..., :need, :], self.value_buffer[..., :need, :]
            return self.keys, self.values

        def batch_select_indices(self, indices):
            if self.get_seq_length() > 0:
                indices = indices.to(self.key_buffer.device)  # a split model: this layer may sit on another GPU
                self.key_buffer = _selected(self.key_buffer, indices, self.used)
                self.value_buffer = _selected(self.value_buffer, indices, self.used)
                self.keys = self.key_buffer[..., : self.used, :]
                self.values = self.value_buffer[..., : self.used, :]

    return GrowingLayer


def _selected(buffer, rows, used: int):
    """The buffer's `rows`, same room, only the `used` tokens copied: a buffer holds room for the batch's whole
    budget, and copying all of it at every dropped answer was 8% of the lab suite's decoding (Intel Xeon, profiled)."""
    import torch

    kept = torch.empty((len(rows), *buffer.shape[1:]), dtype=buffer.dtype, device=buffer.device)
    kept[..., :used, :] = buffer[..., :used, :].index_select(0, rows)
    return kept


def _grown(buffer, states, used: int, need: int, limit: int | None = None):
    import torch

    shape = list(states.shape)
    shape[-2] = max(need, min(need + BLOCK, limit)) if limit else need + BLOCK
    grown = torch.empty(shape, dtype=states.dtype, device=states.device)
    if buffer is not None:
        grown[..., :used, :] = buffer[..., :used, :]
    return grown


def growing_cache(model, limit: int | None = None):
    """A DynamicCache for `model` whose full-attention layers grow in place (sliding-window layers unchanged), each
    buffer to at most `limit` tokens (None: no bound)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    cache.layers = [_growing_layer()() if type(x) is DynamicLayer else x for x in cache.layers]
    for layer in cache.layers:
        layer.limit = limit
    return cache


def select_rows(cache, keep) -> None:
    """Keep only the batch rows `keep` in every layer of `cache`, the indices moved to each layer's device (a model
    split by device_map holds its layers, and their caches, on several GPUs)."""
    for layer in cache.layers:
        if layer.get_seq_length() > 0:
            layer.batch_select_indices(keep.to(layer.keys.device))


def forward_cache_name(model) -> str:
    """The KV cache's name in the model's forward() and its output: `cache` in recent transformers 5 releases,
    `past_key_values` before (5.17 has only that; 5.24 still takes it, deprecated until 5.40)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def padded_positions(mask):
    """Position ids as generate() makes them for a left-padded batch: counted over the real tokens, 0 on padding."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


def decode(
    model,
    input_ids,
    attention_mask,
    *,
    max_new_tokens: int,
    eos: Sequence[int],
    sampling: dict | None,
    stopping=None,
    generators: Sequence | None = None,
    limits: Sequence[int] | None = None,
    keep_eos: bool = False,
) -> list[tuple[list[int], bool]]:
    """One left-padded batch: each row's new token ids (the end-of-turn token left out, unless `keep_eos`) and
    whether it ended there.

    `sampling`: None for greedy, else {"temperature", "top_k", "top_p"} (top_k 0 and top_p 1 are off), each row
    drawn from its own torch.Generator in `generators`; `stopping`: a transformers StoppingCriteria (stop strings),
    or None; `limits`: each row's own cap on new tokens, at most max_new_tokens (the model's context left after its
    prompt), or None: max_new_tokens for every row."""
    import torch
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = LogitsProcessorList()
    if sampling:  # in generate()'s order
        if sampling["temperature"] != 1.0:
            warpers.append(TemperatureLogitsWarper(sampling["temperature"]))
        if sampling["top_k"]:
            warpers.append(TopKLogitsWarper(top_k=sampling["top_k"]))
        if sampling["top_p"] < 1.0:
            warpers.append(TopPLogitsWarper(top_p=sampling["top_p"]))
    cache_name = forward_cache_name(model)
    extra: dict[str, Any] = (
        {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    )

    positions = padded_positions(attention_mask)
    answers: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    ended = [False] * input_ids.shape[0]
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)  # each batch row's index in the answers
    sequences, mask, last = input_ids, attention_mask, positions[:, -1]
    with torch.inference_mode():
        cache = growing_cache(model, limit=input_ids.shape[1] + max_new_tokens)
        out = model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **extra,
            **{cache_name: cache},
        )
        # Tokens and the rows to keep live on the logits' device (a split model's hook returns them to the input's).
        eos_ids = torch.tensor(sorted(set(eos)), dtype=torch.long, device=out.logits.device)
        cap = None if limits is None else torch.tensor(limits, device=rows.device)
        for step in range(max_new_tokens):
            scores = warpers(sequences, out.logits[:, -1].float())
            if sampling:
                token = _sample(torch.softmax(scores, dim=-1), [generators[r] for r in rows.tolist()])
            else:
                token = torch.argmax(scores, dim=-1)
            sequences = torch.cat([sequences, token[:, None]], dim=-1)
            at_eos = torch.isin(token, eos_ids)
            done = at_eos | stopping(sequences, scores) if stopping is not None else at_eos
            if cap is not None:  # a row at its own cap ends like one at max_new_tokens ("length")
                done = done | (cap[rows] <= step + 1)
            for row, t, is_eos in zip(rows.tolist(), token.tolist(), at_eos.tolist(), strict=True):
                ended[row] = ended[row] or is_eos
                if keep_eos or not is_eos:
                    answers[row].append(t)
            if step == max_new_tokens - 1 or bool(done.all()):
                break
            if bool(done.any()):  # drop the finished rows: the rest no longer pay for them
                keep = torch.nonzero(~done).squeeze(1)
                select_rows(cache, keep)
                sequences, mask, last, rows, token = sequences[keep], mask[keep], last[keep], rows[keep], token[keep]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            last = last + 1
            out = model(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=last[:, None],
                use_cache=True,
                **{cache_name: cache},
            )
    return [(a, e) for a, e in zip(answers, ended, strict=True)]


def _sample(probs, generators):
    """One token per row, each row drawn from its own generator, so that its draws depend on its seed alone. This is
    torch.multinomial's own method for one sample (argmax of p / q, q ~ Exp(1)), so a row draws exactly what
    torch.multinomial draws for it alone (tested against generate()), without its per-call checks: at batch 64
    over the lab's 402 tokens, three times faster than a multinomial call per row, about one call for the batch."""
    import torch

    q = torch.empty_like(probs)
    for row, generator in zip(q, generators, strict=True):
        row.exponential_(generator=generator)
    return torch.argmax(probs / q, dim=-1)
