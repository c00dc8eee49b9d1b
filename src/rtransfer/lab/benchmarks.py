"""The lab benchmarks (suite `lab`): generated test splits, graded by the graders of their real counterparts.

math: lab_arith, lab_lineq (math-verify, as MATH-500) · other: lab_order, lab_trace (boxed letter, as GPQA)
non: lab_format (IFEval's checkers), lab_story (CoQA's F1), lab_support (HaluEval's Yes/No reading).
Their names, groups and display names are declared in benchmarks/names.py (LAB_BENCHMARKS).
"""

from pathlib import Path
from typing import ClassVar

from rtransfer.benchmarks.base import Doc, Grade, Messages, Settings, Task
from rtransfer.grading.choice import grade_choice
from rtransfer.grading.ifeval import GRADER_VERSION as IFEVAL_GRADER_VERSION
from rtransfer.grading.ifeval import grade_ifeval
from rtransfer.grading.math import GRADER_VERSION as MATH_GRADER_VERSION
from rtransfer.grading.math import grade_math
from rtransfer.grading.overlap import coqa_scores, read_answer
from rtransfer.grading.yesno import parse_yes_no
from rtransfer.lab.generators import LAB_VERSION
from rtransfer.lab.splits import SPLITS_VERSION, eval_items


class LabTask(Task):
    """A generated benchmark: the same 200 test items for every model and seed, no files, no hub."""

    version: ClassVar[str] = f"{LAB_VERSION}.{SPLITS_VERSION}"
    # Lab answers are short; a budget well above the house style leaves room for a tuned model's longer style.
    settings: ClassVar[Settings] = Settings(samples=1, temperature=0.0, max_new_tokens=160)

    def load(self, data_dir: Path | None, seed: int = 0) -> list[Doc]:
        return [
            Doc(f"{self.name}/{i}", {"prompt": item.prompt, "answer": item.answer, **item.data})
            for i, item in enumerate(eval_items(self.name))
        ]

    def prompt(self, doc: Doc) -> Messages:
        return [{"role": "user", "content": doc.data["prompt"]}]

    def gold(self, doc: Doc) -> str:
        return doc.data["answer"]


class LabMath(LabTask):
    grader_version = MATH_GRADER_VERSION

    def grade(self, doc: Doc, response: str) -> Grade:
        return grade_math(response, doc.data["answer"])


class LabChoice(LabTask):
    """A question answered with a boxed letter, graded as GPQA."""

    def grade(self, doc: Doc, response: str) -> Grade:
        return grade_choice(response, doc.data["answer"])


class LabFormat(LabTask):
    """Scored like IFEval: instruction-level strict accuracy (here one or two instructions per prompt)."""

    name = "lab_format"
    grader_version = IFEVAL_GRADER_VERSION

    def grade(self, doc: Doc, response: str) -> Grade:
        return grade_ifeval(response, doc.data["instruction_id_list"], doc.data["kwargs"], doc.data["prompt"])

    def gold(self, doc: Doc) -> dict[str, list]:
        """The instructions, as IFEval's (`answer` is only an example of a compliant response)."""
        return {"instruction_id_list": doc.data["instruction_id_list"], "kwargs": doc.data["kwargs"]}


class LabStory(LabTask):
    """Scored like CoQA: token F1 of the answer's first line against the reference span."""

    name = "lab_story"

    def grade(self, doc: Doc, response: str) -> Grade:
        answer = read_answer(response)
        scores = coqa_scores([doc.data["answer"]], answer)
        return Grade(score=scores["f1"], extracted=answer, extra={"em": scores["em"]})


class LabSupport(LabTask):
    """Scored like HaluEval: the Yes/No verdict read from the answer; unreadable answers score 0."""

    name = "lab_support"

    def grade(self, doc: Doc, response: str) -> Grade:
        verdict, rule = parse_yes_no(response)
        extra = {"rule": rule, **({"unparseable": True} if verdict is None else {})}
        return Grade(score=float(verdict == doc.data["answer"].lower()), extracted=verdict, extra=extra)

    def gold(self, doc: Doc) -> str:
        return doc.data["answer"].lower()  # as the verdict is read: "yes" / "no"


class LabArith(LabMath):
    name = "lab_arith"


class LabLineq(LabMath):
    name = "lab_lineq"


class LabOrder(LabChoice):
    name = "lab_order"


class LabTrace(LabChoice):
    name = "lab_trace"


def blind_guess(name: str, n: int | None = None) -> float:
    """The score (%) of always giving the commonest gold answer on the first `n` test items: the level a
    multiple-choice or Yes/No lab score must beat for the skill to be real. 0 for free-form tasks."""
    if not isinstance(TASKS[name], LabChoice | LabSupport):
        return 0.0
    answers = [item.answer for item in eval_items(name)[:n]]
    return 100 * max(map(answers.count, set(answers))) / len(answers)


TASKS: dict[str, LabTask] = {
    t.name: t for t in (LabArith(), LabLineq(), LabOrder(), LabTrace(), LabFormat(), LabStory(), LabSupport())
}
