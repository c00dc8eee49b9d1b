"""In-process transformers engine: batched generation and log-likelihood scoring, on a CPU or GPUs.

Generation sorts a whole call's prompts by length (the runner hands over everything pending), cuts them into
batches of at most batch_size prompts and batch_tokens padded prompt tokens, pads on the left so every prompt ends
where generation starts, and yields each batch's answers as it ends; on a CPU two batches run at once by default
(`parallel_batches`, each on its own thread). Decoding (decode.py) drops each answer from its batch as it finishes.

The contract (engines.base.Engine): prompts[i] is sampled with seeds[i] alone. Each row draws from its own
torch.Generator seeded with its seed, so a sampled answer does not depend on the other prompts of the call,
batch_size, batch_tokens, parallel_batches, or which prompts a resumed run still has to answer, up to
floating-point batching effects (a padded batch's logits may differ from a lone prompt's in the last bits, which can
tip a near tie). Greedy answers do not depend on batching either.

Log-likelihood scoring packs each document into one row (its context once, then every continuation under a block
mask), sorted by length and batched the same way.

At scale (review G1, G2, G4, G5): a generation batch is also admitted only while rows × (longest prompt +
max_new_tokens) × the model's KV bytes per token fits `kv_budget` (on a GPU by default 0.8 of the free memory after
the weights; on a CPU no limit), and a batch that runs out of memory anyway is split in two and retried (rows are
independent, so the answers are the same). Each prompt may generate at most the model's context
(max_position_embeddings) less its own length; a clamp is recorded in the Generation's `extra`, and a prompt that
fills the context gets an empty "length" answer rather than stopping a run of thousands of prompts (its record says
why). The stop set is the eos ids of both the generation config and the tokenizer plus the chat template's
end-of-turn token (`base.stop_token_ids`), the same set the openai engine sends to servers.
Measured against lm-evaluation-harness's `hf` backend on the same prompts: bench/vs_lmeval.py.
"""

import contextlib
import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from rtransfer.engines.base import (
    CollectsStream,
    Generation,
    Messages,
    SamplingParams,
    clamp_note,
    cut_at_stop,
    model_context,
    render_plain,
    stop_token_ids,
)
from rtransfer.engines.calibration import measured_parallel_batches
from rtransfer.engines.decode import decode, supported
from rtransfer.errors import ModelLoadError, RtransferError, first_line
from rtransfer.online import hub_kernels, hub_offline, offline_message

DTYPES = ("auto", "float32", "bfloat16", "float16")
BATCH_TOKENS = {False: 4096, True: 32768}  # default padded prompt tokens per batch: CPU, GPU
KV_SHARE = 0.8  # of a GPU's free memory after the weights, for KV caches (the rest: activations, logits, slack)


class EngineMemoryError(RtransferError):
    """One prompt alone does not fit in memory."""


