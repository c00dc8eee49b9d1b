"""The lab's teacher: correct solutions to the math training problems in a style the base never saw.

The paper distils traces from a larger model (Qwen3-32B); what matters for the study is that those traces are
off-policy: long, with reasoning markers ("Wait", "Let me check", "Hmm"), unlike anything the base
writes. This solver plays that part. `think=True` writes the reasoning inside <think>…</think> and then a short
answer; `think=False` ("no-think") writes a short solution in the same foreign voice.

Both write every step, one operation at a time, which the base's terse habit skips (it computes a whole chain in
one go on part of its mid-training data: build.py). The think trace writes the steps first, each next to the
numbers it uses, then reflects on them in words and restates the result before it answers. Traces that checked
each step between the steps, redid the problem in one go, or copied the steps again taught the tiny base to lose
track of its numbers (docs/lab.md).
"""

import random

from rtransfer.lab.generators import Item


def _steps(item: Item) -> str:
    """The house answer's worked steps, without its box."""
    return item.house.rsplit(" ", 1)[0]


def _reasoning(item: Item, check: str, result: str, rng: random.Random) -> list[str]:
    opening = rng.choice(("Wait, let me check that again.", "Hmm, let me verify that.", "Let me double-check."))
    return [_steps(item), f"{opening} {check}", f"So the result is {result}."]


def _arith_reasoning(item: Item, rng: random.Random) -> list[str]:
    return _reasoning(item, "Each step adds or takes away the right number, so that is right.", item.answer, rng)


def _lineq_reasoning(item: Item, rng: random.Random) -> list[str]:
    check = "Putting x back into the equation gives its right side, so that is right."
    return _reasoning(item, check, f"x = {item.answer}", rng)


REASONING = {"lab_arith": _arith_reasoning, "lab_lineq": _lineq_reasoning}


def teacher_solution(benchmark: str, item: Item, *, think: bool, seed: int = 0) -> str:
    """A correct solution to a lab math item in the teacher's style."""
    rng = random.Random(f"{seed}:{item.prompt}")
    final = f"So the final answer is \\boxed{{{item.answer}}}."
    if think:
        return "<think>\n" + "\n".join(REASONING[benchmark](item, rng)) + "\n</think>\n\n" + final
    return f"Let me check: {_steps(item)} {final}".replace("  ", " ")
