"""The OpenAI-compatible engine's transport: its errors, the retry policy, and the fleet of servers one event loop
sends requests to (fewest in flight first, a failed server rested, retries with backoff on another server)."""

import asyncio
import os
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from rtransfer.errors import RtransferError

T = TypeVar("T")

CONTEXT_REFUSAL = re.compile(r"maximum context length is (\d+)")  # vLLM's 400, old and new wordings
RETRY_STATUS = frozenset({408, 409, 425, 429})  # and every 5xx: worth another try, the request itself is fine


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


class ContextRefused(ServerError):
    """A server refused a request for the model's context (vLLM's HTTP 400); `context` is the length it names."""

    def __init__(self, message: str, context: int):
        super().__init__(message)
        self.context = context


class FieldRejected(Exception):
    """A server refused an optional request field (transformers serve: 422 "Unexpected fields"): send it no more."""

    def __init__(self, field: str):
        super().__init__(field)
        self.field = field


class Fleet:
    """The servers as one event loop sees them: a client each, requests in flight, and which ones failed lately."""

    def __init__(self, engine: Any):  # the OpenAIEngine: its servers, key, timeout, concurrency, retry policy
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


async def post_json(client, path: str, body: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """POST a JSON body, return the JSON answer as a dict (raw, so that server extensions survive). A 400/422 that
    names one of the `optional` fields of the body is FieldRejected."""
    import openai

    try:
        response = await client.post(path, body=body, cast_to=object)
    except openai.APIStatusError as err:
        message = _status_message(err).lower()
        refused = [f for f in optional if f in body and f in message] if err.status_code in (400, 422) else []
        if refused:
            raise FieldRejected(refused[0]) from None
        found = CONTEXT_REFUSAL.search(message) if err.status_code == 400 else None
        if found:
            raise ContextRefused(_status_message(err), int(found.group(1))) from err
        raise
    if not isinstance(response, dict):
        raise ServerError(f"{client.base_url}{path.lstrip('/')}: answer is not a JSON object")
    return response


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
