"""Text helpers every grader shares."""

import re

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def strip_thinking(text: str) -> str:
    """The answer part of a reasoning model's output.

    Closed `<think>…</think>` blocks are removed. Qwen3-style templates put the opening `<think>` in the prompt,
    so a lone `</think>` means everything before it was thinking. An opening `<think>` that is never closed means
    the model ran out of tokens while thinking: there is no answer, so the result is empty.
    """
    text = _THINK.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text.strip()
