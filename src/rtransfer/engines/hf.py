"""In-process transformers engine: batched generation and log-likelihood scoring, on a CPU or GPUs.

Generation sorts prompts by length and pads on the left, so each batch wastes little compute on padding and
every prompt ends where generation starts. Log-likelihood scoring runs each context once and scores all of its
continuations from the cached keys/values (multiple-choice contexts are long, the choices short).
"""

import hashlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtransfer.engines.base import AnswersInOrder, Generation, Messages, SamplingParams, cut_at_stop, render_plain
from rtransfer.errors import RtransferError, first_line


class ModelLoadError(RtransferError):
    pass


DTYPES = ("auto", "float32", "bfloat16", "float16")


class HFEngine(AnswersInOrder):
    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        device_map: str | None = None,
        batch_size: int = 8,
        chat: bool | None = None,
        thinking: bool | None = None,
        trust_remote_code: bool = False,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in DTYPES:
            raise ModelLoadError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
        self.model_id, self.revision, self.batch_size = model, revision, max(1, batch_size)
        local = Path(model).expanduser()
        if (model.startswith((".", "/", "~")) or local.exists()) and not (local / "config.json").exists():
            raise ModelLoadError(f"model path {model!r} does not exist or holds no config.json")
        kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(
                model, dtype=dtype if dtype == "auto" else getattr(torch, dtype), device_map=device_map, **kwargs
            )
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"cannot load model {model!r}: {first_line(err)}") from None
        if device_map is None:
            self.model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.eval()
        self._setup(chat, thinking)

    @classmethod
    def from_loaded(cls, model, tokenizer, *, model_id: str, batch_size: int = 8, chat=None, thinking=None):
        """An engine over a model already in memory (on-policy training samples from the weights it trains)."""
        self = cls.__new__(cls)
        self.model_id, self.revision, self.batch_size = model_id, None, max(1, batch_size)
        self.model, self.tokenizer = model, tokenizer
        self._setup(chat, thinking)
        return self

    def _setup(self, chat: bool | None, thinking: bool | None) -> None:
        self.device = next(self.model.parameters()).device
        self.chat = bool(self.tokenizer.chat_template) if chat is None else chat
        if self.chat and not self.tokenizer.chat_template:
            raise ModelLoadError(f"model {self.model_id!r} has no chat template; use base-model mode (--no-chat)")
        self.thinking = thinking
        if self.tokenizer.pad_token_id is None:  # many base models ship without one; padding is masked anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token

    # --- prompts -----------------------------------------------------------------------------------------
    def render(self, messages: Messages) -> str:
        if not self.chat:
            return render_plain(messages)
        extra = {} if self.thinking is None else {"enable_thinking": self.thinking}
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)

    def encode(self, text: str) -> list[int]:
        # A rendered chat template already holds its special tokens; plain text gets the tokenizer's own (BOS).
        return self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]

    # --- generation ----------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Messages], params: SamplingParams, seeds: Sequence[int]) -> list[Generation]:
        import torch

        encoded = [self.encode(self.render(p)) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        out: list[Generation | None] = [None] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            # HF sampling draws from one global RNG per batch, so a sampled output is reproducible given the
            # same seeds, batch size and order; greedy outputs do not depend on batching.
            batch_seed = _combine_seeds(seeds[i] for i in batch) if params.temperature > 0 else None
            if batch_seed is not None:
                torch.manual_seed(batch_seed)
            for i, gen in zip(batch, self._generate_batch([encoded[i] for i in batch], params), strict=True):
                gen.seed = batch_seed
                out[i] = gen
        return out  # type: ignore[return-value]

    def _generate_batch(self, batch: list[list[int]], params: SamplingParams) -> list[Generation]:
        results = []
        for tokens, ended in self.generate_ids(batch, params):
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            text, cut = cut_at_stop(text, params.stop)
            finish = "stop" if ended or cut else "length"
            results.append(Generation(text=text, tokens=len(tokens), finish_reason=finish))
        return results

    def generate_ids(self, batch: list[list[int]], params: SamplingParams) -> list[tuple[list[int], bool]]:
        """One left-padded batch of prompts (token ids): each answer's token ids, cut before the end-of-turn token,
        and whether it ended there. Ids matter to the token probes, which must score exactly what was produced."""
        import torch

        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.device)
        sampling = params.temperature > 0
        kwargs: dict[str, Any] = {"do_sample": sampling, "max_new_tokens": params.max_new_tokens, "pad_token_id": pad}
        if sampling:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or None)
        else:  # explicit, so a model's generation_config cannot switch greedy decoding to sampling
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            output = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        eos = set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}
        answers = []
        for row in output[:, width:].tolist():
            ended = next((j for j, t in enumerate(row) if t in eos), None)
            answers.append((row if ended is None else row[:ended], ended is not None))
        return answers

    # --- log-likelihood ----------------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[tuple[Messages, Sequence[str]]]) -> list[list[float]]:
        return [
            self._score_choices(self.render(context), [c.removeprefix(" ") if self.chat else c for c in choices])
            for context, choices in requests
        ]

    @property
    def _cache_name(self) -> str:
        """The KV cache's name in the model's forward() and its output: `cache` in recent transformers 5 releases,
        `past_key_values` before (5.17 has only that; 5.24 still takes it, deprecated until 5.40)."""
        return "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    def _score_choices(self, context: str, continuations: Sequence[str]) -> list[float]:
        import torch

        context_ids = self.encode(context)
        # Tokenize context+continuation together and split at the context's length (as lm-evaluation-harness
        # does), so BPE merges across the boundary match what the model would see in running text.
        conts = []
        for c in continuations:
            whole = self.encode(context + c)
            if whole[: len(context_ids)] != context_ids or len(whole) == len(context_ids):
                whole = context_ids + self.tokenizer(c, add_special_tokens=False)["input_ids"]
            conts.append(whole[len(context_ids) :])
        with torch.inference_mode():
            ctx = torch.tensor([context_ids], device=self.device)
            first = self.model(input_ids=ctx, use_cache=True)
            cache_name = self._cache_name  # one signature lookup per request, not two
            cache = getattr(first, cache_name)
            last_logprobs = torch.log_softmax(first.logits[0, -1].float(), dim=-1)
            n, width = len(conts), max(len(c) for c in conts)
            cache.batch_repeat_interleave(n)
            pad = self.tokenizer.pad_token_id
            ids = torch.tensor([c + [pad] * (width - len(c)) for c in conts], device=self.device)
            mask = torch.tensor(
                [[1] * len(context_ids) + [1] * len(c) + [0] * (width - len(c)) for c in conts], device=self.device
            )
            logits = self.model(input_ids=ids, attention_mask=mask, **{cache_name: cache}).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1)
        scores = []
        for i, c in enumerate(conts):
            # Token 0 is predicted by the context's last position; token j by continuation position j-1.
            total = last_logprobs[c[0]].item()
            total += sum(logprobs[i, j - 1, c[j]].item() for j in range(1, len(c)))
            scores.append(total)
        return scores

    # --- identity ----------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "engine": "hf",
            "model": self.model_id,
            "revision": self.revision,
            "chat_template": self.tokenizer.chat_template if self.chat else None,
            "chat": self.chat,
            "thinking": self.thinking,
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": str(self.device),
        }


def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, list | tuple) else [x]


def _combine_seeds(seeds) -> int:
    digest = hashlib.sha256(",".join(str(s) for s in seeds).encode()).digest()
    return int.from_bytes(digest[:4], "little")
