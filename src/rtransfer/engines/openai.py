"""Scale-out engine: evaluate through one or many OpenAI-compatible servers (vLLM, SGLang, TGI, transformers serve).

Generation goes to /v1/chat/completions for chat models (the server renders its chat template) and to
/v1/completions for base models (the prompt rendered as plain text, exactly as HFEngine renders it).
Log-likelihoods go to /v1/completions with `echo` and `logprobs`: the server scores the whole prompt (context +
continuation) and the continuation's tokens are found by their text offsets. A chat context is rendered here with
the model's own chat template (the tokenizer is loaded for that alone), as HFEngine renders it.

Every sample is its own request with its own seed, so a sampled answer depends on (prompt, seed) alone, a resumed
run redoes exactly the missing samples, and servers that ignore `n` (transformers serve does) cannot return fewer
samples than asked; vLLM's prefix cache makes the repeated prompts cheap.

Requests run concurrently on an asyncio loop inside each call (the interface stays synchronous), spread over the
servers by fewest requests in flight. A failed request (connection refused, timeout, 408/409/429/5xx) is retried
with exponential backoff and jitter, on another server when there is one; after `max_attempts` tries the call
stops with a one-line ServerUnavailableError. `generate_stream` yields each answer as it arrives, so a runner
can write it before the rest of its chunk is done.
"""

import asyncio
import os
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from rtransfer.engines.base import Generation, Messages, SamplingParams, cut_at_stop, render_plain
from rtransfer.errors import RtransferError

T = TypeVar("T")

RETRY_STATUS = frozenset({408, 409, 425, 429})  # and every 5xx: worth another try, the request itself is fine
REASONING_FIELDS = ("reasoning_content", "reasoning")  # SGLang, transformers serve, older vLLM; recent vLLM


class ServerError(RtransferError):
    """A server refused a request, or the engine was given an unusable server address or key."""


class ServerUnavailableError(ServerError):
    """No server answered a request within the allowed attempts."""


class LoglikelihoodUnsupportedError(ServerError):
    """The server cannot score prompts (no prompt logprobs from /v1/completions with echo), so log-likelihood
    benchmarks (HEAD-QA, MC-TACO) cannot run against it."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8  # tries per request, the first included
    backoff: float = 1.0  # seconds before the second try; doubled for each further one
    max_backoff: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number `attempt` (1-based): exponential, with jitter so that many
        requests failing together do not come back together; a server's Retry-After wins when it says more."""
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        wait = base * random.uniform(0.5, 1.0)
        return min(self.max_backoff, max(wait, retry_after or 0.0))


class OpenAIEngine:
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
    ):
        """`model` is the name the server knows the model by (vLLM: the path or hub id given to `vllm serve`, or
        --served-model-name). `concurrency` is the number of requests in flight per server. `timeout` bounds one
        request (a whole generation: keep it above the longest one). `tokenizer` (default: `model`) is loaded
        locally, when it can be, for the chat template: it renders chat contexts for log-likelihoods and
        identifies the template in the run manifest."""
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
        self.send_seeds = True  # cleared when a server rejects the `seed` field
        self.tokenizer_name = tokenizer or model
        self.tokenizer, self.note = _load_tokenizer(self.tokenizer_name, revision)
        # A rendered template holds its special tokens already; the server must not add a BOS of its own.
        self.template_has_bos = self.tokenizer is not None and _adds_special_tokens(self.tokenizer)

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
    def generate(self, prompts: Sequence[Messages], params: SamplingParams, seeds: Sequence[int]) -> list[Generation]:
        out: list[Generation | None] = [None] * len(prompts)
        for i, gen in self.generate_stream(prompts, params, seeds):
            out[i] = gen
        return out  # type: ignore[return-value]

    def generate_stream(
        self, prompts: Sequence[Messages], params: SamplingParams, seeds: Sequence[int]
    ) -> Iterator[tuple[int, Generation]]:
        """(index, generation) pairs in the order the answers arrive; every prompt is answered once."""
        jobs = [self._generation_job(p, params, s) for p, s in zip(prompts, seeds, strict=True)]
        return self._run(jobs)

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
        if self.chat:
            path = "/chat/completions"
            body["messages"] = prompt
            if self.thinking is not None:
                extra["chat_template_kwargs"] = {"enable_thinking": self.thinking}
        else:
            path, body["prompt"] = "/completions", render_plain(prompt)

        async def job(client) -> Generation:
            send = {**body, **extra}
            used_seed = None
            if sampling and self.send_seeds:
                send["seed"] = used_seed = seed
            try:
                data = await _post(client, path, send)
            except _SeedRejected:
                self.send_seeds = False
                send.pop("seed")
                used_seed = None
                data = await _post(client, path, send)
            return parse_generation(data, chat=self.chat, stop=params.stop, seed=used_seed)

        return job

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
            data = await _post(client, "/completions", body)
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
        }

    # --- the loop ----------------------------------------------------------------------------------------
    def _run(self, jobs: Sequence[Callable[[Any], Awaitable[T]]]) -> Iterator[tuple[int, T]]:
        """Run the jobs on a private event loop and yield (index, result) as each finishes. Driving the loop from
        this generator keeps the interface synchronous without threads; between two yields the loop pauses (the
        caller writes a record), and answers already on the wire wait in the socket."""
        loop = asyncio.new_event_loop()
        fleet = _Fleet(self)
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


