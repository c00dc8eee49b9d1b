"""The math grader: math-verify equivalence, answer extraction, timeouts in killable workers, threads."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rtransfer.grading import math as math_grading
from rtransfer.grading.math import GRADER_VERSION, grade_math

# A power tower sympy tries to evaluate exactly: verifying it against anything runs for hours.
TOWER = r"The answer is \boxed{9^{9^{9^{9^{9}}}}}."
DRAFT_THEN_ANSWER = (
    r"A first guess is \boxed{3}. Checking parity, the count must be even, which rules that out. "
    r"Counting the cases one by one gives \boxed{4}."
)


@pytest.mark.parametrize(
    ("gold", "response", "score"),
    [
        # fractions and decimals
        (r"\frac{1}{2}", r"So $x = \boxed{0.5}$.", 1),
        ("0.5", r"\boxed{\frac12}", 1),
        (r"\frac{1}{3}", r"\boxed{0.33}", 0),
        # intervals: the brackets matter
        ("(1,2]", r"\boxed{(1,2]}", 1),
        ("(1,2]", r"\boxed{(1,2)}", 0),
        ("(1,2]", r"\boxed{[1,2]}", 0),
        # \pm is the set of both roots, not either one
        (r"1\pm\sqrt{2}", r"\boxed{1+\sqrt{2},\ 1-\sqrt{2}}", 1),
        (r"1\pm\sqrt{2}", r"\boxed{1+\sqrt{2}}", 0),
        # text answers
        (r"\text{(C)}", r"\boxed{C}", 1),
        (r"\text{(C)}", r"\boxed{\text{(D)}}", 0),
        (r"\text{east}", r"The ship sails \boxed{\text{east}}", 1),
        (r"\text{east}", r"\boxed{west}", 0),
        ("east", r"\boxed{\text{east}}", 1),
        # units are not part of the value
        ("5", r"\boxed{5 \text{ cm}}", 1),
        (r"5.4 \text{ cents}", r"\boxed{5.4}", 1),
        (r"\frac{270}7\text{ degrees}", r"\boxed{\frac{270}{7}}", 1),
        # several answers: any order of the same set
        ("69,84", r"\boxed{84, 69}", 1),
        ("69,84", r"\boxed{69}", 0),
        # an assignment is read as its value
        ("2", r"\boxed{x=2}", 1),
        # a sentence's full stop inside the box is not part of the answer
        ("12", r"\boxed{12.}", 1),
        (r"(-\infty, 0) \cup\{1\}.", r"\boxed{0}", 0),
        (r"(-\infty, 0) \cup\{1\}.", r"\boxed{(-\infty,0)\cup\{1\}}", 1),
        # the last box wins over an earlier draft...
        ("4", DRAFT_THEN_ANSWER, 1),
        ("3", DRAFT_THEN_ANSWER, 0),
        # ...but math-verify reads boxes close together, joined by "and", "or" or a comma, as one answer
        ("2,3", r"$x=\boxed{2}$ and $x=\boxed{3}$", 1),
        # without a box, math-verify's answer patterns still apply
        ("3", "The answer is 3", 1),
    ],
)
def test_equivalence(gold, response, score):
    grade = grade_math(response, gold)
    assert grade.score == score, (gold, response, grade)
    assert isinstance(grade.extracted, str)


def test_gold_goes_first():
    # verify() is asymmetric: a set answers an inequality gold, an inequality does not answer a set gold.
    assert grade_math(r"\boxed{(1,2]}", r"1 < x \le 2").score == 1
    assert grade_math(r"\boxed{1 < x \le 2}", "(1,2]").score == 0


def test_boxed_inside_thinking_is_not_the_answer():
    response = r"<think>Maybe \boxed{3}? No: 2+2 is 4.</think>The answer is \boxed{4}."
    assert grade_math(response, "3").score == 0
    grade = grade_math(response, "4")
    assert (grade.score, grade.extracted) == (1, "4")
    # Qwen3 templates open <think> in the prompt: only the closing tag is in the response
    assert grade_math(r"so \boxed{3} maybe</think>It is \boxed{4}", "3").score == 0
    # ran out of tokens while thinking: no answer at all
    assert grade_math(r"<think>I guess \boxed{3}", "3").extracted is None


@pytest.mark.parametrize("response", ["", "I could not solve this problem.", r"\boxed{}", "<think>3</think>"])
def test_no_answer(response):
    grade = grade_math(response, "3")
    assert (grade.score, grade.extracted) == (0, None)


def test_unparseable_gold_is_an_error_not_a_score():
    grade = grade_math(r"\boxed{3}", "")
    assert grade.score == 0 and "error" in grade.extra


def test_pathological_answer_times_out_quickly():
    grade_math(r"\boxed{1}", "1")  # start the workers first: their startup is not the answer's time
    start = time.monotonic()
    grade = grade_math(TOWER, "5", timeout=2)
    elapsed = time.monotonic() - start
    assert grade.score == 0 and grade.extra == {"timeout": True}
    assert 1.9 < elapsed < 8, elapsed
    # the killed worker is replaced: grading goes on
    assert grade_math(r"\boxed{5}", "5").score == 1


CASES = [
    (r"\boxed{\frac{1}{2}}", "0.5"),
    (r"\boxed{(1,2]}", "(1,2]"),
    (r"\boxed{[1,2]}", "(1,2]"),
    (r"<think>\boxed{7}</think>\boxed{8}", "7"),
    (r"\boxed{1 \pm \sqrt{3}}", r"1+\sqrt{3},1-\sqrt{3}"),
    (r"\boxed{\text{(B)}}", r"\text{(B)}"),
    ("no answer here", "2"),
    (r"\boxed{x^2+2x+1}", "(x+1)^2"),
    (r"\boxed{x^2+2x}", "(x+1)^2"),
] * 4


def test_threads_grade_like_sequential_calls():
    sequential = [grade_math(r, g) for r, g in CASES]
    with ThreadPoolExecutor(max_workers=6) as pool:
        threaded = list(pool.map(lambda case: grade_math(*case), CASES))
    assert threaded == sequential
    assert [g.score for g in sequential[:9]] == [1, 1, 0, 0, 1, 1, 0, 1, 0]


def test_a_timeout_in_one_thread_spares_the_others():
    cases = [(TOWER, "5", 1.0)] + [(rf"\boxed{{{i}}}", str(i), 1.0) for i in range(12)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        grades = list(pool.map(lambda case: grade_math(*case), cases))
    assert grades[0].extra == {"timeout": True}
    assert all(g.score == 1 for g in grades[1:])


def test_resizing_and_shutdown_while_threads_grade():
    cases = [(rf"\boxed{{{i}}}", str(i)) for i in range(40)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(grade_math, *case) for case in cases]
        math_grading.set_workers(1)
        time.sleep(0.5)
        math_grading.shutdown()
        grades = [f.result() for f in futures]
    assert all(g.score == 1 for g in grades), grades


def test_a_worker_killed_from_outside_is_replaced():
    grade_math(r"\boxed{1}", "1")
    pool = math_grading._pool()
    workers = [w for w in pool.idle if w is not None]
    assert workers
    for worker in workers:
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
    assert grade_math(r"\boxed{2}", "2").score == 1


def test_shutdown_stops_workers_and_grading_restarts():
    grade_math(r"\boxed{1}", "1")
    processes = [w.process for w in math_grading._pool().live]
    math_grading.shutdown()
    assert processes and all(p.poll() is not None for p in processes)
    assert grade_math(r"\boxed{1}", "1").score == 1


def test_grader_version_names_math_verify():
    assert "math-verify" in GRADER_VERSION


def test_workers_outlive_the_thread_that_started_them():
    # Linux's parent-death signal follows the starting *thread*; callers' threads must not take workers along.
    math_grading.shutdown()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda i: grade_math(rf"\boxed{{{i}}}", str(i)), range(4)))
    time.sleep(0.3)
    processes = [w.process for w in math_grading._pool().live]
    assert processes and all(p.poll() is None for p in processes)


SCRIPT = """
import sys
from rtransfer.grading import math as m
m.grade_math(r"\\boxed{1}", "1")
print(" ".join(str(w.process.pid) for w in m._pool().live), flush=True)
if sys.argv[1] == "hang":
    m.grade_math(sys.argv[2], "5", timeout=1000)
sys.stdin.read()  # "exit": stay until the test has seen the worker alive, then exit normally
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"  # a zombie has exited
    except (FileNotFoundError, IndexError):
        return False


def _wait_gone(pids: list[int]) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


@pytest.mark.parametrize("how", ["exit", "hang"])
def test_no_worker_outlives_its_parent(how):
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, "RTRANSFER_MATH_WORKERS": "1"}
    command = [sys.executable, "-c", SCRIPT, how, TOWER]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    pids = [int(p) for p in child.stdout.readline().split()]
    assert pids and all(_alive(p) for p in pids)
    if how == "hang":  # killed while its worker is stuck in sympy: the kernel takes the worker too
        time.sleep(0.3)
        child.kill()
    child.stdin.close()  # "exit": lets the child finish its script
    child.wait(timeout=30)
    child.stdout.close()
    assert _wait_gone(pids)
