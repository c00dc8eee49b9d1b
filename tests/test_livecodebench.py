"""LiveCodeBench: hand-written problems in the hub's schema (private tests encoded as in the official files), graded
in the real sandbox."""

import base64
import json
import pickle
import zlib

import pytest

from helpers import PAIRS, SUM, TOP_K, call_case, stdin_case
from helpers import write_livecodebench as write
from rtransfer.benchmarks.livecodebench import (
    FORMAT_WITH_STARTER_CODE,
    FORMAT_WITHOUT_STARTER_CODE,
    SYSTEM_MESSAGE,
    TASK,
    VARIANTS,
    LiveCodeBench,
)
from rtransfer.errors import DataError
from rtransfer.grading.code import extract_code, stdout_matches
from rtransfer.records import Record


def fenced(code: str, lang: str = "python") -> str:
    return f"Here is my solution.\n```{lang}\n{code}\n```\nDone."


@pytest.fixture
def docs(tmp_path):
    return {doc.id: doc for doc in TASK.load(write(tmp_path, [SUM, TOP_K, PAIRS]))}


def test_load_decodes_all_tests_and_keeps_the_schema(docs):
    assert list(docs) == ["abc900_a", "3999", "4000"]
    assert [len(TASK.tests(d)) for d in docs.values()] == [4, 3, 2]  # public first, then private
    assert TASK.tests(docs["abc900_a"])[1] == stdin_case("5 5 5\n", "15\n")
    assert docs["3999"].data["func_name"] == "topSum" and docs["abc900_a"].data["func_name"] is None
    assert (TASK.name, TASK.group, TASK.data_folder) == ("livecodebench", "other", "livecodebench")
    assert (TASK.settings.samples, TASK.settings.temperature, TASK.settings.top_p) == (3, 0.6, 0.95)
    assert TASK.hf_dataset == "livecodebench/code_generation_lite" and TASK.version_tag == "release_v2"


def test_prompts_follow_livecodebench(docs):
    system, user = TASK.prompt(docs["abc900_a"])
    assert system == {"role": "system", "content": SYSTEM_MESSAGE}
    assert user["content"] == (
        "### Question:\nGiven integers on one line, print their sum.\n\n"
        f"### Format: {FORMAT_WITHOUT_STARTER_CODE}\n```python\n# YOUR CODE HERE\n```\n\n"
        "### Answer: (use the provided format with backticks)\n\n"
    )
    _, user = TASK.prompt(docs["3999"])
    assert user["content"] == (
        "### Question:\nReturn the sum of the k largest numbers of nums.\n\n"
        f"### Format: {FORMAT_WITH_STARTER_CODE}\n```python\n{TOP_K['starter_code']}\n```\n\n"
        "### Answer: (use the provided format with backticks)\n\n"
    )


def test_evalchemy_variant_prompt_and_private_tests_only(tmp_path):
    task = VARIANTS["evalchemy"]
    docs = {d.id: d for d in task.load(write(tmp_path, [SUM, TOP_K]))}
    [message] = task.prompt(docs["abc900_a"])
    assert message["role"] == "user"
    assert message["content"].startswith("Generate an executable Python function generated from the given prompt. The")
    assert message["content"].endswith("take stdin as input and print the output. Simply call the function after the "
                                       "definition.Given integers on one line, print their sum.")  # fmt: skip
    assert "Return the function body without invoking it" in task.prompt(docs["3999"])[0]["content"]
    assert len(task.tests(docs["abc900_a"])) == 3
    assert task.version != TASK.version


def grade(doc, response, task=TASK):
    return task.grade(doc, response)


def test_correct_stdin_program_scores_1(docs):
    g = grade(docs["abc900_a"], fenced("print(sum(map(int, input().split())))"))
    assert g.score == 1.0
    assert g.extra == {"tests_total": 4, "tests_run": 4, "tests_passed": 4, "failure": None}
    assert g.extracted == "print(sum(map(int, input().split())))"


def test_wrong_stdin_program_scores_0_at_its_first_failing_test(docs):
    # Right on the public test (1 2 -> 3), wrong on the first private one (5 5 5 -> 15).
    g = grade(docs["abc900_a"], fenced("a = list(map(int, input().split()))\nprint(a[0] + a[1])"))
    assert g.score == 0.0
    assert g.extra["failure"] == "wrong_answer" and g.extra["failed_test"] == 1
    assert g.extra["tests_passed"] >= 1 and "15" in g.extra["detail"]


def test_timing_out_program_scores_0(docs):
    task = LiveCodeBench(timeout=0.5, workers=2)
    g = grade(docs["abc900_a"], fenced("while True:\n    pass"), task)
    assert g.score == 0.0
    assert g.extra["failure"] == "timeout" and g.extra["failed_test"] == 0
    assert g.extra["tests_run"] < 4  # the first failure stopped the rest


def test_crashing_and_memory_hungry_programs_score_0(docs):
    crash = grade(docs["abc900_a"], fenced("raise RuntimeError('boom')"))
    assert (crash.score, crash.extra["failure"]) == (0.0, "runtime_error")
    assert "RuntimeError: boom" in crash.extra["detail"]
    hungry = grade(docs["abc900_a"], fenced("block = bytearray(10 * 1024**3)"))
    assert (hungry.score, hungry.extra["failure"]) == (0.0, "memory")


def test_response_without_code_scores_0(docs):
    for response in ("The answer is 3.", "<think>```python\nprint(3)\n```</think>No code after thinking.", "```"):
        g = grade(docs["abc900_a"], response)
        assert (g.score, g.extracted, g.extra["failure"], g.extra["tests_run"]) == (0.0, None, "no_code", 0)