class _SeedRejected(Exception):
    pass


class _Fleet:
    """The servers as one event loop sees them: a client each, requests in flight, and which ones failed lately."""

    def __init__(self, engine: OpenAIEngine):
        from openai import AsyncOpenAI

        self.engine = engine
        # The client's own retries are off: ours pick another server and share one policy across the fleet.
        self.clients = [
            AsyncOpenAI(base_url=url, api_key=engine.api_key, max_retries=0, timeout=engine.timeout)
            for url in engine.base_urls
        ]
        self.in_flight = [0] * len(self.clients)
        self.resting_until = [0.0] * len(self.clients)  # a server that just failed is tried last until then
        self.slots = asyncio.Semaphore(engine.concurrency * len(self.clients))

    def pick(self, avoid: int | None) -> int:
        now = asyncio.get_running_loop().time()
        return min(
            range(len(self.clients)),
            key=lambda i: (self.resting_until[i] > now, i == avoid, self.in_flight[i], i),
        )

    async def call(self, job: Callable[[Any], Awaitable[T]]) -> T:
        import openai

        policy, loop = self.engine.retry, asyncio.get_running_loop()
        async with self.slots:
            avoid, last = None, ""
            for attempt in range(1, policy.max_attempts + 1):
                i = self.pick(avoid)
                self.in_flight[i] += 1
                retry_after = None
                try:
                    return await job(self.clients[i])
                except openai.APIStatusError as err:
                    if not _retryable(err.status_code):
                        raise ServerError(f"{self.engine.base_urls[i]}: {_status_message(err)}") from None
                    last, retry_after = _status_message(err), _retry_after(err)
                except openai.APITimeoutError:
                    last = f"no answer within {self.engine.timeout:g} s"
                except openai.APIConnectionError as err:
                    last = f"cannot connect ({_cause(err)})"
                finally:
                    self.in_flight[i] -= 1
                wait = policy.delay(attempt, retry_after)
                self.resting_until[i], avoid = loop.time() + wait, i
                last = f"{self.engine.base_urls[i]}: {last}"
                if attempt < policy.max_attempts:
                    await asyncio.sleep(wait)
            raise ServerUnavailableError(f"request failed {policy.max_attempts} times; last: {last}")

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


