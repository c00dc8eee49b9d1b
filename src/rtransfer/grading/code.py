"""Grading generated programs as LiveCodeBench does (lcb_runner/evaluation/testing_util.py), every test in
rtransfer.grading.sandbox, a fresh process each: the code block of the answer, the drivers that run it on stdin or
call its function, the output comparison, the verdicts, and the test-case decoding. The benchmark's data and
prompts are in rtransfer.benchmarks.livecodebench, whose docstring gives the rules in full.
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
from functools import lru_cache
from typing import Any

from rtransfer.grading.grade import Grade
from rtransfer.grading.sandbox import Job, Limits, RunResult, run_many
from rtransfer.grading.text import strip_thinking

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


@lru_cache(maxsize=64)
def decoded_tests(value: str) -> tuple[dict[str, str], ...]:
    """`decode_tests` of an encoded text, kept for the next grades: a problem's samples are graded one after the
    other, and decoding the private tests (base64, zlib, pickle) costs more than many a test run."""
    return tuple(decode_tests(value))


def grade_code(
    response: str,
    tests: Sequence[dict[str, str]],
    func_name: str | None,
    *,
    timeout: float = TIMEOUT,
    workers: int | None = None,
    stop_at_first_failure: bool = True,
) -> Grade:
    """Score 1 when the answer's program passes every test; `Grade.extra` has the counts and the first failure."""
    code = extract_code(response)
    if code is None:
        return Grade(0.0, None, extra=Outcome(len(tests), failure="no_code").extra())
    outcome = run_tests(
        code, tests, func_name, timeout=timeout, workers=workers, stop_at_first_failure=stop_at_first_failure
    )
    return Grade(float(outcome.passed == outcome.total), code, extra=outcome.extra())


def run_tests(
    code: str,
    tests: Sequence[dict[str, str]],
    func_name: str | None,
    *,
    timeout: float = TIMEOUT,
    workers: int | None = None,
    stop_at_first_failure: bool = True,
) -> Outcome:
    """Run `code` on the tests in the sandbox, in parallel, and judge each run."""
    driver = FUNCTIONAL_DRIVER if func_name else STDIN_DRIVER
    program = f"SOURCE = {code!r}\nPRELUDE = {PRELUDE!r}\nFUNC_NAME = {func_name!r}\n{driver}"
    jobs = [Job(program, case["input"], _limits(case["output"], timeout)) for case in tests]
    verdicts: dict[int, tuple[str | None, str]] = {}

    def judge(index: int, result: RunResult) -> bool:
        verdicts[index] = _verdict(result, tests[index]["output"], bool(func_name))
        return stop_at_first_failure and verdicts[index][0] is not None

    # RTRANSFER_CODE_WORKERS lowers the parallelism on a machine with other work to do.
    workers = workers or int(os.environ.get("RTRANSFER_CODE_WORKERS") or 0) or None
    run_many(jobs, workers, stop=judge)
    outcome = Outcome(len(tests), run=len(verdicts))
    outcome.passed = sum(failure is None for failure, _ in verdicts.values())
    failed = sorted(i for i, (failure, _) in verdicts.items() if failure is not None)
    if failed:
        outcome.failed_test = failed[0]
        outcome.failure, outcome.detail = verdicts[failed[0]]
    return outcome


def _limits(expected: str, timeout: float) -> Limits:
    # Room for the expected output twice over: anything longer is wrong anyway.
    output = max(1 << 20, 2 * len(expected.encode()) + (64 << 10))
    budget = timeout + STARTUP
    return Limits(timeout=budget, cpu_time=budget, memory_mb=MEMORY_MB, output_bytes=output, file_mb=64)


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
