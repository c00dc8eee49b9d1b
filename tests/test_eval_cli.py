"""`rtransfer eval` and `rtransfer grade` end to end: every benchmark on a tiny local Qwen3 model and real data."""

import json

import pytest

from helpers import PAIRS, SUM, TOP_K, write_gpqa, write_livecodebench
from rtransfer.benchmarks.registry import IMPLEMENTED


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, shared):
    """shared/benchmarks plus a GPQA-Diamond folder of hand-written items in the official CSV schema."""
    root = tmp_path_factory.mktemp("data")
    for folder in (shared / "benchmarks").iterdir():
        if folder.is_dir() and folder.name not in ("gpqa_diamond", "livecodebench"):
            (root / folder.name).symlink_to(folder)
    write_gpqa(root)
    write_livecodebench(root, [SUM, TOP_K, PAIRS])
    return root


@pytest.mark.parametrize("benchmark", sorted(IMPLEMENTED))
def test_every_benchmark_end_to_end_on_a_tiny_model(benchmark, cli, tiny_model, data_dir, tmp_path):
    args = [
        "eval",
        "--model",
        tiny_model,
        "--benchmarks",
        benchmark,
        "--data-dir",
        data_dir,
        "--out",
        tmp_path / "run",
        "--limit",
        "3",
        "--samples",
        "2",
        "--max-new-tokens",
        "8",
        "--batch-size",
        "2",
        "--json",
    ]
    code, out, err = cli(*args)
    assert code == 0, err
    (row,) = json.loads(out)
    # --limit 3: three documents; HaluEval three of each task, MC-TACO every row of three questions (20 rows).
    n = {"halueval": 9, "mctaco": 20}.get(benchmark, 3)
    assert row["benchmark"] == benchmark and row["n"] == n and 0 <= row["score"] <= 100
    assert row["group"] in ("math", "other", "non") and row["ci_low"] <= row["score"] <= row["ci_high"]
    lines = (tmp_path / "run" / "records" / f"{benchmark}.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    expected = n if records[0]["response"] is None else 2 * n  # log-likelihood tasks score each document once
    assert len(records) == expected and all(r["grade"] is not None for r in records)
    assert all("logprobs" in r["extra"] for r in records) or all(isinstance(r["response"], str) for r in records)
    # Running again changes nothing: everything is already in the records.
    code, again, _ = cli(*args)
    assert code == 0 and json.loads(again) == [row]
    assert (tmp_path / "run" / "records" / f"{benchmark}.jsonl").read_text().splitlines() == lines


def test_unknown_benchmark_and_missing_data_are_one_line_errors(cli, tiny_model, tmp_path):
    code, _, err = cli("eval", "--model", tiny_model, "--benchmarks", "mmlu", "--out", tmp_path / "r")
    assert code == 2 and "unknown benchmark 'mmlu'" in err and err.count("\n") == 1
    code, _, err = cli(
        "eval", "--model", tiny_model, "--benchmarks", "math500", "--data-dir", tmp_path, "--out", tmp_path / "r"
    )
    assert code == 2 and "no math500 data here" in err and err.count("\n") == 1
    for flag in ("--parallel-batches", "--batch-size"):
        code, _, err = cli("eval", "--model", tiny_model, "--benchmarks", "math500", flag, "0", "--out", tmp_path / "r")
        assert code == 2 and f"{flag} must be at least 1, not 0" in err and err.count("\n") == 1


def test_engines_are_declared_once_in_the_factory(cli, tiny_model, tmp_path, capsys):
    """`--engine` offers the factory's table; an EngineSpec is frozen, its servers a tuple whatever it is given."""
    import dataclasses

    from rtransfer.engines.factory import ENGINES, EngineSpec, make_engine
    from rtransfer.errors import DataError

    spec = EngineSpec("m", engine="openai", base_urls=["http://a:8000/v1"], batch_size=4)
    assert spec.base_urls == ("http://a:8000/v1",) and spec == dataclasses.replace(spec) and hash(spec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.batch_size = 8  # type: ignore[misc]
    with pytest.raises(DataError, match="unknown engine 'vllm' \\(choose from hf, openai\\)"):
        make_engine(EngineSpec("m", engine="vllm"))
    with pytest.raises(SystemExit):
        cli("eval", "--model", tiny_model, "--benchmarks", "math500", "--engine", "vllm", "--out", tmp_path / "r")
    assert "choose from " + ", ".join(repr(name) for name in ENGINES) in capsys.readouterr().err
    with pytest.raises(DataError, match="--base-url needs --engine openai"):
        make_engine(EngineSpec(str(tiny_model), base_urls=["http://a:8000/v1"]))


def write_jsonl(path, items):
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def test_grade_math500_responses(cli, data_dir, tmp_path):
    docs = [json.loads(line) for line in (data_dir / "math500" / "test.jsonl").read_text().splitlines()[:20]]
    items = []
    for i, d in enumerate(docs):
        right = f"<think>Let me see... maybe \\boxed{{wrong}}</think>The answer is $\\boxed{{{d['answer']}}}$."
        wrong = "I am not sure. \\boxed{-12345}"
        # 3 samples per problem: all right for i % 4 == 0, two of three right otherwise, except i % 4 == 3: none
        samples = {0: [right] * 3, 1: [right, right, wrong], 2: [right, wrong, right], 3: [wrong] * 3}[i % 4]
        items.append({"doc_id": d["unique_id"], "responses": samples})
    path = write_jsonl(tmp_path / "responses.jsonl", items)
    code, out, err = cli("grade", "math500", path, "--data-dir", data_dir, "--json", "--out", tmp_path / "g.jsonl")
    assert code == 0, err
    result = json.loads(out)
    expected = 100 * (5 * 1 + 5 * 2 / 3 + 5 * 2 / 3 + 0) / 20
    assert result["benchmark"] == "math500" and result["n"] == 20 and result["samples"] == 3
    assert result["score"] == pytest.approx(expected)
    graded = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert len(graded) == 60 and graded[0]["grade"] == 1.0 and graded[0]["doc_id"] == docs[0]["unique_id"]
    assert "graded 20 of the 500" in err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "responses.jsonl:2: not valid JSON"),
        ('{"doc_id": "test/nowhere/1.json", "response": "x"}', "responses.jsonl:2: unknown doc_id"),
        ('{"doc_id": "test/intermediate_algebra/1994.json"}', "responses.jsonl:2: 'response' must be a string"),
        ('["a list"]', "responses.jsonl:2: expected a JSON object"),
    ],
)
def test_grade_rejects_bad_lines_naming_them(cli, data_dir, tmp_path, line, message):
    first = json.loads((data_dir / "math500" / "test.jsonl").read_text().splitlines()[0])
    path = tmp_path / "responses.jsonl"
    path.write_text(json.dumps({"doc_id": first["unique_id"], "response": "\\boxed{1}"}) + "\n" + line + "\n")
    code, out, err = cli("grade", "math500", path, "--data-dir", data_dir)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1


def test_grade_rejects_a_doc_given_twice_and_loglik_benchmarks(cli, data_dir, tmp_path):
    first = json.loads((data_dir / "math500" / "test.jsonl").read_text().splitlines()[0])
    line = {"doc_id": first["unique_id"], "response": "\\boxed{1}"}
    path = write_jsonl(tmp_path / "responses.jsonl", [line, line])
    code, _, err = cli("grade", "math500", path, "--data-dir", data_dir)
    assert code == 2 and "responses.jsonl:2: doc_id 'test/precalculus/807.json' appears twice" in err
    code, _, err = cli("grade", "headqa", path, "--data-dir", data_dir)
    assert code == 2 and "log-likelihood" in err


def test_variants_are_named_and_versioned():
    from rtransfer.benchmarks.registry import get_task, resolve
    from rtransfer.errors import UnknownBenchmarkError

    assert get_task("GPQA-Diamond:paper-order").version != get_task("gpqa_diamond").version
    assert get_task("acpbench:multiturn").multiturn and not get_task("acpbench").multiturn
    assert resolve("MATH-500,acpbench:multiturn") == ["math500", "acpbench:multiturn"]
    with pytest.raises(UnknownBenchmarkError, match="no variant 'x'"):
        get_task("headqa:x")
