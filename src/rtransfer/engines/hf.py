"""In-process transformers engine: batched generation and log-likelihood scoring, on a CPU or GPUs.

Generation sorts a whole call's prompts by length (the runner hands over everything pending), cuts them into
batches of at most batch_size prompts and batch_tokens padded prompt tokens, pads on the left so every prompt ends
where generation starts, and yields each batch's answers as it ends; on a CPU two batches run at once by default
(`streams`, each on its own thread). Decoding (decode.py) drops each answer from its batch as it finishes.
Log-likelihood scoring packs each document into one row (its context once, then every continuation under a block
mask), sorted by length and batched the same way.
Measured against lm-evaluation-harness's `hf` backend on the same prompts: bench/vs_lmeval.py.
"""

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from rtransfer.engines.base import CollectsStream, Generation, Messages, SamplingParams, cut_at_stop, render_plain
from rtransfer.engines.decode import decode, supported
from rtransfer.errors import RtransferError, first_line
from rtransfer.online import hub_offline, offline_message


class ModelLoadError(RtransferError):
    pass


DTYPES = ("auto", "float32", "bfloat16", "float16")
BATCH_TOKENS = {False: 4096, True: 32768}  # default padded prompt tokens per batch: CPU, GPU


class HFEngine(CollectsStream):
    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        device_map: str | None = None,
        batch_size: int = 8,
        batch_tokens: int | None = None,
        streams: int | None = None,
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
        # A hub id without a connection: the local cache only, at once (the hub libraries retry for 49 s).
        offline = None if local.exists() else hub_offline()
        if offline:
            kwargs["local_files_only"] = True
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(
                model, dtype=dtype if dtype == "auto" else getattr(torch, dtype), device_map=device_map, **kwargs
            )
        except (OSError, ValueError) as err:
            if offline:
                raise ModelLoadError(offline_message(model, offline)) from None
            raise ModelLoadError(f"cannot load model {model!r}: {first_line(err)}") from None
        if device_map is None:
            self.model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.eval()
        self._setup(chat, thinking, batch_tokens, streams)

    @classmethod
    def from_loaded(
        cls,
        model,
        tokenizer,
        *,
        model_id: str,
        batch_size: int = 8,
        batch_tokens=None,
        streams=None,
        chat=None,
        thinking=None,
    ):
        """An engine over a model already in memory (on-policy training samples from the weights it trains)."""
        self = cls.__new__(cls)
        self.model_id, self.revision, self.batch_size = model_id, None, max(1, batch_size)
        self.model, self.tokenizer = model, tokenizer
        self._setup(chat, thinking, batch_tokens, streams)
        return self

    def _setup(self, chat: bool | None, thinking: bool | None, batch_tokens: int | None, streams: int | None) -> None:
        self.device = next(self.model.parameters()).device
        if streams is not None and streams < 1:
            raise ModelLoadError(f"streams must be 1 or more, not {streams}")
        self.streams = streams
        # A batch holds at most batch_size prompts and batch_tokens padded prompt tokens: long prompts in big
        # batches make a prefill slower than in small ones (CPU, MATH-500 prompts on the lab base: 1.6 s in
        # batches of 2, 3.6 s in batches of 16); short ones still fill the batch for decoding.
        self.batch_tokens = batch_tokens or BATCH_TOKENS[self.device.type == "cuda"]
        self.chat = bool(self.tokenizer.chat_template) if chat is None else chat
        if self.chat and not self.tokenizer.chat_template:
            raise ModelLoadError(f"model {self.model_id!r} has no chat template; use base-model mode (--no-chat)")
        self.thinking = thinking
        if self.tokenizer.pad_token_id is None:  # many base models ship without one; padding is masked anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos_ids = set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}
        self.fast_decode = supported(self.model)
        self._stop_criteria: dict[tuple[str, ...], Any] = {}

    # --- prompts -----------------------------------------------------------------------------------------
    def render(self, messages: Messages) -> str:
        if not self.chat:
            return render_plain(messages)
        extra = {} if self.thinking is None else {"enable_thinking": self.thinking}
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)

    def encode(self, text: str) -> list[int]:
        # A rendered chat template already holds its special tokens; plain text gets the tokenizer's own (BOS).
        return self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]

    # --- generation ---------------------------------------------------------------------------------------
    def generate_stream(
        self, prompts: Sequence[Messages], params: SamplingParams, seeds: Sequence[int]
    ) -> Iterator[tuple[int, Generation]]:
        """(index, generation) a batch at a time, as each batch ends. The whole call is sorted by prompt length
        (longest first), so a runner that hands over everything pending gets the least padding and still writes
        each batch as it ends. On a CPU, `streams` batches decode at once (see `_streams`)."""
        encoded = [self.encode(self.render(p)) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))

        def run(batch: list[int]) -> list[tuple[int, Generation]]:
            # Sampling draws from a generator seeded per batch, so a sampled output is reproducible given the same
            # seeds, batch size, token budget and order; greedy outputs do not depend on batching.
            seed = _combine_seeds(seeds[i] for i in batch) if params.temperature > 0 else None
            gens = self._generate_batch([encoded[i] for i in batch], params, seed)
            for gen in gens:
                gen.seed = seed
            return list(zip(batch, gens, strict=True))

        # generate() (the fallback) draws from torch's global RNG, so it runs one batch at a time.
        streams = self._streams() if self.fast_decode else 1
        yield from concurrently(run, self._batches(order, [len(e) for e in encoded]), streams)

    def _streams(self) -> int:
        """How many batches run at once: `streams`, else 2 on a CPU with 2 threads or more. A decoding step of a
        small model is mostly per-operation overhead, which a second intra-op thread does not split but a second
        batch on its own thread overlaps (torch releases the GIL in its kernels). On 2 cores, the lab suite on the
        lab base against one batch on 2 threads, two measurements of 3 alternating rounds: 1.17x and 1.05x faster
        (0.99-1.38x per round); 1.9x while this machine's 2-thread kernels ran slow. Never slower overall."""
        import torch

        if self.streams is not None:
            return self.streams
        return 2 if self.device.type == "cpu" and torch.get_num_threads() >= 2 else 1

    def _batches(self, order: list[int], lengths: list[int]) -> Iterator[list[int]]:
        """`order` (longest first) cut into batches of at most batch_size rows and batch_tokens padded tokens."""
        batch: list[int] = []
        for i in order:
            if batch and (len(batch) == self.batch_size or (len(batch) + 1) * lengths[batch[0]] > self.batch_tokens):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _generate_batch(self, batch: list[list[int]], params: SamplingParams, seed: int | None) -> list[Generation]:
        results = []
        for tokens, ended in self.generate_ids(batch, params, seed):
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            text, cut = cut_at_stop(text, params.stop)
            finish = "stop" if ended or cut else "length"
            results.append(Generation(text=text, tokens=len(tokens), finish_reason=finish))
        return results

    def generate_ids(
        self, batch: list[list[int]], params: SamplingParams, seed: int | None = None
    ) -> list[tuple[list[int], bool]]:
        """One left-padded batch of prompts (token ids): each answer's token ids, cut before the end-of-turn token,
        and whether it ended there. Ids matter to the token probes, which must score exactly what was produced.
        Sampling draws from a generator seeded with `seed`, or from torch's global RNG when it is None."""
        import torch

        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.device)
        if self.fast_decode:
            sampling = None
            if params.temperature > 0:
                sampling = {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p}
            stopping = self._stop_criterion(params.stop) if params.stop else None
            generator = None if seed is None else torch.Generator(self.device).manual_seed(seed)
            return decode(
                self.model,
                input_ids,
                mask,
                max_new_tokens=params.max_new_tokens,
                eos=self.eos_ids,
                sampling=sampling,
                stopping=stopping,
                generator=generator,
            )
        if seed is not None:
            torch.manual_seed(seed)
        return self._generate_ids_hf(input_ids, mask, params)

    def _stop_criterion(self, stops: tuple[str, ...]):
        """transformers' StopStringCriteria for these stops, built once per engine (it preprocesses the whole
        vocabulary) rather than once per batch; it keeps no state between calls."""
        if stops not in self._stop_criteria:
            from transformers import StopStringCriteria

            self._stop_criteria[stops] = StopStringCriteria(self.tokenizer, list(stops))
        return self._stop_criteria[stops]

    def _generate_ids_hf(self, input_ids, mask, params: SamplingParams) -> list[tuple[list[int], bool]]:
        """The same through transformers' generate(), for models whose generation config asks for more than
        decode.py implements."""
        import torch

        pad = self.tokenizer.pad_token_id
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
        answers = []
        for row in output[:, input_ids.shape[1] :].tolist():
            ended = next((j for j, t in enumerate(row) if t in self.eos_ids), None)
            answers.append((row if ended is None else row[:ended], ended is not None))
        return answers

    # --- log-likelihood ----------------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[tuple[Messages, Sequence[str]]]) -> list[list[float]]:
        """Documents are sorted by length and scored in batches (as prompts are), one row per document: its
        context once, then every continuation, each attending to the context and to itself only (a block mask), its
        positions counted on from the context's end. So no context is computed twice and no continuation is padded
        to the longest; the model sees exactly what it would see scoring context + continuation alone."""
        items = [
            self._tokenize_choices(self.render(context), [c.removeprefix(" ") if self.chat else c for c in choices])
            for context, choices in requests
        ]
        lengths = [len(ctx) + sum(map(len, conts)) for ctx, conts in items]  # each document's packed row
        order = sorted(range(len(items)), key=lambda i: -lengths[i])
        out: list[list[float]] = [[] for _ in items]

        def score(batch: list[int]) -> list[tuple[int, list[float]]]:
            return list(zip(batch, self._score_packed([items[i] for i in batch]), strict=True))

        for i, scores in concurrently(score, self._batches(order, lengths), self._streams()):
            out[i] = scores
        return out

    def _tokenize_choices(self, context: str, continuations: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        context_ids = self.encode(context)
        # Tokenize context+continuation together and split at the context's length (as lm-evaluation-harness
        # does), so BPE merges across the boundary match what the model would see in running text.
        conts = []
        for c in continuations:
            whole = self.encode(context + c)
            if whole[: len(context_ids)] != context_ids or len(whole) == len(context_ids):
                whole = context_ids + self.tokenizer(c, add_special_tokens=False)["input_ids"]
            conts.append(whole[len(context_ids) :])
        return context_ids, conts

    def _score_packed(self, items: list[tuple[list[int], list[list[int]]]]) -> list[list[float]]:
        import torch

        rows = [pack_choices(ctx, conts) for ctx, conts in items]
        width = max(len(ids) for ids, _, _, _ in rows)
        pad = self.tokenizer.pad_token_id

        def padded(column: int, fill: int):
            return torch.tensor([r[column] + [fill] * (width - len(r[column])) for r in rows], device=self.device)

        ids, positions, blocks = padded(0, pad), padded(1, 0), padded(2, -1)
        # Query i sees key j when j <= i and j is context (block 0) or in i's own block; padding sees only itself,
        # so that no row of the mask is empty (an empty row makes NaN keys that poison the masked products too).
        causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        same = (blocks[:, None, :] == 0) | (blocks[:, None, :] == blocks[:, :, None])
        allowed = causal & same & (blocks[:, None, :] >= 0) | torch.eye(width, dtype=torch.bool, device=self.device)
        mask = torch.zeros(allowed.shape, dtype=self.model.dtype, device=self.device)
        mask = mask.masked_fill(~allowed, torch.finfo(self.model.dtype).min)[:, None]
        # Logits only where a continuation token is predicted (the vocabulary projection is the big tensor).
        wanted = sorted({p for _, _, _, predictors in rows for p, _, _ in predictors})
        keep = torch.tensor(wanted, device=self.device)
        column = {p: k for k, p in enumerate(wanted)}
        scored = [(b, column[p], t, choice) for b, r in enumerate(rows) for p, t, choice in r[3]]
        row_of, at, target = (torch.tensor([s[i] for s in scored], device=self.device) for i in range(3))
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=keep
            ).logits
            picked = torch.log_softmax(logits[row_of, at].float(), dim=-1).gather(1, target[:, None])[:, 0].tolist()
        out: list[list[float]] = [[0.0] * len(conts) for _, conts in items]
        for (b, _, _, choice), value in zip(scored, picked, strict=True):
            out[b][choice] += value
        return out

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


