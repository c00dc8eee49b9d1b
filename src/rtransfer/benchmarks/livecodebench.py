"""LiveCodeBench code generation (Jain et al., 2024), `release_v2`: 511 problems from LeetCode, AtCoder and
Codeforces (May 2023 – May 2024). A sample scores 1 when its program passes every test, public and private;
3 samples averaged, T 0.6, top-p 0.95, 32768 new tokens (BRIEF §2).

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

import base64
import binascii
import io
import json
import os
import pickle
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar

from rtransfer.benchmarks.base import Doc, Grade, Messages, Settings, Task
from rtransfer.errors import DataError
from rtransfer.grading.sandbox import Job, Limits, RunResult, run_many
from rtransfer.grading.text import strip_thinking
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

# LiveCodeBench's `import_string`: star imports, then plain imports (so `datetime` ends up the module), then a
# deeper recursion limit.
_STAR = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random", "statistics")
_STAR += ("itertools", "functools", "operator", "io", "sys", "json", "builtins", "typing")
PRELUDE = "\n".join(
    [f"from {m} import *" for m in _STAR]
    + [f"import {m}" for m in _STAR if m not in ("builtins", "typing")]
    + ["sys.setrecursionlimit(50000)"]
)

# Run the answer as __main__ after the prelude; SystemExit is a normal end, as in LiveCodeBench.
STDIN_DRIVER = """
import sys
sys.set_int_max_str_digits(50000)
namespace = {"__name__": "__main__", "__builtins__": __builtins__}
exec(PRELUDE, namespace)
try:
    exec(compile(SOURCE, "solution.py", "exec"), namespace)
except SystemExit:
    pass
"""

# Call the function on the arguments read from stdin; only the result goes to stdout, as JSON (prints are dropped).
FUNCTIONAL_DRIVER = """
import json, os, sys
sys.set_int_max_str_digits(50000)
arguments = [json.loads(line) for line in sys.stdin.read().split("\\n")]
result_stream, sys.stdout = sys.stdout, open(os.devnull, "w")
namespace = {"__name__": "solution", "__builtins__": __builtins__}
exec(PRELUDE, namespace)
exec(compile(SOURCE, "solution.py", "exec"), namespace)
owner = namespace["Solution"]() if "class Solution" in SOURCE else None
function = getattr(owner, FUNC_NAME) if owner is not None else namespace[FUNC_NAME]
result = function(*arguments)
if isinstance(result, tuple):
    result = list(result)
try:
    text = json.dumps({"value": result})
except (TypeError, ValueError):
    text = json.dumps({"unserializable": repr(result)[:200]})
result_stream.write(text)
"""

TIMEOUT = 6.0  # seconds per test (LiveCodeBench's default)
STARTUP = 1.0  # seconds per test for the interpreter's start-up and the prelude
MEMORY_MB = 4096

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)


def extract_code(response: str) -> str | None:
    """The last ```python block of the answer (after thinking), else the last bare ``` block, else None."""
    blocks = [(lang.lower(), body.rstrip("\n")) for lang, body in _FENCE.findall(strip_thinking(response))]
    for wanted in (("python", "py", "python3"), ("",)):
        found = [body for lang, body in blocks if lang in wanted]
        if found and found[-1].strip():
            return found[-1]
    return None


def stdout_matches(output: str, expected: str) -> bool:
    """LiveCodeBench's stdin comparison: line by line, stripped, each line equal or equal as Decimal numbers."""
    got, want = _stripped_lines(output), _stripped_lines(expected)
    if len(got) != len(want):
        return False
    pairs = zip(got, want, strict=True)
    return all(g == w or (_decimals(g) is not None and _decimals(g) == _decimals(w)) for g, w in pairs)


def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(word) for word in line.split()]
    except InvalidOperation:
        return None


