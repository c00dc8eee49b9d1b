"""Answer overlap as SQuAD and CoQA score it: normalisation, exact match, token F1, and CoQA's multi-reference rule.

Definitions follow the official CoQA evaluator (`evaluate-v1.0.py`, stanfordnlp.github.io/coqa, "based partially on
the SQuAD 2.0 evaluation script"):
  normalise   lower-case; drop ASCII punctuation (`string.punctuation`); replace the whole words a/an/the by a
              space; collapse whitespace. In that order, so "A: white" becomes "white".
  EM          1 if the normalised strings are equal, else 0.
  F1          over the normalised tokens (bags, not sets): P = common/len(pred), R = common/len(gold). When either
              side has no tokens, F1 is 1 if both are empty, else 0.
  references  with n > 1 references, the score is the mean over i of the best score against the n-1 references
              other than i (leave-one-out: the evaluator scores humans the same way, each against the others, so
              model and human numbers are comparable). With one reference it is the score against that reference.
The SQuAD rule, the best score over all references, is `max_reference`. It is never lower than CoQA's rule: a
prediction matching only one of four references gets F1 1 by SQuAD's rule and 0.75 by CoQA's.
"""

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

from rtransfer.grading.text import strip_thinking

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)

Metric = Callable[[str, str], float]  # (gold, prediction) -> score in [0, 1]
# "Answer:", "**Answer:**", "A:" at the start of the line: a label, not part of the answer.
_LABEL = re.compile(r"^[\s*_#]*(?:answer|a)[\s*_]*:[\s*_]*", re.IGNORECASE)


def read_answer(response: str) -> str:
    """The answer a free-form response gives (CoQA, the lab's story task): the first line after thinking is
    removed, without a leading label."""
    lines = strip_thinking(response).strip().split("\n")
    return _LABEL.sub("", lines[0]).strip()


def normalize_answer(text: str) -> str:
    """The official CoQA/SQuAD normalisation (see the module doc)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(gold: str, prediction: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(prediction))


def token_f1(gold: str, prediction: str) -> float:
    gold_tokens, pred_tokens = answer_tokens(gold), answer_tokens(prediction)
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)  # a "no answer" agrees only with another "no answer"
    common = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def leave_one_out(metric: Metric, references: Sequence[str], prediction: str) -> float:
    """CoQA's multi-reference score: mean over each reference left out of the best score against the rest."""
    if not references:
        raise ValueError("no reference answers")
    if len(references) == 1:
        return metric(references[0], prediction)
    scores = [metric(ref, prediction) for ref in references]
    # The best over "all but i" is the overall best unless i is the only reference reaching it.
    return sum(max(scores[:i] + scores[i + 1 :]) for i in range(len(scores))) / len(scores)


def max_reference(metric: Metric, references: Sequence[str], prediction: str) -> float:
    """SQuAD's multi-reference score: the best over all references."""
    if not references:
        raise ValueError("no reference answers")
    return max(metric(ref, prediction) for ref in references)


def coqa_scores(references: Sequence[str], prediction: str) -> dict[str, float]:
    """EM and F1 (each in [0, 1]) of one answer, by CoQA's leave-one-out rule."""
    return {
        "em": leave_one_out(exact_match, references, prediction),
        "f1": leave_one_out(token_f1, references, prediction),
    }