def pack_choices(context: list[int], continuations: list[list[int]]):
    """One row holding a context and all its continuations: (ids, position ids, block per token: 0 for the
    context, k for continuation k, and (row index of the predicting token, target id, k - 1) per continuation
    token). A continuation's first token is predicted by the context's last."""
    ids, positions, blocks, predictors = list(context), list(range(len(context))), [0] * len(context), []
    for k, cont in enumerate(continuations, start=1):
        start = len(ids)
        ids += cont
        positions += range(len(context), len(context) + len(cont))
        blocks += [k] * len(cont)
        predictors += [(len(context) - 1 if t == 0 else start + t - 1, token, k - 1) for t, token in enumerate(cont)]
    return ids, positions, blocks, predictors


def concurrently(fn: Callable[[Any], list], items: Iterable, streams: int) -> Iterator:
    """`fn` over `items` on `streams` threads, each result's elements yielded as soon as it ends, with at most
    `streams` items in flight; torch's intra-op threads are split among the streams meanwhile (torch releases the
    GIL inside its kernels, so the threads overlap). A consumer that stops early waits only for those in flight.
    One stream is a plain loop in the caller's thread."""
    import torch

    if streams == 1:
        for item in items:
            yield from fn(item)
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // streams))
    pending = iter(items)
    pool = ThreadPoolExecutor(streams)
    try:
        running = {pool.submit(fn, item) for item in itertools.islice(pending, streams)}
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                running |= {pool.submit(fn, item) for item in itertools.islice(pending, 1)}
                yield from future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)


def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, list | tuple) else [x]


def _combine_seeds(seeds) -> int:
    digest = hashlib.sha256(",".join(str(s) for s in seeds).encode()).digest()
    return int.from_bytes(digest[:4], "little")
