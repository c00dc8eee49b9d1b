"""Multiple-choice grading: read a choice letter from a generated answer, or pick the likeliest continuation.

Generated answers: the letter comes from the answer part of the response (thinking removed), in this order
  1. the last `\\boxed{...}` whose content is a choice: `\\boxed{C}`, `\\boxed{\\text{C}}`, `\\boxed{(C)}`,
     `\\boxed{C. text}`; a box holding something else (a number, the option's text) is skipped;
  2. else the last explicit statement: "the answer is C", "Answer: (c)", "**Final Answer**: D.", "answer is $B$";
  3. else None. Nothing is guessed: a stray capital letter in the prose is not an answer, so no answer scores 0.
A lowercase letter counts only where it cannot be the article "a" ("answer: (a)", "answer is a." but not
"the answer is a mixture"). Letters outside the task's choices ("Answer: E" with four options) are ignored.

Log-likelihood tasks: the answer is the continuation with the highest summed log-probability (lm-eval `acc`);
ties go to the first. `acc_norm` (log-probability per character of the continuation, as lm-eval) is kept too.
"""

import math
import re
from collections.abc import Sequence

from rtransfer.grading.grade import Grade
from rtransfer.grading.text import strip_thinking

LETTERS = "ABCD"

# lm-eval joins context and continuation with a space (target_delimiter " "). Where a chat template is applied the
# continuation opens the assistant turn, and lm-eval drops that space (PR #2475, Nov 2024), which is how the
# authors ran HEAD-QA and MC-TACO (`--apply_chat_template`). Tasks write the running-text form; the engine drops the
# space in chat mode (rtransfer.engines.base.Engine.loglikelihood), so base-model mode keeps lm-eval's " yes".
TARGET_DELIMITER = " "

# Wrappers a model puts around the letter inside a box or after "Answer:".
_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
# "C", "(C)", "[C]", "C.", "c", "option C" — the whole box is one letter.
_BOX_LETTER = re.compile(r"(?:(?:option|choice|answer)\s*:?\s*)?[\(\[]?\s*([A-Za-z])\s*[\)\]]?\s*\.?", re.I)
# "C) Collagen", "(C) Collagen", "C. Collagen", "C: Collagen" — a capital letter, then the option's text.
_BOX_LETTER_TEXT = re.compile(r"[\(\[]?([A-Z])(?:[\)\]]|[.:])\s*\S.*", re.S)
# An explicit answer statement. The markdown allowances cover "**Final Answer**: D" and "**Answer:** D".
_STATEMENT = re.compile(
    r"\b(?:answer|correct\s+option|correct\s+choice)"
    r"[\s*_]*(?:is|would\s+be|should\s+be|:)[\s*_:]*"
    r"(?:(?:option|choice)\s+)?"
    r"[$\s]*(?:\\(?:text|textbf|mathrm|mathbf)\s*\{)?"
    r"(?P<open>[\(\[])?\s*(?P<letter>[A-Za-z])\s*(?P<close>[\)\]])?"
    r"(?![A-Za-z0-9])",
    re.I,
)
# After a lowercase letter: only punctuation or the end, never another word ("is a mixture").
_LOWER_END = re.compile(r"[ \t]*(?:[.,;:!?*$}\n]|$)")


def boxed_contents(text: str) -> list[str]:
    """The contents of every `\\boxed{...}` (and `\\fbox{...}`) in order, braces balanced."""
    found = []
    for match in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found.append(text[start:i])
                break
    return found


def _box_letter(content: str, letters: str) -> str | None:
    s = content
    while (unwrapped := _WRAPPER.sub(r"\1", s)) != s:
        s = unwrapped
    s = s.replace("$", "").replace("*", "").strip()
    m = _BOX_LETTER.fullmatch(s) or _BOX_LETTER_TEXT.fullmatch(s)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    return None


def _statement_letter(text: str, letters: str) -> str | None:
    found = None
    for m in _STATEMENT.finditer(text):
        letter = m.group("letter")
        if letter.upper() not in letters:
            continue
        bracketed = m.group("open") and m.group("close")
        if letter.islower() and not bracketed and not _LOWER_END.match(text, m.end()):
            continue  # "the answer is a mixture of ...": an article, not choice (a)
        found = letter.upper()
    return found


def extract_choice(response: str, letters: str = LETTERS) -> str | None:
    """The choice letter (upper case) a response gives as its final answer, or None (see the module doc)."""
    answer = strip_thinking(response)
    for content in reversed(boxed_contents(answer)):
        if (letter := _box_letter(content, letters)) is not None:
            return letter
    return _statement_letter(answer, letters)


def grade_choice(response: str, gold: str, letters: str = LETTERS) -> Grade:
    """1 if the extracted letter is the gold one, else 0 (also when no letter is found)."""
    letter = extract_choice(response, letters)
    return Grade(score=float(letter == gold.upper()), extracted=letter, extra={"gold": gold.upper()})


def argmax_first(values: Sequence[float]) -> int:
    """Index of the largest value; ties go to the first; NaN never wins."""
    if not values:
        raise ValueError("no values to choose from")
    best, best_value = 0, -math.inf
    for i, v in enumerate(values):
        v = -math.inf if math.isnan(v) else float(v)
        if v > best_value:
            best, best_value = i, v
    return best


def grade_loglik(logprobs: Sequence[float], gold: int, continuations: Sequence[str] | None = None) -> Grade:
    """Log-likelihood multiple choice: `extracted` is the index of the likeliest continuation.

    With the continuations given, `extra` also holds lm-eval's `acc_norm` prediction (log-probability divided by
    the continuation's length in characters)."""
    if not 0 <= gold < len(logprobs):
        raise ValueError(f"gold index {gold} outside {len(logprobs)} choices")
    pred = argmax_first(logprobs)
    extra: dict = {"pred": pred, "gold": gold, "logprobs": [float(x) for x in logprobs]}
    if continuations is not None:
        if len(continuations) != len(logprobs):
            raise ValueError(f"{len(logprobs)} log-probabilities for {len(continuations)} continuations")
        pred_norm = argmax_first([lp / max(len(c), 1) for lp, c in zip(logprobs, continuations, strict=True)])
        extra.update(pred_norm=pred_norm, acc_norm=float(pred_norm == gold))
    return Grade(score=float(pred == gold), extracted=pred, extra=extra)
