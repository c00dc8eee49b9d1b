"""Test data shared by several test files."""

import base64
import csv
import json
import pickle
import zlib
from pathlib import Path

# --- GPQA-Diamond: hand-written items in the official CSV schema (the real questions stay off disk) ---------------

GPQA_HEADER = [
    "Pre-Revision Question",
    "Question",
    "Correct Answer",
    "Incorrect Answer 1",
    "Incorrect Answer 2",
    "Incorrect Answer 3",
    "Explanation",
    "Subdomain",
    "Record ID",
    "High-level domain",
]
GPQA_ITEMS = [
    ("What colour is a clear daytime sky?", "Blue", "Green", "Red", "Purple", "Physics", "recTEST01"),
    ('Which gas do plants take in, "mostly"?\nPick one.', "Carbon dioxide", "Neon", "Argon", "Helium", "Bio", "recT02"),
    ("How many legs has a spider, in total?", "8", "6", "10", "4", "Biology", "recTEST03"),
    ("What is 2 + 2?", "4", "3", "5", "22", "Maths", "recTEST04"),
]


def write_gpqa(root: Path, items=GPQA_ITEMS, header=GPQA_HEADER) -> Path:
    folder = root / "gpqa_diamond"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "gpqa_diamond.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for q, right, w1, w2, w3, sub, rid in items:
            row = {"Question": q, "Correct Answer": right, "Incorrect Answer 1": w1, "Incorrect Answer 2": w2}
            row |= {"Incorrect Answer 3": w3, "Subdomain": sub, "Record ID": rid, "High-level domain": "Science"}
            writer.writerow([row.get(col, "") for col in header])
    return root


# --- LiveCodeBench: hand-written problems in the hub's code_generation_lite schema -----------------------------


def encode_private(tests: list[dict]) -> str:
    """As in livecodebench/code_generation_lite: base64(zlib(pickle(JSON text)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def stdin_case(given: str, expected: str) -> dict:
    return {"input": given, "output": expected, "testtype": "stdin"}


def call_case(given: str, expected: str) -> dict:
    return {"input": given, "output": expected, "testtype": "functional"}


SUM = {  # an AtCoder-style problem: numbers on stdin
    "question_title": "Sum of a line",
    "question_content": "Given integers on one line, print their sum.",
    "platform": "atcoder",
    "question_id": "abc900_a",
    "contest_id": "abc900",
    "contest_date": "2024-01-06T00:00:00",
    "starter_code": "",
    "difficulty": "easy",
    "public_test_cases": json.dumps([stdin_case("1 2\n", "3\n")]),
    "private_test_cases": encode_private(
        [stdin_case("5 5 5\n", "15\n"), stdin_case("-1 1\n", "0"), stdin_case("7", "7")]
    ),
    "metadata": "{}",
}
TOP_K = {  # a LeetCode-style problem: a method of class Solution, arguments one JSON value per line
    "question_title": "Largest k sum",
    "question_content": "Return the sum of the k largest numbers of nums.",
    "platform": "leetcode",
    "question_id": "3999",
    "contest_id": "weekly-contest-999",
    "contest_date": "2024-02-03T00:00:00",
    "starter_code": "class Solution:\n    def topSum(self, nums: List[int], k: int) -> int:\n        ",
    "difficulty": "medium",
    "public_test_cases": json.dumps([call_case("[1, 5, 3]\n2", "8")]),
    "private_test_cases": encode_private([call_case("[4]\n1", "4"), call_case("[2, 2, 9, -1]\n3", "13")]),
    "metadata": json.dumps({"func_name": "topSum"}),
}
PAIRS = {  # a list result: a returned tuple counts as a list, as in LiveCodeBench
    **TOP_K,
    "question_id": "4000",
    "question_content": "Return the smallest and the largest number.",
    "starter_code": "class Solution:\n    def ends(self, nums: List[int]) -> List[int]:\n        ",
    "difficulty": "hard",
    "public_test_cases": json.dumps([call_case("[3, 1, 2]", "[1, 3]")]),
    "private_test_cases": json.dumps([call_case("[5]", "[5, 5]")]),  # plain JSON is accepted too
    "metadata": json.dumps({"func_name": "ends"}),
}


def write_livecodebench(root: Path, rows: list[dict], name: str = "problems.jsonl") -> Path:
    folder = root / "livecodebench"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root
