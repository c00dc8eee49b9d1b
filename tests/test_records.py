"""Per-sample records: append-only, crash-safe, resumable without duplicates, re-gradable."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from rtransfer.errors import DataError
from rtransfer.records import Record, RecordWriter, doc_grades, read_records, regrade


def rec(doc, sample=0, grade=None, **kw) -> Record:
    return Record(doc_id=doc, sample=sample, prompt=f"question {doc}", response=f"answer {doc}", grade=grade, **kw)


def test_write_read_roundtrip_and_unknown_fields_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as w:
        assert w.write(rec("a", 0, 1.0, seed=11, extra={"thinking": "hmm"}))
        assert w.write(rec("a", 1, 0.0))
    with open(path, "a") as f:  # a field from a newer writer survives a read
        f.write(json.dumps({"doc_id": 7, "sample": 0, "prompt": "p", "response": "r", "logprobs": [-1.0]}) + "\n")
    records = read_records(path)
    assert [r.key for r in records] == [("a", 0), ("a", 1), ("7", 0)]
    assert records[0].seed == 11 and records[0].extra == {"thinking": "hmm"} and records[0].time
    assert records[2].extra == {"logprobs": [-1.0]}


def test_gold_and_choices_are_stored_and_records_without_them_still_read(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as w:
        w.write(rec("q", 0, 1.0, gold=1, choices=[" no", " yes"], extra={"logprobs": [-2.0, -1.0]}))
        w.write(rec("m", 0, 0.0, gold={"instruction_id_list": ["a:b"], "kwargs": [{}]}))
    stored = [json.loads(line) for line in path.read_text().splitlines()]
    assert (stored[0]["gold"], stored[0]["choices"], stored[1]["choices"]) == (1, [" no", " yes"], None)
    old = {"doc_id": "o", "sample": 0, "prompt": "p", "response": "r", "grade": 1.0, "schema": 1}  # before gold
    with open(path, "a") as f:
        f.write(json.dumps(old) + "\n")
    q, m, o = read_records(path)
    assert (q.gold, q.choices, q.extra) == (1, [" no", " yes"], {"logprobs": [-2.0, -1.0]})
    assert m.gold == {"instruction_id_list": ["a:b"], "kwargs": [{}]} and m.choices is None
    assert (o.gold, o.choices, o.extra, o.grade) == (None, None, {}, 1.0)


def test_resume_skips_stored_samples(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as w:
        w.write_all(rec(str(i)) for i in range(5))
    with RecordWriter(path) as w:
        assert w.has("3", 0) and not w.has("3", 1)
        assert w.write_all(rec(str(i)) for i in range(8)) == 3
    assert len(path.read_text().splitlines()) == 8


def test_torn_last_line_is_cut_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as w:
        w.write_all([rec("a"), rec("b")])
    with open(path, "ab") as f:
        f.write(b'{"doc_id": "c", "sample": 0, "prom')  # what a killed writer leaves
    assert [r.doc_id for r in read_records(path)] == ["a", "b"]
    with RecordWriter(path) as w:
        w.write(rec("c"))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)


def test_corruption_inside_the_file_is_reported_with_its_line(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as w:
        w.write_all([rec("a"), rec("b")])
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + "garbage\n" + lines[1] + "\n")
    with pytest.raises(DataError, match=r"r\.jsonl:2: not a valid record"):
        read_records(path)
    with pytest.raises(DataError, match=r"r\.jsonl:2"):
        RecordWriter(path)


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordWriter(path), pytest.raises(DataError, match="being written by another process"):
        RecordWriter(path)


def test_regrade_rewrites_grades_without_generation(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as w:
        w.write_all([rec("a", 0, 0.0, grader_version="1"), rec("b", 0, 0.0, grader_version="1")])

    def regraded(r: Record) -> Record:
        r.extracted, r.grade, r.weight = r.response.split()[-1], float(r.doc_id == "a"), 2.0
        r.grading, r.grader_version = {"n": 1}, "2"
        return r

    regrade(path, regraded)
    records = read_records(path)
    assert [(r.extracted, r.grade, r.weight, r.grading, r.grader_version) for r in records] == [
        ("a", 1.0, 2.0, {"n": 1}, "2"),
        ("b", 0.0, 2.0, {"n": 1}, "2"),
    ]
    assert [r.response for r in records] == ["answer a", "answer b"]
    assert not list(tmp_path.glob("*.tmp"))


def test_doc_grades_average_samples_and_refuse_ungraded(tmp_path):
    ids, values, weights = doc_grades([rec("a", 0, 1.0), rec("a", 1, 0.0), rec("a", 2, 1.0), rec("b", 0, 0.0)])
    assert ids == ["a", "b"] and values.tolist() == pytest.approx([2 / 3, 0.0]) and weights.tolist() == [1, 1]
    with pytest.raises(DataError, match="has no grade"):
        doc_grades([rec("a", 0, None)])


WRITER = textwrap.dedent(
    """
    import sys
    from rtransfer.records import Record, RecordWriter
    path, n = sys.argv[1], int(sys.argv[2])
    with RecordWriter(path) as w:
        for i in range(n):
            for s in range(2):
                w.write(Record(f"doc{i}", s, prompt="p" * 2000, response="r" * 3000, grade=1.0))
                if i == 50 and s == 0:
                    print("started", flush=True)
    """
)


def test_sigkill_mid_run_then_resume_gives_every_sample_once(tmp_path):
    path = tmp_path / "records.jsonl"
    n = 5000
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(read_records(path))
    assert 0 < written < 2 * n, "the writer should have been killed mid-run"
    # Resume: the same loop over every (doc, sample), as a rerun of the job does.
    subprocess.run([sys.executable, "-c", WRITER, str(path), str(n)], check=True, capture_output=True)
    lines = path.read_bytes().splitlines()
    keys = [(d["doc_id"], d["sample"]) for d in map(json.loads, lines)]
    assert len(keys) == len(set(keys)) == 2 * n


@pytest.mark.parametrize(
    "line", ["[1, 2]", '{"doc_id": "x"}', '{"doc_id": "x", "sample": "two", "prompt": "", "response": ""}']
)
def test_lines_that_are_json_but_not_records_are_errors(tmp_path, line):
    path = tmp_path / "r.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=r"r\.jsonl:1: not a valid record"):
        read_records(path)
