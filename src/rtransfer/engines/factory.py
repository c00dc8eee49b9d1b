"""An engine from a description: `make_engine(EngineSpec(...))`. ENGINES is the one list of engines: a name and how
to build that engine from an EngineSpec. Adding an engine is its module, engines/<name>.py, and one entry here;
`eval --engine` offers the names. `eval`, the teacher of `train teacher` and the study all build engines here."""

from collections.abc import Callable
from dataclasses import dataclass

from rtransfer.engines.base import Engine
from rtransfer.errors import DataError


@dataclass(frozen=True)
class EngineSpec:
    model: str  # hub id or local directory (openai: the server's name for the model)
    engine: str = "hf"  # a name in ENGINES: hf (in-process transformers) or openai (servers)
    revision: str | None = None
    chat: bool | None = None  # None: the chat template when the tokenizer has one; False: plain prompts
    thinking: bool | None = None  # the template's enable_thinking; None: the template's own default
    # hf
    dtype: str = "auto"
    device: str | None = None
    device_map: str | None = None
    batch_size: int = 8  # prompts (log-likelihood: documents) per batch, at most
    batch_tokens: int | None = None  # padded prompt tokens per batch, at most (None: 4096 on a CPU, 32768 on a GPU)
    parallel_batches: int | None = None  # batches decoding at once (None: measured on a CPU, engines/calibration.py)
    one_thread_per_batch: bool = False  # on a CPU, each batch on one thread: answers independent of the thread count
    # openai
    base_urls: tuple[str, ...] = ()
    api_key_env: str | None = None  # the environment variable holding the servers' key
    concurrency: int = 16  # requests in flight per server
    request_timeout: float = 3600.0
    max_attempts: int = 8
    tokenizer: str | None = None  # a local tokenizer for the chat template (default: model)

    def __post_init__(self):
        object.__setattr__(self, "base_urls", tuple(self.base_urls))  # callers may pass a list


def _hf(spec: EngineSpec):
    if spec.base_urls:
        raise DataError("--base-url needs --engine openai")
    from rtransfer.engines.hf import HFEngine  # lazy: torch and transformers load only for this engine

    return HFEngine.load(
        spec.model,
        revision=spec.revision,
        dtype=spec.dtype,
        device=spec.device,
        device_map=spec.device_map,
        batch_size=spec.batch_size,
        batch_tokens=spec.batch_tokens,
        parallel_batches=spec.parallel_batches,
        one_thread_per_batch=spec.one_thread_per_batch,
        chat=spec.chat,
        thinking=spec.thinking,
    )


def _openai(spec: EngineSpec):
    from rtransfer.engines.openai import OpenAIEngine, RetryPolicy, api_key_from_env  # lazy: only for this engine

    return OpenAIEngine(
        spec.model,
        spec.base_urls,
        api_key=api_key_from_env(spec.api_key_env),
        chat=spec.chat is not False,
        thinking=spec.thinking,
        concurrency=spec.concurrency,
        timeout=spec.request_timeout,
        retry=RetryPolicy(max_attempts=spec.max_attempts),
        tokenizer=spec.tokenizer,
        revision=spec.revision,
    )


ENGINES: dict[str, Callable[[EngineSpec], Engine]] = {"hf": _hf, "openai": _openai}


def make_engine(spec: EngineSpec):
    if spec.engine not in ENGINES:
        raise DataError(f"unknown engine {spec.engine!r} (choose from {', '.join(ENGINES)})")
    return ENGINES[spec.engine](spec)
