"""LiveCodeBench code generation (Jain et al., 2024), `release_v2`: 511 problems from LeetCode, AtCoder and
Codeforces (May 2023 – May 2024). A sample scores 1 when its program passes every test, public and private;
3 samples averaged, T 0.6, top-p 0.95, 32768 new tokens.

Data: the hub's livecodebench/code_generation_lite files (`release_v2` = test.jsonl + test2.jsonl), or
`<data-dir>/livecodebench/*.jsonl` in the same schema. When the folder holds the official file names, only those of
`version_tag` are read; any other names are all read. `private_test_cases` is base64(zlib(pickle(JSON text))) in
the official files (unpickled with every class refused, so it cannot run code), or plain JSON text.

Prompt: LiveCodeBench's own for chat models (LiveCodeBench/LiveCodeBench, lcb_runner/prompts/code_generation.py,
`format_prompt_generation` for LMStyle.OpenAIChat): its generic system message, then "### Question:", and a
"### Format:" part that shows the starter code (LeetCode problems, called as functions) or a "# YOUR CODE HERE"
stub (stdin problems). The authors ran their evalchemy fork, which ships only compiled files for this benchmark;
upstream evalchemy (mlfoundations/evalchemy, eval/chat_benchmarks/LiveCodeBench/eval_instruct.py) sends one user
turn "Generate an executable Python function …" + the question, without the starter code, and tests only the
private tests: variant `livecodebench:evalchemy`.

Grading follows LiveCodeBench's (lcb_runner/evaluation/testing_util.py, compute_code_generation_metrics.py), but
every test runs in rtransfer.grading.sandbox, a fresh process each, instead of `exec` in one process:
- the code is the last ```python block of the answer (thinking removed); without one, the last bare ``` block;
  none: score 0, failure "no_code";
- the problem's kind comes from metadata.func_name, as in LiveCodeBench: with one, each test calls
  `Solution().<func_name>(*args)` (a top-level `<func_name>` when the code has no "class Solution"), args = one
  JSON value per input line, and compares the result (a tuple taken as a list) with the JSON expected output by
  `==`; the value crosses the sandbox boundary as JSON, so nested tuples count as lists and values JSON cannot
  carry fail. Without one, the program reads the input on stdin, and its stdout matches when, both stripped and
  split into lines, each line stripped, the line counts agree and every line is equal, or equal as a list of
  `Decimal` numbers;
- LiveCodeBench's import prelude (`from string import *` … `import json`, `sys.setrecursionlimit(50000)`) runs
  first, and `sys.set_int_max_str_digits(50000)` as in its evaluator; `exit()` ends a stdin program normally, as
  there. A stdin program runs as a real `__main__` module (LiveCodeBench wraps it into a function, which breaks
  its `global` statements);
- 6 s per test as LiveCodeBench's default `timeout=6` (per test, by SIGALRM), plus 1 s for the interpreter's
  start-up and the prelude; 4 GiB of address space per test (the figure LiveCodeBench's reliability_guard names
  but never applies);
- tests start in order, `workers` at a time (default: every CPU), and the first failure stops the rest from
  starting, as LiveCodeBench stops at its first failure. `Grade.extra` has tests_total, tests_run, tests_passed,
  failure (wrong_answer, timeout, runtime_error, memory, output_limit, no_code) and failed_test (its index).
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from rtransfer.benchmarks.base import Doc, Grade, Messages, MissingDataError, Settings
from rtransfer.benchmarks.hub import check_online, hub_error
from rtransfer.benchmarks.loading import Rows, RowTask
from rtransfer.errors import DataError
from rtransfer.grading.code import TIMEOUT, decode_tests, decoded_tests, grade_code
from rtransfer.jsonl import iter_objects
from rtransfer.records import Record, doc_grades

# Releases are cumulative: each adds one file (the hub dataset's loading script, code_generation_lite.py).
_FILES = ("test.jsonl", *(f"test{i}.jsonl" for i in range(2, 7)))
VERSION_FILES = {f"release_v{n}": _FILES[:n] for n in range(1, 7)}
OFFICIAL_FILES = set(_FILES)

SYSTEM_MESSAGE = (
    "You are an expert Python programmer. You will be given a question (problem specification) and will generate a "
    "correct Python program that matches the specification and passes all tests. You will NOT return anything "
    "except for the program."
)
FORMAT_WITH_STARTER_CODE = (
    "You will use the following starter code to write the solution to the problem and enclose your code within "
    "delimiters."
)
FORMAT_WITHOUT_STARTER_CODE = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the sample "
    "inputs). Enclose your code within delimiters as follows."
)
EVALCHEMY_STDIN = (
    "Generate an executable Python function generated from the given prompt. The function should take stdin as input "
    "and print the output. Simply call the function after the definition."
)
EVALCHEMY_FUNCTIONAL = (
    "Generate an executable Python function generated from the given prompt. Return the function body without "
    "invoking it at the final solution."
)


class LiveCodeBench(RowTask):
    name = "livecodebench"
    version = "1"
    grader_version = "1"
    kind = "generate"
    settings = Settings(samples=3, temperature=0.6, top_p=0.95, max_new_tokens=32768)
    hf_dataset = "livecodebench/code_generation_lite"
    data_folder = "livecodebench"
    id_label = "question_id"
    version_tag: ClassVar[str] = "release_v2"
    private_only: ClassVar[bool] = False  # evalchemy tests only the private tests

    def __init__(self, *, timeout: float = TIMEOUT, workers: int | None = None, stop_at_first_failure: bool = True):
        self.timeout = timeout
        self.workers = workers
        self.stop_at_first_failure = stop_at_first_failure

    # --- data -------------------------------------------------------------------------------------------------
    def local_rows(self, folder: Path) -> Rows:
        return _rows(self._local_files(folder))

    def hub_rows(self) -> Rows:
        return _rows(self._hub_files())

    def _local_files(self, folder: Path) -> list[Path]:
        files = sorted(folder.glob("*.jsonl"))
        if any(f.name in OFFICIAL_FILES for f in files):  # the hub's files: take the release's
            wanted = [folder / name for name in VERSION_FILES[self.version_tag]]
            missing = [p.name for p in wanted if not p.exists()]
            if missing:
                raise DataError(f"{folder}: {self.version_tag} needs {', '.join(missing)} (from {self.hf_dataset})")
            return wanted
        if not files:
            raise MissingDataError(f"{folder}: no .jsonl files (the {self.hf_dataset} schema)")
        return files

    def _hub_files(self) -> list[Path]:
        """The release's files from the hub, for users with a connection. (The hub dataset's loading script needs
        `trust_remote_code`, which `datasets` 4 dropped; its files are plain JSON Lines.)"""

        check_online(self.hf_dataset)  # offline: one line now, not after the library's retries
        from huggingface_hub import hf_hub_download

        try:
            return [
                Path(hf_hub_download(self.hf_dataset, name, repo_type="dataset"))
                for name in VERSION_FILES[self.version_tag]
            ]
        except Exception as err:  # network, renamed files: say which and how to avoid it
            raise hub_error(self.hf_dataset, err) from err

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> Doc:
        missing = [k for k in ("question_id", "question_content", "public_test_cases") if not row.get(k)]
        if missing:
            raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
        # ValueError (JSONDecodeError is one) and TypeError become "{where}: malformed (...)" (RowTask.load).
        public = decode_tests(row["public_test_cases"])
        private = decode_tests(row.get("private_test_cases") or "[]")
        metadata = row.get("metadata") or "{}"
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
        if not isinstance(metadata, dict):
            raise ValueError("metadata is not a JSON object")
        func_name = metadata.get("func_name")
        tests = private if self.private_only else public + private
        if not tests:
            raise ValueError("no test cases")
        if func_name:  # every input line and output must be JSON, or no answer could ever pass
            for number, case in enumerate(tests):
                for line in [*case["input"].split("\n"), case["output"]]:
                    try:
                        json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"test case {number} of {func_name} is not JSON ({err})") from None
        data = {
            "title": row.get("question_title", ""),
            "question": row["question_content"],
            "platform": row.get("platform", ""),
            "contest_id": row.get("contest_id", ""),
            "contest_date": row.get("contest_date", ""),
            "difficulty": row.get("difficulty", ""),
            "starter_code": row.get("starter_code") or "",
            "func_name": func_name,
            # The private tests stay encoded (compact) until grading.
            "public_test_cases": public,
            "private_test_cases": row.get("private_test_cases") or "[]",
        }
        return Doc(id=str(row["question_id"]), data=data)

    def tests(self, doc: Doc) -> list[dict[str, str]]:
        private = list(decoded_tests(doc.data["private_test_cases"]))  # decoded once per problem, not per sample
        return private if self.private_only else doc.data["public_test_cases"] + private

    # --- prompt -----------------------------------------------------------------------------------------------
    def prompt(self, doc: Doc) -> Messages:
        starter = doc.data["starter_code"]
        text = f"### Question:\n{doc.data['question']}\n\n"
        if starter:
            text += f"### Format: {FORMAT_WITH_STARTER_CODE}\n```python\n{starter}\n```\n\n"
        else:
            text += f"### Format: {FORMAT_WITHOUT_STARTER_CODE}\n```python\n# YOUR CODE HERE\n```\n\n"
        text += "### Answer: (use the provided format with backticks)\n\n"
        return [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": text}]

    # --- grading (rtransfer.grading.code) --------------------------------------------------------------------
    def grade(self, doc: Doc, response: str) -> Grade:
        return grade_code(
            response,
            self.tests(doc),
            doc.data["func_name"],
            timeout=self.timeout,
            workers=self.workers,
            stop_at_first_failure=self.stop_at_first_failure,
        )

    def gold(self, doc: Doc) -> dict[str, Any]:
        """What the program is tested against, described, not the tests themselves: the private tests of one
        problem run to megabytes (they would be copied into each of its samples' records) and are meant to stay
        unseen; `grading` names the failed test."""
        call = doc.data["func_name"]
        return {
            "tests": len(self.tests(doc)),
            "public": 0 if self.private_only else len(doc.data["public_test_cases"]),
            "kind": f"call {call}" if call else "stdin",
        }

    # --- aggregation ------------------------------------------------------------------------------------------
    def aggregate(self, docs: Sequence[Doc], records: Sequence[Record]) -> dict[str, Any]:
        result = super().aggregate(docs, records)
        difficulty = {d.id: d.data["difficulty"] or "unknown" for d in docs}
        ids, values, _ = doc_grades(records)
        by_level: dict[str, list[float]] = {}
        for doc_id, value in zip(ids, values, strict=True):
            by_level.setdefault(difficulty.get(doc_id, "unknown"), []).append(float(value))
        for level, scores in sorted(by_level.items()):
            result[f"score_{level}"] = 100.0 * sum(scores) / len(scores)
            result[f"n_{level}"] = len(scores)
        return result


def _rows(files: list[Path]) -> Rows:
    """The problems of each file, read as a stream (the official files are large)."""
    for path in files:
        yield from ((f"{path}:{number}", row) for number, row in iter_objects(path))


class LiveCodeBenchEvalchemy(LiveCodeBench):
    """The upstream evalchemy procedure the authors' fork derives from: its one-turn prompt without the starter
    code, and only the private tests. Grading is ours (their functional runner calls the first `def` it finds)."""

    version = "1-evalchemy"
    private_only = True

    def prompt(self, doc: Doc) -> Messages:
        # evalchemy decides "stdin" from the public tests' testtype and joins the question without a separator.
        stdin = any(case["testtype"] == "stdin" for case in doc.data["public_test_cases"])
        instruction = EVALCHEMY_STDIN if stdin else EVALCHEMY_FUNCTIONAL
        return [{"role": "user", "content": instruction + doc.data["question"]}]


TASK = LiveCodeBench()
VARIANTS = {"evalchemy": LiveCodeBenchEvalchemy()}
