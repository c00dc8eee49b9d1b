"""Choice-letter extraction and log-likelihood choice grading."""

import math

import pytest

from rtransfer.grading.choice import argmax_first, boxed_contents, extract_choice, grade_choice, grade_loglik


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        # \boxed{} in its usual dresses
        (r"So the answer is \boxed{C}", "C"),
        (r"\boxed{\text{B}}", "B"),
        (r"\boxed{\textbf{(A)}}", "A"),
        (r"\boxed{(D)}", "D"),
        (r"$\boxed{d}$", "D"),
        (r"\boxed{C.}", "C"),
        (r"\boxed{ B }", "B"),
        (r"\boxed{C) Collagen}", "C"),
        (r"\boxed{(B) Collagen}", "B"),
        (r"\boxed{\text{option } A}", "A"),
        (r"\fbox{A}", "A"),
        # the last box wins; a box that is not a letter is passed over
        (r"First \boxed{A}, on reflection \boxed{B}", "B"),
        (r"\boxed{B} and the speed is \boxed{12\,\mathrm{m/s}}", "B"),
        (r"The value is \boxed{42}. Answer: D", "D"),
        # a box beats a later statement
        (r"\boxed{A}. The answer is B", "A"),
        # explicit statements
        ("The answer is C.", "C"),
        ("the answer is (b)", "B"),
        ("Answer: D", "D"),
        ("ANSWER: a", "A"),
        ("answer: a\nbecause the others are wrong", "A"),
        ("Answer:B", "B"),
        ("answer is: C", "C"),
        ("**Final Answer**: D.", "D"),
        ("**Final Answer:** A", "A"),
        ("Step 2: holds. **Final Answer**: B.", "B"),
        ("Final answer: [C]", "C"),
        ("The correct answer is **C** because", "C"),
        ("The answer is $B$.", "B"),
        (r"Answer: \text{D}", "D"),
        ("The correct option is B", "B"),
        ("so the answer is option C", "C"),
        ("The answer is A because B is wrong", "A"),
        ("The answer is a.", "A"),
        ("Answer: C\n\nWait, re-reading the question, the answer is B.", "B"),
        # thinking is not the answer
        ("<think>Answer: A</think>Answer: B", "B"),
        ("reasoning, the answer is A</think>\nAnswer: C", "C"),
    ],
)
def test_extract_choice(response, letter):
    assert extract_choice(response) == letter


@pytest.mark.parametrize(
    "response",
    [
        "",
        "I am not sure.",
        "A good answer needs more data.",  # a capital A in prose is not a choice
        "Based on the data, Collagen is right.",
        "Answer: As shown above, collagen.",  # "As" is a word
        "the answer is a mixture of both",  # "a" the article
        "Both answers: A and B look plausible",  # "answers", not an answer statement
        "Answer: E",  # not one of A-D
        r"\boxed{E}",
        r"\boxed{A and B}",
        r"\boxed{Collagen}",  # the option's text, not its letter: no guess
        "<think>The answer is A, so",  # ran out of tokens while thinking
        "<think>Answer: B</think>",
    ],
)
def test_extract_choice_none(response):
    assert extract_choice(response) is None


def test_extract_choice_with_more_letters():
    assert extract_choice("Answer: E", letters="ABCDE") == "E"
    assert extract_choice(r"\boxed{e}", letters="ABCDE") == "E"


def test_boxed_contents_balances_braces():
    assert boxed_contents(r"\boxed{\text{A}} and \boxed{\frac{1}{2}} and \boxed{") == [r"\text{A}", r"\frac{1}{2}"]


def test_grade_choice():
    right = grade_choice(r"\boxed{B}", "B")
    assert (right.score, right.extracted) == (1.0, "B")
    for other in ("A", "C", "D"):
        assert grade_choice(f"Answer: {other}", "B").score == 0.0
    missing = grade_choice("no idea", "b")
    assert (missing.score, missing.extracted) == (0.0, None)


def test_argmax_first():
    assert argmax_first([-3.0, -1.0, -2.0]) == 1
    assert argmax_first([-1.0, -1.0, -2.0]) == 0  # ties: first
    assert argmax_first([-2.0, -0.5, -0.5]) == 1
    assert argmax_first([math.nan, -5.0]) == 1  # NaN never wins
    assert argmax_first([-math.inf, -math.inf]) == 0
    with pytest.raises(ValueError):
        argmax_first([])


def test_grade_loglik():
    g = grade_loglik([-4.0, -1.5, -3.0, -2.0], gold=1)
    assert (g.score, g.extracted, g.extra["pred"], g.extra["gold"]) == (1.0, 1, 1, 1)
    assert grade_loglik([-4.0, -1.5, -3.0, -2.0], gold=3).score == 0.0
    assert grade_loglik([-1.0, -1.0], gold=1).score == 0.0  # the tie goes to the first


def test_grade_loglik_acc_norm():
    # Per character: -6/6 = -1.0 beats -2/1 = -2.0, though -2 is the larger raw log-probability.
    g = grade_loglik([-6.0, -2.0], gold=0, continuations=["abcdef", "x"])
    assert (g.score, g.extra["pred_norm"], g.extra["acc_norm"]) == (0.0, 0, 1.0)


def test_grade_loglik_rejects_mismatches():
    with pytest.raises(ValueError):
        grade_loglik([-1.0, -2.0], gold=2)
    with pytest.raises(ValueError):
        grade_loglik([-1.0, -2.0], gold=0, continuations=["a"])