def test_stdin_programs_run_as_main_with_livecodebench_prelude(docs):
    code = """
counter = 0
def bump():
    global counter  # breaks under LiveCodeBench's function wrapper; fine as a real module
    counter += 1

if __name__ == "__main__":
    bump()
    numbers = list(map(int, sys.stdin.read().split()))  # sys comes from the prelude
    print(sum(numbers) * counter)
    exit()
"""
    assert grade(docs["abc900_a"], fenced(code)).score == 1.0


def test_correct_functional_solutions_score_1(docs):
    method = TOP_K["starter_code"] + "return sum(sorted(nums)[-k:])"  # List comes from the prelude
    g = grade(docs["3999"], fenced(method))
    assert (g.score, g.extra["tests_passed"]) == (1.0, 3)
    top_level = "def topSum(nums, k):\n    print('debugging output is ignored')\n    return sum(sorted(nums)[-k:])"
    assert grade(docs["3999"], fenced(top_level)).score == 1.0
    as_tuple = "class Solution:\n    def ends(self, nums):\n        return min(nums), max(nums)"
    assert grade(docs["4000"], fenced(as_tuple)).score == 1.0


def test_wrong_functional_solutions_score_0(docs):
    off_by_one = "class Solution:\n    def topSum(self, nums, k):\n        return sum(sorted(nums)[-k:]) + 1"
    g = grade(docs["3999"], fenced(off_by_one))
    assert (g.score, g.extra["failure"], g.extra["failed_test"]) == (0.0, "wrong_answer", 0)
    unserializable = "class Solution:\n    def ends(self, nums):\n        return {min(nums), max(nums)}"
    assert grade(docs["4000"], fenced(unserializable)).extra["failure"] == "wrong_answer"
    missing = "class Solution:\n    def other(self, nums, k):\n        return 0"
    assert grade(docs["3999"], fenced(missing)).extra["failure"] == "runtime_error"


def test_code_extraction():
    assert extract_code(fenced("print(1)") + "\n" + fenced("print(2)")) == "print(2)"
    assert extract_code("```python\nprint(1)\n```\n```\nprint(2)\n```") == "print(1)"  # python-tagged first
    assert extract_code("```\nprint(2)\n```") == "print(2)"
    assert extract_code("```cpp\nint main() {}\n```") is None
    assert extract_code("<think>```python\nprint(1)\n```</think>") is None
    assert extract_code("```python\nprint(1)\n") is None  # unclosed: the model ran out of tokens


def test_stdout_comparison_is_livecodebench_s():
    assert stdout_matches("3\n", "3")
    assert stdout_matches("  1 2 \r\n3\n\n", "1 2\n3")
    assert stdout_matches("0.50 1e2\n", "0.5 100")  # equal as Decimal numbers
    assert not stdout_matches("1 2", "1  3")
    assert not stdout_matches("3\n3\n", "3")
    assert not stdout_matches("yes", "Yes")


def test_aggregate_reports_difficulty_levels(docs):
    graded = [("abc900_a", 0, 1.0), ("abc900_a", 1, 0.0), ("3999", 0, 1.0)]
    records = [Record(doc_id, sample, None, "", grade=g) for doc_id, sample, g in graded]
    metrics = TASK.aggregate(list(docs.values()), records)
    assert metrics["score"] == pytest.approx(75.0)
    assert (metrics["score_easy"], metrics["score_medium"], metrics["n_easy"]) == (50.0, 100.0, 1)


def test_official_file_names_select_the_release(tmp_path):
    write(tmp_path, [SUM], "test.jsonl")
    write(tmp_path, [TOP_K], "test2.jsonl")
    write(tmp_path, [PAIRS], "test3.jsonl")
    assert [d.id for d in TASK.load(tmp_path)] == ["abc900_a", "3999"]  # release_v2: test.jsonl + test2.jsonl
    (tmp_path / "livecodebench" / "test2.jsonl").unlink()
    with pytest.raises(DataError, match=r"test2\.jsonl"):
        TASK.load(tmp_path)


NOT_JSON = json.dumps([call_case("[1,", "1")])


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({**SUM, "question_id": "x1", "private_test_cases": "bm90IHpsaWI="}), "undecodable"),
        (json.dumps({**SUM, "question_id": "x2", "public_test_cases": ""}), "missing field"),
        (json.dumps({**TOP_K, "question_id": "x3", "public_test_cases": NOT_JSON}), "topSum is not JSON"),
        (json.dumps({**SUM, "question_id": "x4", "public_test_cases": json.dumps([{"input": "1"}])}), "test case 0"),
        (json.dumps(SUM), "duplicate question_id"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, bad_line, message):
    root = write(tmp_path, [SUM])
    path = root / "livecodebench" / "problems.jsonl"
    path.write_text(path.read_text() + bad_line + "\n")
    with pytest.raises(DataError, match=message) as err:
        TASK.load(root)
    assert f"{path}:2" in str(err.value)


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    sneaky = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(DataError, match="only plain data"):
        TASK.load(write(tmp_path, [{**SUM, "private_test_cases": sneaky}]))


def test_private_tests_are_decoded_once_per_problem(tmp_path):
    from rtransfer.grading.code import decoded_tests

    doc = {d.id: d for d in TASK.load(write(tmp_path, [SUM]))}["abc900_a"]
    decoded_tests.cache_clear()
    first = TASK.tests(doc)
    assert TASK.tests(doc) == TASK.tests(doc) == first  # three samples of one problem
    info = decoded_tests.cache_info()
    assert (info.misses, info.hits) == (1, 2)