class HFEngine(CollectsStream):
    def __init__(
        self,
        model,
        tokenizer,
        *,
        model_id: str | None = None,
        revision: str | None = None,
        batch_size: int = 8,
        batch_tokens: int | None = None,
        parallel_batches: int | None = None,
        one_thread_per_batch: bool = False,
        chat: bool | None = None,
        thinking: bool | None = None,
        kv_budget: int | None = None,
    ):
        """An engine over a transformers model and its tokenizer, already loaded and placed (`load` reads them;
        on-policy training samples from the weights it trains). `model_id` names the model in `describe` (default:
        the model's name_or_path); `parallel_batches`: batches decoding at once (None: on a CPU with 2 threads or
        more, as measured on this machine: engines/calibration.py; else 1); `one_thread_per_batch` (when
        `parallel_batches` is None): on a CPU, as many batches at once as torch has threads, each on one, so the
        answers do not depend on the process's thread count (the study's schedules); `kv_budget`: bytes of KV
        cache a generation batch may claim (None: KV_SHARE of the free memory of the model's GPUs, no limit on a
        CPU)."""
        if parallel_batches is not None and parallel_batches < 1:
            raise ModelLoadError(f"parallel_batches must be 1 or more, not {parallel_batches}")
        self.model, self.tokenizer = model, tokenizer
        self.model_id = model_id or getattr(model, "name_or_path", "")
        self.revision, self.batch_size, self.parallel_batches = revision, max(1, batch_size), parallel_batches
        self.one_thread_per_batch = one_thread_per_batch
        self.device = next(model.parameters()).device
        # A batch holds at most batch_size prompts and batch_tokens padded prompt tokens: long prompts in big
        # batches make a prefill slower than in small ones (CPU, MATH-500 prompts on the lab base: 1.6 s in
        # batches of 2, 3.6 s in batches of 16); short ones still fill the batch for decoding.
        self.batch_tokens = batch_tokens or BATCH_TOKENS[self.device.type == "cuda"]
        self.chat = bool(tokenizer.chat_template) if chat is None else chat
        if self.chat and not tokenizer.chat_template:
            raise ModelLoadError(f"model {self.model_id!r} has no chat template; use base-model mode (--no-chat)")
        self.thinking = thinking
        if tokenizer.pad_token_id is None:  # many base models ship without one; padding is masked anyway
            tokenizer.pad_token = tokenizer.eos_token
        self.eos_ids = set(stop_token_ids(tokenizer, _as_list(model.generation_config.eos_token_id)))
        self.fast_decode = supported(model)
        self.context = model_context(model.config)
        self.kv_bytes = kv_bytes_per_token(model.config, model.dtype)
        self.kv_budget = kv_budget if kv_budget is not None else default_kv_budget(model)
        self._stop_criteria: dict[tuple[str, ...], Any] = {}
        self._measured_parallel: dict[int, int] = {}  # calibration's choice per torch thread count

    @classmethod
    def load(
        cls,
        model: str,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        device_map: str | None = None,
        trust_remote_code: bool = False,
        **settings: Any,
    ) -> "HFEngine":
        """The engine over the model at `model` (a local directory or a hub id; offline: the local cache only, at
        once), in eval mode on `device` (default: cuda when there is one) or spread by `device_map`. `settings` are
        __init__'s (batch_size, batch_tokens, parallel_batches, chat, thinking)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in DTYPES:
            raise ModelLoadError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
        local = Path(model).expanduser()
        if (model.startswith((".", "/", "~")) or local.exists()) and not (local / "config.json").exists():
            raise ModelLoadError(f"model path {model!r} does not exist or holds no config.json")
        kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        # A hub id without a connection: the local cache only, at once (the hub libraries retry for 49 s).
        offline = None if local.exists() else hub_offline()
        if offline:
            kwargs["local_files_only"] = True
        try:
            tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
            loaded = AutoModelForCausalLM.from_pretrained(
                model,
                dtype=dtype if dtype == "auto" else getattr(torch, dtype),
                device_map=device_map,
                **kwargs,
                **hub_kernels(),
            )
        except (OSError, ValueError) as err:
            if offline:
                raise ModelLoadError(offline_message(model, offline)) from None
            raise ModelLoadError(f"cannot load model {model!r}: {first_line(err)}") from None
        if device_map is None:
            loaded.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        loaded.eval()
        return cls(loaded, tokenizer, model_id=model, revision=revision, **settings)

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
        each batch as it ends. On a CPU, `parallel_batches` batches decode at once (see `_parallel_batches`)."""
        encoded = [self.encode(self.render(p)) for p in prompts]
        sampled = params.temperature > 0

        def run(batch: list[int]) -> list[tuple[int, Generation]]:
            gens = self._generate_batch(
                [encoded[i] for i in batch], params, [seeds[i] for i in batch] if sampled else None
            )
            return list(zip(batch, gens, strict=True))

        yield from self._in_batches(encoded, params, run)

    def sample_ids(
        self, encoded: list[list[int]], params: SamplingParams, seeds: Sequence[int] | None
    ) -> list[tuple[list[int], bool]]:
        """Every prompt's answer (token ids, its end-of-turn token kept where it ended there) and whether it ended,
        in the prompts' order, batched as `generate_stream` batches: the training rollouts (train/rollouts.py)."""
        sampled = params.temperature > 0

        def run(batch: list[int]) -> list[tuple[int, tuple[list[int], bool]]]:
            ids = [encoded[i] for i in batch]
            answers = self.generate_ids(ids, params, [seeds[i] for i in batch] if sampled else None, keep_eos=True)
            return list(zip(batch, answers, strict=True))

        out = dict(self._in_batches(encoded, params, run))
        return [out[i] for i in range(len(encoded))]

    def _in_batches(self, encoded: list[list[int]], params: SamplingParams, run: Callable) -> Iterator:
        """`run` over the prompts' batches, longest first, as each batch ends. On a CPU, `parallel_batches` batches
        decode at once; generate() (the fallback) samples from torch's global RNG, so it runs one batch at a time."""
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        batches = list(self._batches(order, [len(e) for e in encoded], new_tokens=params.max_new_tokens))
        yield from self._concurrently(run, batches, at_once=self.fast_decode)

    def _concurrently(self, fn: Callable, batches: list[list[int]], at_once: bool = True) -> Iterator:
        """`fn` over the batches (each split in two when it runs out of memory), `_parallel_batches` of them at once
        where `at_once` and there are two or more: a single batch needs no choice, nor a measurement."""
        parallel = self._parallel_batches() if at_once and len(batches) > 1 else 1
        with shared_threads(parallel):
            yield from concurrently(functools.partial(split_on_oom, fn), batches, parallel)

    def _parallel_batches(self) -> int:
        """How many batches run at once: `parallel_batches`; else on a CPU with 2 threads or more, one per thread
        with `one_thread_per_batch`, or the choice measured on this machine (engines/calibration.py: one batch on
        every thread, or two sharing them, whichever decodes faster here); else 1."""
        import torch

        if self.parallel_batches is not None:
            return self.parallel_batches
        threads = torch.get_num_threads()
        if self.device.type != "cpu" or threads < 2:
            return 1
        if self.one_thread_per_batch:
            return threads
        if threads not in self._measured_parallel:
            self._measured_parallel[threads] = measured_parallel_batches(self)
        return self._measured_parallel[threads]

    def _batches(self, order: list[int], lengths: list[int], new_tokens: int | None = None) -> Iterator[list[int]]:
        """`order` (longest first) cut into batches of at most batch_size rows and batch_tokens padded tokens; with
        `new_tokens` (generation), also rows × (longest prompt + new_tokens) × kv_bytes within kv_budget."""
        batch: list[int] = []
        for i in order:
            if batch and (
                len(batch) == self.batch_size
                or (len(batch) + 1) * lengths[batch[0]] > self.batch_tokens
                or not self._kv_fits(len(batch) + 1, lengths[batch[0]], lengths[i], new_tokens)
            ):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _kv_fits(self, rows: int, width: int, shortest: int, new_tokens: int | None) -> bool:
        """Whether `rows` prompts padded to `width` tokens, the shortest of `shortest`, each generating up to
        new_tokens (no more than the context left after it), fit the KV budget: decode's buffers hold at most
        width + the most new tokens of a row."""
        if new_tokens is None or self.kv_budget is None:
            return True
        if self.context is not None:
            new_tokens = max(0, min(new_tokens, self.context - shortest))
        return rows * (width + new_tokens) * self.kv_bytes <= self.kv_budget

    def new_token_limits(self, batch: list[list[int]], max_new_tokens: int) -> list[int]:
        """Each prompt's cap on new tokens: max_new_tokens, or the model's context left after the prompt (0: none)."""
        if self.context is None:
            return [max_new_tokens] * len(batch)
        return [max(0, min(max_new_tokens, self.context - len(ids))) for ids in batch]

    def _generate_batch(
        self, batch: list[list[int]], params: SamplingParams, seeds: Sequence[int] | None
    ) -> list[Generation]:
        results = []
        answers = self.generate_ids(batch, params, seeds)
        limits = self.new_token_limits(batch, params.max_new_tokens)
        for (tokens, ended), seed, limit in zip(answers, seeds or [None] * len(batch), limits, strict=True):
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            text, cut = cut_at_stop(text, params.stop)
            finish = "stop" if ended or cut else "length"
            extra = clamp_note(limit, params.max_new_tokens, self.context)
            results.append(Generation(text=text, tokens=len(tokens), finish_reason=finish, seed=seed, extra=extra))
        return results

    def generate_ids(
        self,
        batch: list[list[int]],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
        keep_eos: bool = False,
    ) -> list[tuple[list[int], bool]]:
        """One batch of prompts (token ids): each answer's token ids, cut before the end-of-turn token (kept with
        `keep_eos`: training learns to stop from it), and whether it ended there. Ids matter to the token probes,
        which must score exactly what was produced. Sampling needs one seed per prompt: row i draws from its own
        torch.Generator seeded with seeds[i]."""
        import torch

        sampled = params.temperature > 0
        if sampled and (seeds is None or len(seeds) != len(batch)):
            raise ValueError("sampling needs one seed per prompt")
        # Each prompt generates at most the context left after it; a prompt that fills the context gets nothing.
        limits = self.new_token_limits(batch, params.max_new_tokens)
        live = [i for i, n in enumerate(limits) if n > 0]
        out: list[tuple[list[int], bool]] = [([], False)] * len(batch)
        if not live:
            return out
        if len(live) < len(batch):
            batch, limits = [batch[i] for i in live], [limits[i] for i in live]
            seeds = [seeds[i] for i in live] if sampled else seeds
        longest = max(limits)
        row_limits = None if min(limits) == longest else limits  # the common case keeps decode's plain loop
        params = dataclasses.replace(params, max_new_tokens=longest)
        if not self.fast_decode:
            answers = self._generate_ids_hf(batch, params, seeds, keep_eos)
            answers = [_cut(ids, ended, n) for (ids, ended), n in zip(answers, limits, strict=True)]
        else:
            sampling, generators = None, None
            if sampled:
                sampling = {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p}
                generators = [torch.Generator(self.device).manual_seed(s) for s in seeds]
            answers = decode(
                self.model,
                *self._padded(batch),
                max_new_tokens=longest,
                eos=self.eos_ids,
                sampling=sampling,
                stopping=self._stop_criterion(params.stop) if params.stop else None,
                generators=generators,
                limits=row_limits,
                keep_eos=keep_eos,
            )
        for i, answer in zip(live, answers, strict=True):
            out[i] = answer
        return out

    def _padded(self, batch: list[list[int]]):
        """The prompts padded on the left, so every one ends where generation starts: (input ids, attention mask)."""
        import torch

        width, pad = max(len(ids) for ids in batch), self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.device)
        return input_ids, mask

    def _stop_criterion(self, stops: tuple[str, ...]):
        """transformers' StopStringCriteria for these stops, built once per engine (it preprocesses the whole
        vocabulary) rather than once per batch; it keeps no state between calls."""
        if stops not in self._stop_criteria:
            from transformers import StopStringCriteria

            self._stop_criteria[stops] = StopStringCriteria(self.tokenizer, list(stops))
        return self._stop_criteria[stops]

    def _generate_ids_hf(
        self, batch: list[list[int]], params: SamplingParams, seeds: Sequence[int] | None = None, keep_eos=False
    ) -> list[tuple[list[int], bool]]:
        """The same through transformers' generate(), for models whose generation config asks for more than
        decode.py implements. generate() samples a whole batch from torch's global RNG, so sampled prompts go one
        at a time, each after seeding it with its own seed."""
        import torch

        sampling = params.temperature > 0
        if sampling and len(batch) > 1:
            one = functools.partial(self._generate_ids_hf, params=params, keep_eos=keep_eos)
            return [a for ids, s in zip(batch, seeds, strict=True) for a in one([ids], seeds=[s])]
        if sampling:
            torch.manual_seed(seeds[0])
        input_ids, mask = self._padded(batch)
        pad = self.tokenizer.pad_token_id
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
            answers.append((row if ended is None else row[: ended + keep_eos], ended is not None))
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

        for i, scores in self._concurrently(score, list(self._batches(order, lengths))):
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
        # On the CPU: indexing accepts CPU indices on every device, and a model split by device_map slices its
        # hidden states on its last GPU, not on the first (self.device), where the rest of these tensors live (G1).
        keep = torch.tensor(wanted)
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
            "stop_token_ids": sorted(self.eos_ids),
            "context": self.context,
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


