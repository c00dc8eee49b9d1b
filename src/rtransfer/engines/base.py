"""The engine interface: generate text, score continuations. Implementations: hf.py (in-process transformers);
an OpenAI-compatible client comes with the scale-out issue."""

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means off
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass
class Generation:
    text: str  # the full output (thinking included), cut at the first stop string
    tokens: int  # generated tokens
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    seed: int | None = None  # the seed the sample was drawn with (None for greedy)
    extra: dict = field(default_factory=dict)


class Engine(Protocol):
    def generate(self, prompts: Sequence[Messages], params: SamplingParams, seeds: Sequence[int]) -> list[Generation]:
        """One generation per prompt; prompts[i] is sampled with seeds[i] (ignored when greedy)."""
        ...

    def loglikelihood(self, requests: Sequence[tuple[Messages, Sequence[str]]]) -> list[list[float]]:
        """For each (context, continuations): the summed log-probability of each continuation after the context.

        Chat models see the context rendered with the chat template and the generation prompt, so a continuation
        opens the assistant's turn; one leading space of a continuation (lm-eval's target delimiter) is dropped
        there, as lm-eval does with a chat template. Base models see plain text and keep it."""
        ...

    def describe(self) -> dict[str, Any]:
        """What identifies the model for a run manifest: model, revision, fingerprint, chat_template, ..."""
        ...
