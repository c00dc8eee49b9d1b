"""The OpenAI-compatible engine's response parsing: pure functions on the JSON answers servers return (vLLM, SGLang,
transformers serve), tested on their shapes."""

from collections.abc import Sequence
from typing import Any

from rtransfer.engines.base import Generation, cut_at_stop
from rtransfer.engines.transport import LoglikelihoodUnsupportedError, ServerError

REASONING_FIELDS = ("reasoning_content", "reasoning")  # SGLang, transformers serve, older vLLM; recent vLLM


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