class _NoObjects(pickle.Unpickler):
    """Unpickle plain data only: refusing every class means the file cannot make us run anything."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the test data asks for {module}.{name}; only plain data is accepted")


def decode_tests(value: Any) -> list[dict[str, str]]:
    """Test cases from a JSON list, JSON text, or base64(zlib(pickle(JSON text))) as in the official files.
    Raises ValueError when the value is none of these, or the cases are not {input, output, testtype} texts."""
    if isinstance(value, str) and not value.lstrip().startswith("["):
        try:
            value = _NoObjects(io.BytesIO(zlib.decompress(base64.b64decode(value, validate=True)))).load()
        except (binascii.Error, zlib.error, pickle.UnpicklingError, EOFError) as err:
            raise ValueError(f"undecodable test cases ({err})") from None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"test cases are not JSON ({err})") from None
    if not isinstance(value, list):
        raise ValueError("test cases are not a list")
    for number, case in enumerate(value):
        if not (isinstance(case, dict) and all(isinstance(case.get(k), str) for k in ("input", "output"))):
            raise ValueError(f"test case {number} is not an object with input and output texts")
        if case.get("testtype") not in ("stdin", "functional"):
            raise ValueError(f"test case {number} has testtype {case.get('testtype')!r}")
    return value


@dataclass
class Outcome:
    total: int
    run: int = 0
    passed: int = 0
    failure: str | None = None
    failed_test: int | None = None
    detail: str = ""

    def extra(self) -> dict[str, Any]:
        out = {"tests_total": self.total, "tests_run": self.run, "tests_passed": self.passed, "failure": self.failure}
        if self.failure not in (None, "no_code"):
            out |= {"failed_test": self.failed_test, "detail": self.detail}
        return out


class LiveCodeBench(Task):
    name = "livecodebench"
    group = "other"
    version = "1"
    grader_version = "1"
    kind = "generate"
    settings = Settings(samples=3, temperature=0.6, top_p=0.95, max_new_tokens=32768)
    hf_dataset = "livecodebench/code_generation_lite"
    data_folder = "livecodebench"
    version_tag: ClassVar[str] = "release_v2"
    private_only: ClassVar[bool] = False  # evalchemy tests only the private tests

    def __init__(self, *, timeout: float = TIMEOUT, workers: int | None = None, stop_at_first_failure: bool = True):
        self.timeout = timeout
        self.workers = workers
        self.stop_at_first_failure = stop_at_first_failure

    # --- data -------------------------------------------------------------------------------------------------
    def load(self, data_dir: Path | None, seed: int = 0) -> list[Doc]:
        files = self._hub_files() if data_dir is None else self._local_files(self.folder(data_dir))
        docs, seen = [], set()
        for path in files:
            for number, row in iter_objects(path):
                doc = self._doc(row, f"{path}:{number}")
                if doc.id in seen:
                    raise DataError(f"{path}:{number}: duplicate question_id {doc.id!r}")
                seen.add(doc.id)
                docs.append(doc)
        if not docs:
            raise DataError(f"no LiveCodeBench problems in {', '.join(map(str, files))}")
        return docs

    def _local_files(self, folder: Path) -> list[Path]:
        files = sorted(folder.glob("*.jsonl"))
        if any(f.name in OFFICIAL_FILES for f in files):  # the hub's files: take the release's
            wanted = [folder / name for name in VERSION_FILES[self.version_tag]]
            missing = [p.name for p in wanted if not p.exists()]
            if missing:
                raise DataError(f"{folder}: {self.version_tag} needs {', '.join(missing)} (from {self.hf_dataset})")
            return wanted
        if not files:
            raise DataError(f"{folder}: no .jsonl files (the {self.hf_dataset} schema)")
        return files

    def _hub_files(self) -> list[Path]:
        """The release's files from the hub, for users with a connection. (The hub dataset's loading script needs
        `trust_remote_code`, which `datasets` 4 dropped; its files are plain JSON Lines.)"""
        from huggingface_hub import hf_hub_download

        try:
            return [
                Path(hf_hub_download(self.hf_dataset, name, repo_type="dataset"))
                for name in VERSION_FILES[self.version_tag]
            ]
        except Exception as err:  # network, renamed files: say which and how to avoid it
            from rtransfer.benchmarks.hub import hub_error

            raise hub_error(self.hf_dataset, err) from err

    def _doc(self, row: dict[str, Any], where: str) -> Doc:
        missing = [k for k in ("question_id", "question_content", "public_test_cases") if not row.get(k)]
        if missing:
            raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
        try:
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
        except (ValueError, TypeError) as err:  # JSONDecodeError is a ValueError
            raise DataError(f"{where}: {err}") from None
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
        private = decode_tests(doc.data["private_test_cases"])
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

    # --- grading ----------------------------------------------------------------------------------------------
    def grade(self, doc: Doc, response: str) -> Grade:
        tests = self.tests(doc)
        code = extract_code(response)
        if code is None:
            return Grade(0.0, None, extra=Outcome(len(tests), failure="no_code").extra())
        outcome = self.run_tests(code, tests, doc.data["func_name"])
        return Grade(float(outcome.passed == outcome.total), code, extra=outcome.extra())

    def run_tests(self, code: str, tests: Sequence[dict[str, str]], func_name: str | None) -> Outcome:
        """Run `code` on the tests in the sandbox, in parallel, and judge each run."""
        driver = FUNCTIONAL_DRIVER if func_name else STDIN_DRIVER
        program = f"SOURCE = {code!r}\nPRELUDE = {PRELUDE!r}\nFUNC_NAME = {func_name!r}\n{driver}"
        jobs = [Job(program, case["input"], self._limits(case["output"])) for case in tests]
        verdicts: dict[int, tuple[str | None, str]] = {}

        def judge(index: int, result: RunResult) -> bool:
            verdicts[index] = _verdict(result, tests[index]["output"], bool(func_name))
            return self.stop_at_first_failure and verdicts[index][0] is not None

        # RTRANSFER_CODE_WORKERS lowers the parallelism on a machine with other work to do.
        workers = self.workers or int(os.environ.get("RTRANSFER_CODE_WORKERS") or 0) or None
        run_many(jobs, workers, stop=judge)
        outcome = Outcome(len(tests), run=len(verdicts))
        outcome.passed = sum(failure is None for failure, _ in verdicts.values())
        failed = sorted(i for i, (failure, _) in verdicts.items() if failure is not None)
        if failed:
            outcome.failed_test = failed[0]
            outcome.failure, outcome.detail = verdicts[failed[0]]
        return outcome

    def _limits(self, expected: str) -> Limits:
        # Room for the expected output twice over: anything longer is wrong anyway.
        output = max(1 << 20, 2 * len(expected.encode()) + (64 << 10))
        budget = self.timeout + STARTUP
        return Limits(timeout=budget, cpu_time=budget, memory_mb=MEMORY_MB, output_bytes=output, file_mb=64)

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


def _verdict(result: RunResult, expected: str, functional: bool) -> tuple[str | None, str]:
    """(failure kind or None, a short detail) for one test's run."""
    if not result.ok:
        lines = result.stderr.strip().splitlines()
        return result.status, (lines[-1] if lines else result.status)[:300]  # timeout, memory, runtime_error, ...
    if functional:
        try:
            got = json.loads(result.stdout)
        except json.JSONDecodeError:
            got = None
        if not (isinstance(got, dict) and "value" in got):
            return "wrong_answer", f"not a JSON value: {result.stdout[:100]!r}"
        if got["value"] == json.loads(expected):
            return None, ""
        return "wrong_answer", f"expected {expected[:100]}, got {json.dumps(got['value'])[:100]}"
    if stdout_matches(result.stdout, expected):
        return None, ""
    return "wrong_answer", f"expected {expected.strip()[:100]!r}, got {result.stdout.strip()[:100]!r}"


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
