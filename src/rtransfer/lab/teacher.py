"""The lab's teacher: correct solutions to the math training problems in a style the base never saw.

The paper distils traces from a larger model (Qwen3-32B); what matters for the study is that those traces are
off-policy: long, with reasoning markers ("Wait", "Let me check", "Alternatively"), unlike anything the base
writes. This solver plays that part. `think=True` writes the reasoning inside <think>…</think> and then a short
answer; `think=False` ("no-think") writes a short solution in the same foreign voice.
"""

import random

from rtransfer.lab.generators import Item


def _arith_reasoning(item: Item, rng: random.Random) -> list[str]:
    lines = ["Let me work through this step by step."]
    for i, step in enumerate(item.data["steps"]):
        lines.append(f"{'First' if i == 0 else 'Next'}, {step}")
        if rng.random() < 0.6:
            lines.append(f"Wait, let me check that: {step.rstrip('.')}. Yes, that is right.")
    lines.append(f"Alternatively, I can recount all the changes at once, and I still get {item.answer}.")
    return lines


def _lineq_reasoning(item: Item, rng: random.Random) -> list[str]:
    a, b, c, x = item.data["a"], item.data["b"], item.data["c"], item.answer
    sign = "+" if a * int(x) + b == c else "-"
    move = f"subtract {b} from" if sign == "+" else f"add {b} to"
    return [
        f"Let me solve {a}x {sign} {b} = {c}.",
        f"First, I {move} both sides, so {a}x = {a * int(x)}.",
        f"Hmm, let me check: {a * int(x)} {sign} {b} = {c}. Yes.",
        f"Then I divide by {a}: x = {x}.",
        f"Wait, let me verify by substituting: {a} * {x} {sign} {b} = {c}. Correct.",
        f"Alternatively, x = ({c} {'-' if sign == '+' else '+'} {b}) / {a} = {x}.",
    ]


REASONING = {"lab_arith": _arith_reasoning, "lab_lineq": _lineq_reasoning}


def teacher_solution(benchmark: str, item: Item, *, think: bool, seed: int = 0) -> str:
    """A correct solution to a lab math item in the teacher's style."""
    rng = random.Random(f"{seed}:{item.prompt}")
    final = f"So the final answer is \\boxed{{{item.answer}}}."
    if think:
        return "<think>\n" + "\n".join(REASONING[benchmark](item, rng)) + "\n</think>\n\n" + final
    return f"Let me check: {' '.join(item.house.split(' ')[:-1])} {final}".replace("  ", " ")
