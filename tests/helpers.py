"""Test data shared by several test files."""

import csv
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
