"""The engine interface: generate text, score continuations. Implementations: hf.py (in-process transformers),
openai.py (OpenAI-compatible servers); factory.py builds one from an EngineSpec (its ENGINES table names them).

The seed contract: prompts[i] is sampled with seeds[i] alone, so a sampled answer is the same whatever else is in
the call and however the engine batches it, and a resumed run regenerates the answers it lost. The HF engine keeps
it up to floating-point batching effects; a server keeps it as far as it honours per-request seeds."""

from collections.abc import Iterable, Iterator, Sequence
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
    seed: int | None = None  # the seed the sample was drawn with (None: greedy, or a server that refused seeds)
    extra: dict = field(default_factory=dict)


def render_plain(messages: Messages) -> str:
    """A chat as plain text, for base models without a chat template: the turns' contents, one paragraph each."""
    return "\n\n".join(m["content"] for m in messages)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """`text` cut at the first of the stop strings, and whether it was cut (both engines cut the same way)."""
    positions = [text.find(s) for s in stops if s and s in text]
    return (text[: min(positions)], True) if positions else (text, False)


def stop_token_ids(tokenizer, eos_ids: Iterable[int | None] = ()) -> list[int]:
    """The token ids that end an answer, one set for every engine (review G5): `eos_ids` (the generation config's),
    the tokenizer's eos, and the chat template's end-of-turn token, the special token a rendered one-message
    conversation puts right after the message (hub files disagree: Qwen3-*-Base name <|im_end|> in the tokenizer
    and <|endoftext|> in the generation config; a server that stops on one runs past the other to max_tokens)."""
    ids = {i for i in [*eos_ids, tokenizer.eos_token_id] if i is not None}
    end = _end_of_turn(tokenizer)
    return sorted(ids | ({end} if end is not None else set()))


def _end_of_turn(tokenizer) -> int | None:
    if not getattr(tokenizer, "chat_template", None):
        return None
    mark = "Hello there"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": mark}], tokenize=False)
    except Exception:  # a template may refuse a lone user message (a required system turn, ...): no such token
        return None
    tail = tokenizer(text[text.rfind(mark) + len(mark) :], add_special_tokens=False)["input_ids"]
    added = getattr(tokenizer, "added_tokens_decoder", {})
    special = tail and (tail[0] in tokenizer.all_special_ids or (tail[0] in added and added[tail[0]].special))
    return tail[0] if special else None


def model_context(config) -> int | None:
    """The model's trained context (max_position_embeddings), or None when its config does not say."""
    config = getattr(config, "text_config", None) or config
    context = getattr(config, "max_position_embeddings", None)
    return context if isinstance(context, int) and context > 0 else None


def clamp_note(limit: int, asked: int, context: int | None) -> dict[str, int]:
    """What a Generation's `extra` (and so its record's) says when the context cut max_new_tokens for its prompt:
    nothing when the prompt had its whole max_new_tokens."""
    return {} if limit >= asked else {"max_new_tokens_clamped": limit, "context": context or 0}


class Engine(Protocol):
    def generate(self, prompts: Sequence[Messages], params: SamplingParams, seeds: Sequence[int]) -> list[Generation]:
        """One generation per prompt; prompts[i] is sampled with seeds[i] alone (the module's seed contract;
        seeds are ignored when greedy)."""
        ...

    def generate_stream(
        self, prompts: Sequence[Messages], params: SamplingParams, seeds: Sequence[int]
    ) -> Iterator[tuple[int, Generation]]:
        """(index, generation) as each answer arrives, in any order; an engine that answers all at once yields
        them in order (the runner writes each to the records as it comes)."""
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


class AnswersInOrder:
    """For engines that answer a whole call at once: `generate_stream` is `generate`, in order."""

    def generate_stream(
        self, prompts: Sequence[Messages], params: SamplingParams, seeds: Sequence[int]
    ) -> Iterator[tuple[int, Generation]]:
        return enumerate(self.generate(prompts, params, seeds))  # type: ignore[attr-defined]


class CollectsStream:
    """For engines that stream their answers: `generate` is `generate_stream`, collected in prompt order."""

    def generate(self, prompts: Sequence[Messages], params: SamplingParams, seeds: Sequence[int]) -> list[Generation]:
        out: list[Generation | None] = [None] * len(prompts)
        for i, gen in self.generate_stream(prompts, params, seeds):  # type: ignore[attr-defined]
            out[i] = gen
        return out  # type: ignore[return-value]