def concurrently(fn: Callable[[Any], list], items: Iterable, parallel: int) -> Iterator:
    """`fn` over `items` on `parallel` threads, each result's elements yielded as soon as it ends, with at most
    `parallel` items in flight (torch releases the GIL inside its kernels, so the threads overlap; see
    `shared_threads`). A consumer that stops early waits only for those in flight. One is a plain loop in the
    caller's thread."""
    if parallel == 1:
        for item in items:
            yield from fn(item)
        return
    pending = iter(items)
    pool = ThreadPoolExecutor(parallel)
    try:
        running = {pool.submit(fn, item) for item in itertools.islice(pending, parallel)}
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                running |= {pool.submit(fn, item) for item in itertools.islice(pending, 1)}
                yield from future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def shared_threads(parallel: int) -> Iterator[None]:
    """torch's intra-op threads split among `parallel` batches running at once, and given back on leaving."""
    import torch

    if parallel == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // parallel))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def kv_bytes_per_token(config, dtype) -> int:
    """KV-cache bytes one token costs the model: keys and values, every layer, every KV head (sliding-window layers
    counted in full, an upper bound)."""
    import torch

    config = getattr(config, "text_config", None) or config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    itemsize = dtype.itemsize if isinstance(dtype, torch.dtype) else 4
    return 2 * config.num_hidden_layers * heads * head_dim * itemsize


