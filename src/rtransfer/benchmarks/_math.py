"""What the four math benchmarks share: a boxed-answer prompt, math-verify grading, a JSON Lines test file."""

from pathlib import Path
from typing import ClassVar

from rtransfer.benchmarks.base import Doc, Grade, Messages, Settings
from rtransfer.benchmarks.loading import Rows, RowTask, jsonl_rows
from rtransfer.grading.math import GRADER_VERSION, grade_math

# The paper's sampled math settings (Huan et al.: T=0.6, top-p 0.95; the released evalchemy configs use T=0.7).
SAMPLED = {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32768}

# evalchemy's prompt for MATH500, AIME24 and AIME25 (mlfoundations/evalchemy,
# eval/chat_benchmarks/{MATH500,AIME24,AIME25}/eval_instruct.py, PROMPT). The authors ran these three benchmarks
# with their evalchemy fork (ReasoningTransfer/Transferability-of-LLM-Reasoning, eval/evalchemy), which ships
# only compiled files for them; the upstream source it was forked from has this prompt.
EVALCHEMY_PROMPT = "Problem: {problem}\nMark your solution with \\boxed\nAnswer:"


class MathTask(RowTask):
    """A problem in, a \\boxed{} answer out, graded by equivalence with the document's `answer` field.
    Documents keep their source order (`seed` is unused: nothing is shuffled). Local data is `test.jsonl`, one
    problem a line, each with the `required` fields."""

    grader_version: ClassVar[str] = GRADER_VERSION
    prompt_template: ClassVar[str] = EVALCHEMY_PROMPT
    problem_field: ClassVar[str] = "problem"
    settings: ClassVar[Settings] = Settings(samples=1, **SAMPLED)
    required: ClassVar[tuple[str, ...]] = ()

    def local_rows(self, folder: Path) -> Rows:
        return jsonl_rows(folder / "test.jsonl", self.required)

    def prompt(self, doc: Doc) -> Messages:
        return [{"role": "user", "content": self.prompt_template.format(problem=doc.data[self.problem_field])}]

    def grade(self, doc: Doc, response: str) -> Grade:
        return grade_math(response, doc.data["answer"])

    def gold(self, doc: Doc) -> str:
        return doc.data["answer"]


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} in `text` (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i].strip()
    return None
