"""Scale-out engine: evaluate through one or many OpenAI-compatible servers (vLLM, SGLang, TGI, transformers serve).

Generation goes to /v1/chat/completions for chat models (the server renders its chat template) and to
/v1/completions for base models (the prompt rendered as plain text, exactly as HFEngine renders it).
Log-likelihoods go to /v1/completions with `echo` and `logprobs`: the server scores the whole prompt (context +
continuation) and the continuation's tokens are found by their text offsets. A chat context is rendered here with
the model's own chat template (the tokenizer is loaded for that alone), as HFEngine renders it.

Every sample is its own request with its own seed, so a sampled answer depends on (prompt, seed) alone, a resumed
run redoes exactly the missing samples, and servers that ignore `n` (transformers serve does) cannot return fewer
samples than asked; vLLM's prefix cache makes the repeated prompts cheap.

At scale (review G4, G5): `max_tokens` is clamped per request to the model's context less the prompt's tokens
(counted with the local tokenizer), as the HF engine clamps; a clamp is recorded in the Generation's `extra`, and a
prompt that fills the context gets an empty "length" answer without a request. The context is `context` when given;
else it is learnt when a server first refuses a request for it (vLLM: HTTP 400 "maximum context length is N
tokens", which would otherwise stop the run) from GET /v1/models (vLLM's `max_model_len`) or that message, and the
refused request is sent again clamped. Asking only then costs nothing to servers that never refuse (and to request
counts). With no context known or no tokenizer nothing is clamped.
Requests carry `stop_token_ids`, the HF engine's stop set (`base.stop_token_ids`), when it holds more than the
tokenizer's eos, which every server stops on (vLLM with `--generation-config vllm` stops on that alone: Qwen3-*-Base
would run past <|endoftext|>); a server that refuses the field, as it may refuse `seed` (transformers serve answers
422 to unknown fields), gets neither again.

Requests run concurrently on an asyncio loop inside each call (the interface stays synchronous), spread over the
servers by fewest requests in flight. A failed request (connection refused, timeout, 408/409/429/5xx) is retried
with exponential backoff and jitter, on another server when there is one; after `max_attempts` tries the call
stops with a one-line ServerUnavailableError. `generate_stream` yields each answer as it arrives, so a runner
can write it before the rest of its chunk is done.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rtransfer.engines.base import (
    CollectsStream,
    Generation,
    Messages,
    SamplingParams,
    clamp_note,
    render_plain,
    stop_token_ids,
)
from rtransfer.engines.responses import parse_generation, parse_prompt_logprobs
from rtransfer.engines.transport import (
    ContextRefused,
    FieldRejected,
    Fleet,
    LoglikelihoodUnsupportedError,
    RetryPolicy,
    ServerError,
    ServerUnavailableError,
    api_key_from_env,
    normalize_base_url,
    post_json,
)
from rtransfer.errors import first_line
from rtransfer.online import hub_offline

# Re-exported: the engine's errors and helpers are imported from here by callers and tests.
__all__ = [
    "LoglikelihoodUnsupportedError",
    "OpenAIEngine",
    "RetryPolicy",
    "ServerError",
    "ServerUnavailableError",
    "api_key_from_env",
    "parse_generation",
    "parse_prompt_logprobs",
]

T = TypeVar("T")
OPTIONAL = ("seed", "stop_token_ids")  # extensions a server may refuse: dropped for the engine's life if it does


class OpenAIEngine(CollectsStream):
    def __init__(
        self,
        model: str,
        base_urls: str | Sequence[str],
        *,
        api_key: str | None = None,
        chat: bool = True,
        thinking: bool | None = None,
        concurrency: int = 16,
        timeout: float = 3600.0,
        retry: RetryPolicy | None = None,
        tokenizer: str | None = None,
        revision: str | None = None,
        context: int | None = None,
    ):
        """`model` is the name the server knows the model by (vLLM: the path or hub id given to `vllm serve`, or
        --served-model-name). `concurrency` is the number of requests in flight per server. `timeout` bounds one
        request (a whole generation: keep it above the longest one). `tokenizer` (default: `model`) is loaded
        locally, when it can be, for the chat template: it renders chat contexts for log-likelihoods and
        identifies the template in the run manifest. `context`: the model's context in tokens, when known
        beforehand (else learnt from the first refusal, see the module doc)."""
        try:
            import openai  # noqa: F401  (the HTTP client; imported here so that a missing one is a clear error)
        except ImportError:
            raise ServerError("the openai engine needs the openai package: pip install 'rtransfer[serve]'") from None
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        self.base_urls = [normalize_base_url(u) for part in urls for u in part.split(",") if u.strip()]
        if not self.base_urls:
            raise ServerError("no server given: pass at least one base URL (e.g. http://127.0.0.1:8000/v1)")
        if concurrency < 1 or timeout <= 0:
            raise ServerError(f"concurrency must be at least 1 and timeout positive (got {concurrency}, {timeout})")
        self.model, self.revision, self.chat, self.thinking = model, revision, chat, thinking
        self.api_key = api_key or "EMPTY"  # vLLM and transformers serve without --api-key accept any key
        self.concurrency, self.timeout, self.retry = concurrency, timeout, retry or RetryPolicy()
        self.refused: set[str] = set()  # optional fields a server has refused (OPTIONAL)
        self.tokenizer_name = tokenizer or model
        self.tokenizer, self.note = _load_tokenizer(self.tokenizer_name, revision)
        eos = _model_eos(self.tokenizer_name, revision)
        self.stop_ids = [] if self.tokenizer is None else stop_token_ids(self.tokenizer, eos)
        self.context = context
        # A rendered template holds its special tokens already; the server must not add a BOS of its own.
        self.template_has_bos = self.tokenizer is not None and _adds_special_tokens(self.tokenizer)

    @property
    def send_seeds(self) -> bool:
        return "seed" not in self.refused

    def prompt_tokens(self, prompt: Messages) -> int | None:
        """The prompt's tokens as the server will count them (chat: the rendered template; plain: with the
        tokenizer's BOS), or None without a tokenizer."""
        if self.tokenizer is None or (self.chat and not self.tokenizer.chat_template):
            return None
        if self.chat:
            return len(self.tokenizer(self.render(prompt), add_special_tokens=False)["input_ids"])
        return len(self.tokenizer(render_plain(prompt))["input_ids"])

    # --- prompts -----------------------------------------------------------------------------------------
    def render(self, messages: Messages) -> str:
        """The text a chat context becomes, as HFEngine.render makes it (log-likelihoods only: generation sends
        the messages and lets the server render them)."""
        if not self.chat:
            return render_plain(messages)
        if self.tokenizer is None or not self.tokenizer.chat_template:
            raise ServerError(
                f"log-likelihoods of a chat model need its chat template, but tokenizer {self.tokenizer_name!r} "
                f"could not be loaded ({self.note or 'it has no chat template'}); pass --tokenizer or --no-chat"
            )
        extra = {} if self.thinking is None else {"enable_thinking": self.thinking}
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)

    # --- generation ----------------------------------------------------------------------------------------
    def generate_stream(
        self, prompts: Sequence[Messages], params: SamplingParams, seeds: Sequence[int]
    ) -> Iterator[tuple[int, Generation]]:
        """(index, generation) pairs in the order the answers arrive; every prompt is answered once."""
        jobs = [self._generation_job(p, params, s) for p, s in zip(prompts, seeds, strict=True)]
        return self._run(jobs)

    def _limit(self, prompt: Messages, max_new_tokens: int) -> int:
        """max_new_tokens, or the context left after the prompt when a context is known and the prompt countable."""
        length = self.prompt_tokens(prompt) if self.context is not None else None
        if length is None:
            return max_new_tokens
        return max(0, min(max_new_tokens, self.context - length))  # type: ignore[operator]

    def _generation_job(self, prompt: Messages, params: SamplingParams, seed: int):
        sampling = params.temperature > 0
        body: dict[str, Any] = {"model": self.model, "max_tokens": params.max_new_tokens}
        body["temperature"] = params.temperature if sampling else 0.0
        if sampling:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        extra: dict[str, Any] = {}
        if sampling and params.top_k:
            extra["top_k"] = params.top_k  # vLLM/SGLang extension; sent only when asked for (others refuse it)
        if set(self.stop_ids) - {self.tokenizer.eos_token_id if self.tokenizer is not None else None}:
            extra["stop_token_ids"] = self.stop_ids  # vLLM extension; dropped once a server refuses it
        if self.chat:
            path = "/chat/completions"
            body["messages"] = prompt
            if self.thinking is not None:
                extra["chat_template_kwargs"] = {"enable_thinking": self.thinking}
        else:
            path, body["prompt"] = "/completions", render_plain(prompt)

        async def job(client) -> Generation:
            send = {**body, **extra, **({"seed": seed} if sampling else {})}
            retried = False
            while True:
                send["max_tokens"] = limit = self._limit(prompt, params.max_new_tokens)
                note = clamp_note(limit, params.max_new_tokens, self.context)
                if limit == 0:  # the prompt fills the context: nothing to ask for
                    return Generation(text="", tokens=0, finish_reason="length", seed=None, extra=note)
                for field in self.refused:
                    send.pop(field, None)
                try:
                    data = await post_json(client, path, send, optional=OPTIONAL)
                    break
                except FieldRejected as err:
                    self.refused.add(err.field)
                except ContextRefused as err:  # learn the context (once for the engine), then clamp
                    if retried or (self.context is None and not await self._learn_context(client, err.context)):
                        raise ServerError(f"{client.base_url}: {err}") from None
                    retried = True
            gen = parse_generation(data, chat=self.chat, stop=params.stop, seed=send.get("seed"))
            gen.extra.update(note)
            return gen

        return job

    async def _learn_context(self, client, named: int) -> bool:
        """Whether the context is now known, after a server refused a request for it: GET /v1/models'
        max_model_len for the model, else the length the refusal `named`. Prompts that cannot be counted (no
        tokenizer) learn nothing."""
        if self.tokenizer is None:
            return False
        try:
            models = (await client.get("/models", cast_to=object)).get("data") or []
        except Exception:  # any failure to ask: the number in the refusal says the same
            models = []
        lengths = [m.get("max_model_len") for m in models if isinstance(m, dict) and m.get("id") == self.model]
        self.context = next((n for n in lengths if isinstance(n, int) and n > 0), named)
        return True

    # --- log-likelihood ----------------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[tuple[Messages, Sequence[str]]]) -> list[list[float]]:
        jobs, where = [], []
        for r, (context, continuations) in enumerate(requests):
            text = self.render(context)
            for c, continuation in enumerate(continuations):
                # Chat mode drops lm-eval's target delimiter (one leading space), as HFEngine does.
                cont = continuation.removeprefix(" ") if self.chat else continuation
                jobs.append(self._loglik_job(text, cont))
                where.append((r, c))
        out: list[list[float]] = [[0.0] * len(conts) for _, conts in requests]
        for j, value in self._run(jobs):
            r, c = where[j]
            out[r][c] = value
        return out

    def _loglik_job(self, context: str, continuation: str):
        # max_tokens=1, not 0: servers that reject 0 are common, and the generated token is left out by position.
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": context + continuation,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
        }
        if self.chat and self.template_has_bos:
            body["add_special_tokens"] = False  # as HFEngine encodes a rendered template (a vLLM extension)

        async def job(client) -> float:
            data = await post_json(client, "/completions", body)
            return parse_prompt_logprobs(data, context + continuation, continuation, server=str(client.base_url))

        return job

    # --- identity ----------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        template = self.tokenizer.chat_template if self.chat and self.tokenizer is not None else None
        return {
            "engine": "openai",
            "model": self.model,
            "revision": self.revision,
            "chat_template": template,
            "chat": self.chat,
            "thinking": self.thinking,
            "tokenizer": self.tokenizer_name,
            "servers": list(self.base_urls),
            "concurrency": self.concurrency,
            "stop_token_ids": list(self.stop_ids),
            "context": self.context,
        }

    # --- the loop ----------------------------------------------------------------------------------------
    def _run(self, jobs: Sequence[Callable[[Any], Awaitable[T]]]) -> Iterator[tuple[int, T]]:
        """Run the jobs on a private event loop and yield (index, result) as each finishes. Driving the loop from
        this generator keeps the interface synchronous without threads; between two yields the loop pauses (the
        caller writes a record), and answers already on the wire wait in the socket."""
        loop = asyncio.new_event_loop()
        fleet = Fleet(self)
        tasks: dict[asyncio.Task, int] = {}
        try:
            tasks = {loop.create_task(fleet.call(job)): i for i, job in enumerate(jobs)}
            pending = set(tasks)
            while pending:
                done, pending = loop.run_until_complete(asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED))
                failed = [t for t in done if t.exception() is not None]
                for t in sorted(done, key=tasks.__getitem__):
                    if t.exception() is None:
                        yield tasks[t], t.result()
                if failed:  # the successes of this round are out; the first failure ends the call
                    raise failed[0].exception()  # type: ignore[misc]
        finally:
            leftover = [t for t in tasks if not t.done()]
            for t in leftover:
                t.cancel()
            if leftover:
                loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            for t in tasks:  # retrieved, so asyncio does not log "exception was never retrieved"
                if t.done() and not t.cancelled():
                    t.exception()
            loop.run_until_complete(fleet.close())
            loop.close()


