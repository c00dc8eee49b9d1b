"""Reading a Yes/No verdict from a generated answer (HaluEval's judge prompts ask for exactly "Yes" or "No").

The verdict comes from the answer part of the response (thinking removed), in this order:
  1. the last `\\boxed{...}` holding only yes or no (`\\boxed{No}`, `\\boxed{\\text{Yes}}`);
  2. else the last explicit statement: "#Your Judgement#: No", "Judgment: yes", "the answer is No.",
     "**Verdict:** Yes", "Hallucination: no" — the word must end the statement (punctuation, a line break or the
     end of the text follows), so "the answer is no longer valid" is not a verdict;
  3. else the first word of the answer, ending its sentence as in 2: "Yes, the answer ...", "**No**.", "NO" (but
     not "Yes and No", nor "No hallucination", which go on to 4);
  4. else, as the official HaluEval script (RUCAIBox/HaluEval evaluation/evaluate.py) and the authors' lm-eval task,
     a text that holds exactly one of the two verdicts, but as whole capitalised words ("Yes"/"YES", "No"/"NO"), and
     not the other in any case: the official test is a case-sensitive substring test, in which "No" also matches
     "Not", "None" and "Now";
  5. else no verdict (None): the caller scores it 0 and counts it. Nothing else is guessed: lowercase prose such as
     "there is no evidence" is not a verdict.
`lm_eval_verdict` is the authors' rule itself (first line, case-sensitive substrings), kept for comparison.
"""

import re

from rtransfer.grading.text import strip_thinking

_WORD = r"(?P<verdict>yes|no)"
# The verdict ends its sentence: markdown or quotes, then punctuation, a line break or the end of the text.
_ENDS = r"\b(?=[ \t*_`\"']*(?:[.,;:!?)\]}\n]|$))"
_BOXED = re.compile(r"\\boxed\s*\{\s*(?:\\text\s*\{)?\s*" + _WORD + r"\s*\.?\s*\}?\s*\}", re.IGNORECASE)
_STATEMENT = re.compile(
    r"\b(?:judge?ment|verdict|answer|conclusion|hallucinat\w*)[\s*_#]*(?:is|would\s+be|:)?[\s*_#:\"'`]*\b"
    + _WORD
    + _ENDS,
    re.IGNORECASE,
)
_FIRST = re.compile(r"^[\s*_#`\"'(\[]*" + _WORD + _ENDS, re.IGNORECASE)
_CAPITALISED = re.compile(r"\b(Yes|YES|No|NO)\b")


def parse_yes_no(response: str) -> tuple[str | None, str]:
    """("yes" | "no" | None, the rule that decided: boxed, statement, first_word, only_verdict or none)."""
    answer = strip_thinking(response)
    if boxed := list(_BOXED.finditer(answer)):
        return boxed[-1]["verdict"].lower(), "boxed"
    if statements := list(_STATEMENT.finditer(answer)):
        return statements[-1]["verdict"].lower(), "statement"
    if first := _FIRST.match(answer):
        return first["verdict"].lower(), "first_word"
    found = {word.lower() for word in _CAPITALISED.findall(answer)}
    if len(found) == 1:
        verdict = found.pop()
        other = "no" if verdict == "yes" else "yes"
        if not re.search(rf"\b{other}\b", answer, re.IGNORECASE):  # "Yes and no" is no verdict
            return verdict, "only_verdict"
    return None, "none"


def lm_eval_verdict(response: str) -> str | None:
    """The authors' lm-eval rule (halueval utils.py `process_results`): the first line of the (thinking-free)
    answer; "yes" if it contains the substring "Yes" and not "No", "no" the other way round, else None."""
    line = strip_thinking(response).strip().split("\n")[0]
    has_yes, has_no = "Yes" in line, "No" in line
    if has_yes == has_no:
        return None
    return "yes" if has_yes else "no"