async def _post(client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a JSON body, return the JSON answer as a dict (raw, so that server extensions survive)."""
    import openai

    try:
        response = await client.post(path, body=body, cast_to=object)
    except openai.APIStatusError as err:
        if err.status_code in (400, 422) and "seed" in body and "seed" in _status_message(err).lower():
            raise _SeedRejected from None
        raise
    if not isinstance(response, dict):
        raise ServerError(f"{client.base_url}{path.lstrip('/')}: answer is not a JSON object")
    return response


# --- response parsing (pure functions on JSON dicts, tested on the shapes servers return) ------------------


def parse_generation(
    data: dict[str, Any], *, chat: bool, stop: Sequence[str] = (), seed: int | None = None
) -> Generation:
    """A Generation from a /v1/chat/completions or /v1/completions answer.

    Reasoning that a server returns apart from the answer (`reasoning_content`, or recent vLLM's `reasoning`) is
    put back as "<think>…</think>answer", the shape in-process generation has, so records keep the thinking and
    graders strip it the same way; the raw field stays in `extra`. The closing tag is left off when the budget
    ran out before the answer began, as an in-process output would be."""
    try:
        choice = data["choices"][0]
        message = choice["message"] if chat else choice
        text = (message.get("content") if chat else message.get("text")) or ""
    except (KeyError, IndexError, TypeError):
        raise ServerError(f"malformed answer from the server (no choices[0] text): {str(data)[:200]}") from None
    finish = choice.get("finish_reason") or "stop"
    extra: dict[str, Any] = {}
    if chat:
        field = next((f for f in REASONING_FIELDS if message.get(f)), None)
        if field is not None:
            reasoning = message[field]
            extra[field] = reasoning
            closed = bool(text) or finish != "length"
            text = f"<think>{reasoning}</think>{text}" if closed else f"<think>{reasoning}"
    # Servers differ on whether a stop string stays in the text (transformers serve keeps it): cut here too.
    text, cut = cut_at_stop(text, stop)
    usage = data.get("usage") or {}
    return Generation(
        text=text,
        tokens=int(usage.get("completion_tokens") or 0),
        finish_reason="stop" if cut or finish != "length" else "length",
        seed=seed,
        extra=extra,
    )


def parse_prompt_logprobs(data: dict[str, Any], prompt: str, continuation: str, server: str = "the server") -> float:
    """The summed log-probability of `continuation`, the end of `prompt`, from a /v1/completions answer to
    echo=True, logprobs=N, max_tokens=0 or 1.

    Two shapes are read (vLLM returns both): the OpenAI one, `choices[0].logprobs` with `tokens`,
    `token_logprobs` (the first null) and `text_offset`, which covers the prompt tokens then any generated ones
    (`usage.prompt_tokens` says how many are the prompt's); and vLLM's `choices[0].prompt_logprobs`, one
    {token id: {logprob, rank, decoded_token}} per prompt token (the first null), the actual token named by
    `prompt_token_ids` or alone in its entry.

    The continuation's tokens are those that end past the context/continuation boundary, found from the end of
    the prompt (end offset minus the continuation's length), so a BOS token that a server decodes into text
    ("<s>") before the prompt does not shift it. A token that straddles the boundary counts with the continuation.
    """
    choice = (data.get("choices") or [{}])[0]
    pieces = _echo_pieces(choice, data.get("usage"))
    if pieces is None:
        pieces = _prompt_logprob_pieces(choice)
    if pieces is None:
        raise LoglikelihoodUnsupportedError(
            f"{server} returned no prompt logprobs for /v1/completions with echo and logprobs "
            "(transformers serve and chat-only endpoints cannot: run log-likelihood benchmarks on vLLM or --engine hf)"
        )
    if not pieces:
        raise ServerError(f"{server} echoed no prompt tokens")
    start, text, _ = pieces[-1]
    boundary = start + len(text) - len(continuation)
    picked = [(t, lp) for s, t, lp in pieces if s + len(t) > boundary]
    if not "".join(t for t, _ in picked).endswith(continuation):
        raise ServerError(f"{server}: the echoed tokens do not end with the continuation {continuation!r}")
    if any(lp is None for _, lp in picked):
        raise ServerError(f"{server}: no logprob for a continuation token (empty context?) in {prompt[-80:]!r}")
    return float(sum(lp for _, lp in picked))  # type: ignore[misc]


def _echo_pieces(choice: dict, usage: dict | None) -> list[tuple[int, str, float | None]] | None:
    """(start offset, token text, logprob) of each prompt token from the OpenAI `logprobs` object, or None."""
    lp = choice.get("logprobs")
    if not isinstance(lp, dict) or not lp.get("tokens") or lp.get("token_logprobs") is None:
        return None
    tokens, logprobs = lp["tokens"], lp["token_logprobs"]
    offsets = lp.get("text_offset") or _cumulative([len(t) for t in tokens])
    prompt_tokens = (usage or {}).get("prompt_tokens")
    # With max_tokens=1 the last token is the generated one; usage says exactly where the prompt ends.
    n = prompt_tokens if isinstance(prompt_tokens, int) and 0 < prompt_tokens <= len(tokens) else len(tokens) - 1
    return [(offsets[i], tokens[i], logprobs[i]) for i in range(n)]


def _prompt_logprob_pieces(choice: dict) -> list[tuple[int, str, float | None]] | None:
    """The same from vLLM's `prompt_logprobs` extension, or None when it is absent or ambiguous."""
    entries = choice.get("prompt_logprobs")
    if not isinstance(entries, list) or not entries:
        return None
    ids = choice.get("prompt_token_ids")
    texts, logprobs = [], []
    for k, entry in enumerate(entries):
        if entry is None:  # the first token: nothing predicts it, and its text is not needed from the end
            texts.append("")
            logprobs.append(None)
            continue
        if ids is not None and str(ids[k]) in entry:
            item = entry[str(ids[k])]
        elif len(entry) == 1:
            (item,) = entry.values()
        else:
            return None  # the actual token is not identifiable without prompt_token_ids
        texts.append(item.get("decoded_token") or "")
        logprobs.append(item.get("logprob"))
    offsets = _cumulative([len(t) for t in texts])
    return list(zip(offsets, texts, logprobs, strict=True))


def _cumulative(lengths: Sequence[int]) -> list[int]:
    out, total = [], 0
    for n in lengths:
        out.append(total)
        total += n
    return out


# --- small helpers ---------------------------------------------------------------------------------------


def normalize_base_url(url: str) -> str:
    """`http://host:port` gets the usual `/v1`; a URL with a path is taken as it is."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ServerError(f"not a server base URL: {url!r} (expected e.g. http://127.0.0.1:8000/v1)")
    return url if parts.path else url + "/v1"


def api_key_from_env(name: str | None) -> str | None:
    if name is None:
        return None
    key = os.environ.get(name)
    if not key:
        raise ServerError(f"environment variable {name} (--api-key-env) is not set")
    return key


def _retryable(status: int) -> bool:
    return status in RETRY_STATUS or status >= 500


def _status_message(err) -> str:
    body = err.body
    detail = None
    if isinstance(body, dict):  # OpenAI/vLLM: {"error": {"message"}} or {"message"}; FastAPI: {"detail"}
        inner = body.get("error", body)
        detail = inner.get("message") if isinstance(inner, dict) else inner
        detail = detail or body.get("detail")
    text = " ".join(str(detail or body or err.message).split())
    return f"HTTP {err.status_code}: {text[:300]}"


def _retry_after(err) -> float | None:
    try:
        return float(err.response.headers.get("retry-after"))
    except (TypeError, ValueError):
        return None


def _cause(err: BaseException) -> str:
    inner = err.__cause__ or err.__context__
    return " ".join(str(inner or err).split())[:200] or type(inner or err).__name__


def _load_tokenizer(name: str, revision: str | None):
    """The tokenizer (for its chat template), or None and why not: the server does the real work, so a client
    without the model's files can still generate."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, revision=revision), None
    except (OSError, ValueError, ImportError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return None, f"tokenizer {name!r} not loaded: {first}"


def _adds_special_tokens(tokenizer) -> bool:
    return tokenizer("x")["input_ids"] != tokenizer("x", add_special_tokens=False)["input_ids"]
