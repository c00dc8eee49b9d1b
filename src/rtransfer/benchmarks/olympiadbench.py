"""OlympiadBench (He et al., 2024), the English text-only open-ended math subset OE_TO_maths_en_COMP: 675
competition problems. Boxed answer graded by equivalence, greedy, one sample."""

import ast
from typing import Any

from rtransfer.benchmarks._math import MathTask
from rtransfer.benchmarks.base import Doc, Settings
from rtransfer.errors import DataError

# The authors ran OlympiadBench with their lm-evaluation-harness task: repository
# ReasoningTransfer/Transferability-of-LLM-Reasoning, eval/lm-evaluation-harness/lm_eval/tasks/olympiad/olympiad.yaml
# (this prompt is its doc_to_text; it generates greedily until "Problem:"), reading the same file as
# shared/benchmarks/olympiadbench/test.jsonl (Qwen2.5-Math's copy).
PROMPT = (
    "Solve the following math problem. Present the final answer in the format: Final Answer: \\boxed{{your_answer}}."
    "\nProblem: {problem}\nAnswer:"
)

# Gold answers that math-verify cannot read as intended (found by grading every gold against itself and against
# trivial wrong answers). Without these fixes, 1965 is read as 0, so "\boxed{0}" would score;
# 1782 ("m_{\max }=n^{2}-n-1") does not parse, so only that exact string would score; 2045 ("t(0,4]") lost its
# "\in" and reads as a string. The fix keeps the mathematical answer. 1965 drops its side conditions on a and b,
# which an equivalence grader cannot check anyway.
GOLD_FIXES = {
    "1782": "n^{2}-n-1",
    "1965": "f(x)=a x+b",
    "2045": "(0,4]",
}


class OlympiadBench(MathTask):
    name = "olympiadbench"
    version = "1"
    prompt_template = PROMPT
    settings = Settings(samples=1, temperature=0.0, top_p=1.0, max_new_tokens=32768, stop=("Problem:",))
    hf_dataset = "Hothan/OlympiadBench"
    hf_split = "train"
    hf_config = "OE_TO_maths_en_COMP"
    data_folder = "olympiadbench"
    required = ("id", "question", "final_answer")

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> Doc:
        doc_id = str(row["id"])
        answer = GOLD_FIXES.get(doc_id) or gold_answer(row["final_answer"], where)
        context = row.get("context")  # None throughout this subset; kept for copies that have it
        problem = row["question"] if context in (None, "", "None") else f"{context}\n{row['question']}"
        return Doc(id=doc_id, data={**row, "problem": problem, "answer": answer})


def gold_answer(final_answer: Any, where: str) -> str:
    """One gold string from OlympiadBench's `final_answer`: a list of answers, each LaTeX in $…$ pieces.

    Several answers (a list, or one string such as "$69$,$84$" when is_multiple_answer) become one
    comma-separated answer, which math-verify reads as a set: any order of the same answers is right.
    """
    if isinstance(final_answer, str):  # some copies stringify the list: "['2']"
        try:
            final_answer = ast.literal_eval(final_answer) if final_answer.startswith("[") else [final_answer]
        except (ValueError, SyntaxError):
            raise DataError(f"{where}: unreadable final_answer {final_answer!r}") from None
    if not isinstance(final_answer, list) or not final_answer:
        raise DataError(f"{where}: final_answer must be a non-empty list, got {final_answer!r}")
    parts = [str(part).replace("$", "").strip() for part in final_answer]
    if not all(parts):
        raise DataError(f"{where}: empty answer in final_answer {final_answer!r}")
    return ",".join(parts)


TASK = OlympiadBench()
