"""`rtransfer regrade RUN_DIR`: the stored answers graded again through the one grading path; stale scores
follow the records, and a killed regrade leaves the run whole."""

import json
from pathlib import Path

import pytest

from rtransfer.runs import RunDir


@pytest.fixture
def run(cli, tiny_model, shared, tmp_path) -> Path:
    """A real run: a generation benchmark and a log-likelihood one (local data, recorded in the manifest)."""
    out = tmp_path / "run"
    code, _, err = cli(
        "eval",
        "--model",
        tiny_model,
        "--benchmarks",
        "lab_arith,mctaco",
        "--data-dir",
        shared / "benchmarks",
        "--limit",
        "6",
        "--max-new-tokens",
        "6",
        "--out",
        out,
    )
    assert code == 0, err
    return out


def stale(run: Path) -> None:
    """What an old grader leaves: other grades, another grader version, scores.json to match."""
    for path in (run / "records").glob("*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text(
            "".join(json.dumps({**r, "grade": 1.0 - r["grade"], "grader_version": "old"}) + "\n" for r in rows)
        )
    manifest = json.loads((run / "manifest.json").read_text())
    for entry in manifest["benchmarks"].values():
        entry["grader_version"] = "old"
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "scores.json").write_text(json.dumps({"benchmarks": {b: {"score": -1.0} for b in ("lab_arith", "mctaco")}}))


def untimed(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "time"}


def test_regrade_rewrites_stale_grades_and_scores(cli, run):
    fresh_records = {b: (run / "records" / f"{b}.jsonl").read_text() for b in ("lab_arith", "mctaco")}
    fresh_scores = json.loads((run / "scores.json").read_text())["benchmarks"]
    versions = {
        b: e["grader_version"] for b, e in json.loads((run / "manifest.json").read_text())["benchmarks"].items()
    }
    stale(run)
    code, out, err = cli("regrade", run, "--json")  # data_dir comes from the run's manifest
    assert code == 0, err
    rows = {r["benchmark"]: r for r in json.loads(out)}
    scores = json.loads((run / "scores.json").read_text())["benchmarks"]
    for bench in ("lab_arith", "mctaco"):
        again = [json.loads(line) for line in (run / "records" / f"{bench}.jsonl").read_text().splitlines()]
        before = [json.loads(line) for line in fresh_records[bench].splitlines()]
        assert [untimed(r) for r in again] == [untimed(r) for r in before]  # exactly what eval's grading wrote
        assert scores[bench]["score"] == rows[bench]["score"] == pytest.approx(fresh_scores[bench]["score"])
        assert json.loads((run / "manifest.json").read_text())["benchmarks"][bench]["grader_version"] == versions[bench]


def test_a_killed_regrade_leaves_every_records_file_whole(cli, run, monkeypatch):
    import rtransfer.evaluate as evaluate

    stale(run)
    before = {p.name: p.read_bytes() for p in (run / "records").glob("*.jsonl")}
    real, calls = evaluate.grade_record, []

    def killed(task, doc, record):
        calls.append(record.doc_id)
        if len(calls) == 4:
            raise KeyboardInterrupt  # mid-way through the first benchmark
        return real(task, doc, record)

    monkeypatch.setattr(evaluate, "grade_record", killed)
    assert cli("regrade", run)[0] == 130
    assert {p.name: p.read_bytes() for p in (run / "records").glob("*.jsonl")} == before
    assert not list((run / "records").glob("*.tmp"))
    # Still a valid run: --limit 6 is 6 lab_arith items and the 42 candidate rows of MC-TACO's first 6 questions.
    assert {b: len(RunDir(run).records(b)) for b in ("lab_arith", "mctaco")} == {"lab_arith": 6, "mctaco": 42}
    monkeypatch.setattr(evaluate, "grade_record", real)
    code, _, err = cli("regrade", run)  # and a rerun finishes the job
    assert code == 0, err
    assert all(r.grader_version != "old" for b in ("lab_arith", "mctaco") for r in RunDir(run).records(b))
