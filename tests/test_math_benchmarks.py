"""The four math benchmarks on the real data in shared/benchmarks: loading, prompts, settings, and grading of
every gold answer (which proves the loaders and the grader agree on what the answers are)."""

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rtransfer.benchmarks import aime24, aime25, math500, olympiadbench
from rtransfer.benchmarks._math import last_boxed
from rtransfer.benchmarks.olympiadbench import gold_answer
from rtransfer.benchmarks.registry import get_task
from rtransfer.errors import DataError
from rtransfer.grading.math import grade_math

SHARED = Path(os.environ.get("RTRANSFER_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "benchmarks"
TASKS = {"math500": math500.TASK, "aime24": aime24.TASK, "aime25": aime25.TASK, "olympiadbench": olympiadbench.TASK}
COUNTS = {"math500": 500, "aime24": 30, "aime25": 30, "olympiadbench": 675}


@pytest.fixture(scope="module")
def docs():
    # Fail loudly rather than skip: these are the checks against the real benchmark files.
    assert DATA.is_dir(), f"benchmark data not found at {DATA} (set RTRANSFER_SHARED)"
    return {name: task.load(DATA) for name, task in TASKS.items()}


@pytest.mark.parametrize("name", TASKS)
def test_load_counts_ids_and_prompts(docs, name):
    task, loaded = TASKS[name], docs[name]
    assert len(loaded) == COUNTS[name]
    assert len({d.id for d in loaded}) == len(loaded)
    assert get_task(name) is task and task.name == name and task.group == "math"
    for doc in loaded:
        assert doc.data["answer"].strip()
        messages = task.prompt(doc)
        assert [m["role"] for m in messages] == ["user"]
        assert doc.data[task.problem_field] in messages[0]["content"]


def test_ids_and_answers_match_the_sources(docs):
    first = {name: loaded[0] for name, loaded in docs.items()}
    assert (first["math500"].id, first["math500"].data["answer"]) == (
        "test/precalculus/807.json",
        r"\left( 3, \frac{\pi}{2} \right)",
    )
    assert (first["aime24"].id, first["aime24"].data["answer"]) == ("60", "204")
    assert [d.id for d in docs["aime25"]][:2] == ["2025-I-1", "2025-I-2"]
    assert [d.id for d in docs["aime25"]][-1] == "2025-II-15"
    assert first["aime25"].data["answer"] == "70" and "$17_b$ is a divisor of $97_b" in first["aime25"].data["problem"]
    assert (first["olympiadbench"].id, first["olympiadbench"].data["answer"]) == ("1606", "2")
    by_id = {d.id: d for d in docs["olympiadbench"]}
    assert by_id["1664"].data["answer"] == "69,84"  # "$69$,$84$": two answers, one set
    assert by_id["1965"].data["answer"] == "f(x)=a x+b"  # a gold fix (see olympiadbench.GOLD_FIXES)


def test_prompts_follow_the_authors():
    doc = math500.TASK.load(DATA)[0]
    assert math500.TASK.prompt(doc)[0]["content"] == (
        f"Problem: {doc.data['problem']}\nMark your solution with \\boxed\nAnswer:"
    )
    doc = olympiadbench.TASK.load(DATA)[0]
    assert olympiadbench.TASK.prompt(doc)[0]["content"] == (
        "Solve the following math problem. Present the final answer in the format: Final Answer: "
        f"\\boxed{{your_answer}}.\nProblem: {doc.data['question']}\nAnswer:"
    )


def test_settings():
    assert (math500.TASK.settings.samples, aime24.TASK.settings.samples, aime25.TASK.settings.samples) == (3, 10, 10)
    for task in (math500.TASK, aime24.TASK, aime25.TASK):
        assert (task.settings.temperature, task.settings.top_p) == (0.6, 0.95)
    assert (olympiadbench.TASK.settings.samples, olympiadbench.TASK.settings.temperature) == (1, 0.0)
    for task in TASKS.values():
        assert task.settings.max_new_tokens == 32768
        assert "math-verify" in task.grader_version and task.hf_dataset and task.data_folder


def _grade_all(docs, answer_for):
    jobs = [(TASKS[name], doc) for name, loaded in docs.items() for doc in loaded]
    with ThreadPoolExecutor(max_workers=4) as pool:
        grades = list(pool.map(lambda job: job[0].grade(job[1], answer_for(job[1])), jobs))
    return [(task.name, doc.id, doc.data["answer"], grade) for (task, doc), grade in zip(jobs, grades, strict=True)]


def test_every_gold_answer_scores_one(docs):
    results = _grade_all(docs, lambda doc: f"Some reasoning.\nFinal Answer: \\boxed{{{doc.data['answer']}}}")
    failed = [(name, doc_id, gold, grade) for name, doc_id, gold, grade in results if grade.score != 1]
    assert not failed
    assert sum(COUNTS.values()) == len(results)


def _wrong(doc) -> str:
    # A small integer that is not a number in the gold, so it cannot be a right answer.
    numbers = set(re.findall(r"\d+", doc.data["answer"]))
    return next(str(w) for w in range(100) if str(w) not in numbers)


def test_wrong_answers_score_zero(docs):
    # Every document, with a small integer that does not occur in its gold.
    results = _grade_all(docs, lambda doc: f"Final Answer: \\boxed{{{_wrong(doc)}}}")
    passed = [(name, doc_id, gold) for name, doc_id, gold, grade in results if grade.score != 0]
    assert not passed


def test_olympiadbench_multiple_answers_are_a_set(docs):
    doc = next(d for d in docs["olympiadbench"] if d.id == "1664")
    assert olympiadbench.TASK.grade(doc, r"\boxed{84, 69}").score == 1
    assert olympiadbench.TASK.grade(doc, r"\boxed{69}").score == 0


@pytest.mark.parametrize(
    ("doc_id", "right", "wrong"),
    [
        ("1782", "n^2-n-1", "n^2-n"),
        ("1965", "f(x)=ax+b", "0"),
        ("2045", "(0,4]", "(0,4)"),
    ],
)
def test_olympiadbench_gold_fixes(docs, doc_id, right, wrong):
    doc = next(d for d in docs["olympiadbench"] if d.id == doc_id)
    raw = gold_answer(doc.data["final_answer"], doc_id)
    # as published, math-verify misreads the gold: the right answer fails, or a wrong one passes
    assert grade_math(rf"\boxed{{{right}}}", raw).score == 0 or grade_math(rf"\boxed{{{wrong}}}", raw).score == 1
    assert olympiadbench.TASK.grade(doc, rf"\boxed{{{right}}}").score == 1
    assert olympiadbench.TASK.grade(doc, rf"\boxed{{{wrong}}}").score == 0


def test_gold_answer_forms():
    assert gold_answer(["$69$,$84$"], "x") == "69,84"
    assert gold_answer(["$\\frac{1}{2}$", "$3$"], "x") == "\\frac{1}{2},3"
    assert gold_answer("['2']", "x") == "2"  # the stringified copies
    with pytest.raises(DataError, match=r"f\.jsonl:7"):
        gold_answer([], "f.jsonl:7")


def test_last_boxed():
    assert last_boxed(r"so \boxed{3} hmm \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert last_boxed("no box") is None
    assert last_boxed(r"\boxed{unclosed") is None


# --- malformed data ------------------------------------------------------------------------------------------------


def _jsonl(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD_MATH = json.dumps({"problem": "1+1?", "answer": "2", "unique_id": "a"})


@pytest.mark.parametrize(
    ("task", "file", "lines", "message"),
    [
        (math500.TASK, "math500/test.jsonl", [GOOD_MATH, '{"problem": "2+2?",'], r"test\.jsonl:2: not valid JSON"),
        (
            math500.TASK,
            "math500/test.jsonl",
            [GOOD_MATH, '{"problem": "x", "unique_id": "b"}'],
            r"test\.jsonl:2: missing",
        ),
        (math500.TASK, "math500/test.jsonl", [GOOD_MATH, GOOD_MATH], "duplicate id 'a'"),
        (aime24.TASK, "aime2024/test.jsonl", ["[1, 2]"], r"test\.jsonl:1: expected a JSON object"),
        (
            olympiadbench.TASK,
            "olympiadbench/test.jsonl",
            [
                json.dumps({"id": 1, "question": "q", "final_answer": ["$1$"]}),
                '{"id": 2, "question": "q", "final_answer": []}',
            ],
            r"test\.jsonl:2",
        ),
    ],
)
def test_malformed_jsonl(tmp_path, task, file, lines, message):
    _jsonl(tmp_path / file, *lines)
    with pytest.raises(DataError, match=message):
        task.load(tmp_path)


@pytest.mark.parametrize("task", TASKS.values())
def test_missing_data(tmp_path, task):
    with pytest.raises(DataError, match=task.data_folder):
        task.load(tmp_path)
    (tmp_path / task.data_folder).mkdir()
    with pytest.raises(DataError, match="not found"):
        task.load(tmp_path)


def _aime25_layout(root: Path, answers: str, problems: dict[str, str]) -> None:
    for exam in ("I", "II"):
        folder = root / "aime2025" / f"aime_2025_{exam}"
        (folder / "problems").mkdir(parents=True)
        (folder / "answers.csv").write_text(answers, encoding="utf-8")
        for number, text in problems.items():
            (folder / "problems" / f"{number}.tex").write_text(text, encoding="utf-8")


def test_aime25_layout(tmp_path):
    _aime25_layout(tmp_path, "id,answer\n2,5\n1,7\n", {"1": "Find $x$.", "2": "Find $y$."})
    loaded = aime25.TASK.load(tmp_path)
    assert [d.id for d in loaded] == ["2025-I-1", "2025-I-2", "2025-II-1", "2025-II-2"]
    assert (loaded[0].data["problem"], loaded[0].data["answer"]) == ("Find $x$.", "7")


@pytest.mark.parametrize(
    ("answers", "problems", "message"),
    [
        ("id,answer\n1,7\n2,seven\n", {"1": "a", "2": "b"}, r"answers\.csv:3"),
        ("number,value\n1,7\n", {"1": "a"}, r"answers\.csv:1"),
        ("id,answer\n1,7\n2,8\n", {"1": "a"}, r"problems/2\.tex: file not found"),
        ("id,answer\n1,7\n", {"1": "a", "2": "b"}, r"no answer for 2\.tex"),
        ("id,answer\n1,7\n1,8\n", {"1": "a"}, r"answers\.csv:3: problem 1 listed twice"),
    ],
)
def test_aime25_malformed(tmp_path, answers, problems, message):
    _aime25_layout(tmp_path, answers, problems)
    with pytest.raises(DataError, match=message):
        aime25.TASK.load(tmp_path)
