"""The reward of the on-policy methods: the math grader's correctness of a completion's final answer.

Why a thread pool: TRL calls the reward once per generation batch, with every completion of this process (1,024 of
up to 20K tokens each in the paper's GRPO recipe). `grade_math` runs math-verify in a pool of worker processes and
any number of threads may call it at once, each borrowing an idle worker; graded one by one, only one worker would
ever be busy. So the completions are mapped over as many threads as the grader has workers.
"""

from concurrent.futures import ThreadPoolExecutor

from rtransfer.grading import math as math_grader


def completion_text(completion) -> str:
    """A TRL completion as text: a string, or the assistant message of a conversational completion."""
    return completion if isinstance(completion, str) else "".join(m["content"] for m in completion)


def correctness_reward(completions, answer, **_) -> list[float]:
    """1.0 for a completion whose final answer the math grader accepts, else 0.0, in the completions' order (TRL's
    reward signature; TRL logs it under this function's name, `correctness_reward`)."""
    texts = [completion_text(c) for c in completions]
    golds = list(answer)
    if len(texts) != len(golds):
        raise ValueError(f"{len(texts)} completions for {len(golds)} answers")
    with ThreadPoolExecutor(max_workers=grader_workers(), thread_name_prefix="rtransfer-reward") as threads:
        return list(threads.map(lambda text, gold: math_grader.grade_math(text, gold).score, texts, golds))


def grader_workers() -> int:
    """How many answers the math grader can grade at once: its pool's worker count (min(4, CPUs) by default,
    $RTRANSFER_MATH_WORKERS or `set_workers` otherwise). More threads than workers would only queue."""
    return math_grader.workers()