def _load_tokenizer(name: str, revision: str | None):
    """The tokenizer (for its chat template), or None and why not: the server does the real work, so a client
    without the model's files can still generate."""
    try:
        from transformers import AutoTokenizer

        # Offline, a hub id is looked up in the local cache only, at once (the hub libraries retry for 49 s).
        local_only = not Path(name).expanduser().exists() and hub_offline() is not None
        return AutoTokenizer.from_pretrained(name, revision=revision, local_files_only=local_only), None
    except (OSError, ValueError, ImportError) as err:
        return None, f"tokenizer {name!r} not loaded: {first_line(err)}"


def _model_eos(name: str, revision: str | None) -> list[int]:
    """The generation config's eos ids from the model's local files, as the HF engine reads them (none when the
    files are not here: the tokenizer's eos and the template's end-of-turn token remain)."""
    try:
        from transformers import AutoConfig, GenerationConfig

        local_only = not Path(name).expanduser().exists() and hub_offline() is not None
        try:
            eos = GenerationConfig.from_pretrained(name, revision=revision, local_files_only=local_only).eos_token_id
        except OSError:  # no generation_config.json: transformers derives it from config.json
            eos = AutoConfig.from_pretrained(name, revision=revision, local_files_only=local_only).eos_token_id
    except (OSError, ValueError, ImportError):
        return []
    return [] if eos is None else list(eos) if isinstance(eos, list | tuple) else [eos]


def _adds_special_tokens(tokenizer) -> bool:
    return tokenizer("x")["input_ids"] != tokenizer("x", add_special_tokens=False)["input_ids"]