def default_kv_budget(model) -> int | None:
    """KV_SHARE of the free memory of the GPUs holding the model, weights loaded (None on a CPU: no limit, the
    batch_tokens cap has always done there)."""
    import torch

    devices = {p.device for p in model.parameters() if p.device.type == "cuda"}
    if not devices:
        return None
    return int(KV_SHARE * sum(torch.cuda.mem_get_info(d)[0] for d in devices))


def _cut(ids: list[int], ended: bool, limit: int) -> tuple[list[int], bool]:
    return (ids, ended) if len(ids) <= limit else (ids[:limit], False)


def _is_oom(err: BaseException) -> bool:
    import torch

    # A CPU allocation failure is a plain RuntimeError from torch's allocator.
    return isinstance(err, torch.OutOfMemoryError | MemoryError) or "can't allocate memory" in str(err)


def split_on_oom(fn: Callable[[list], list], batch: list) -> list:
    """fn(batch), or, when it runs out of memory, fn over each half (recursively): one result per item in order.
    Rows are independent (greedy, or each sampled from its own seed), so the answers are those of one batch."""
    try:
        return fn(batch)
    except (RuntimeError, MemoryError) as err:
        if not _is_oom(err):
            raise
        if len(batch) == 1:
            raise EngineMemoryError(f"out of memory on a single prompt: {first_line(err)}") from None
    # Out of the except block, so the failed batch's tensors (held by the traceback) are freed before retrying.
    _free_cached_memory()
    half = len(batch) // 2
    return split_on_oom(fn, batch[:half]) + split_on_oom(fn, batch[half:])


def _free_cached_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, list | tuple) else [x]
