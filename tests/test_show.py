"""Looking at the outputs: every record carries its gold (and a log-likelihood record its choices), and
`rtransfer show` prints a run's answers beside them; a regrade fills the gold of records made before it existed."""

import json
import shutil
from pathlib import Path

import pytest

from helpers import SUM, TOP_K, write_gpqa, write_livecodebench
from rtransfer.benchmarks.registry import IMPLEMENTED, get_task
from rtransfer.cli import main
from rtransfer.grading.choice import TARGET_DELIMITER
from rtransfer.records import read_records

BENCHMARKS = ("math500", "coqa", "headqa", "mctaco")


@pytest.fixture(scope="module")
def run(tiny_model, shared, tmp_path_factory) -> Path:
    """A real run of the tiny model: two generation benchmarks (2 samples each) and two log-likelihood ones."""
    out = tmp_path_factory.mktemp("show") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RTRANSFER_CACHE", str(out.parent / "cache"))
        args = ["eval", "--model", tiny_model, "--benchmarks", ",".join(BENCHMARKS), "--limit", "3"]
        args += ["--data-dir", shared / "benchmarks", "--samples", "2", "--max-new-tokens", "8", "--out", out]
        assert main([str(a) for a in args]) == 0
    return out


def records(run: Path, bench: str) -> list:
    return read_records(run / "records" / f"{bench}.jsonl")


# --- the gold and the choices in the records, against the dataset files themselves -----------------------------
def math500_answers(shared: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in (shared / "benchmarks/math500/test.jsonl").read_text().splitlines()]
    return {row["unique_id"]: row["answer"] for row in rows}


def coqa_references(shared: Path) -> dict[str, list[str]]:
    (story,) = json.loads((shared / "benchmarks/coqa/coqa-dev-v1.0.first1.json").read_text())["data"]
    extra = story["additional_answers"]
    return {
        f"{story['id']}/{turn + 1}": [answer["input_text"]] + [extra[k][turn]["input_text"] for k in extra]
        for turn, answer in enumerate(story["answers"])
    }


def headqa_items(shared: Path) -> dict[str, tuple[list[str], int]]:
    exams = json.loads((shared / "benchmarks/headqa/test_HEAD_EN.json").read_text())["exams"]
    out = {}
    for key, exam in exams.items():
        for q in exam["data"]:
            answers = sorted(q["answers"], key=lambda a: int(a["aid"]))
            aids = [int(a["aid"]) for a in answers]
            out[f"{exam.get('name', key)}/{q['qid']}"] = ([a["atext"] for a in answers], aids.index(int(q["ra"])))
    return out


def test_generation_records_carry_the_datasets_answers(run, shared):
    answers, references = math500_answers(shared), coqa_references(shared)
    for bench, gold in (("math500", answers), ("coqa", references)):
        recs = records(run, bench)
        assert len(recs) == 6 and len({r.doc_id for r in recs}) == 3
        assert all(r.gold == gold[r.doc_id] for r in recs)
    first_turn = {r.doc_id: r.gold for r in records(run, "coqa")}["3dr23u6we5exclen4th8uq9rb42tel/1"]
    assert first_turn == ["white", "white", "white", "white"]  # the official file's answer and its 3 additional ones


def test_loglik_records_carry_the_choices_beside_their_logprobs(run, shared):
    items = headqa_items(shared)
    recs = records(run, "headqa")
    assert len(recs) == 3
    for r in recs:
        texts, right = items[r.doc_id]
        assert r.choices == [TARGET_DELIMITER + t for t in texts] and r.gold == right
        assert len(r.extra["logprobs"]) == len(r.choices)
    rows = (shared / "benchmarks/mctaco/test_9442.tsv").read_text().splitlines()
    for r in records(run, "mctaco"):
        label = rows[int(r.doc_id)].split("\t")[3]
        assert r.choices == [" no", " yes"] and r.gold == ("no", "yes").index(label)


# --- what `rtransfer show` prints ------------------------------------------------------------------------------
def lines_after(out: str, header: str, count: int) -> list[str]:
    lines = out.splitlines()
    start = lines.index(header)
    return lines[start : start + count]


def test_show_prints_a_generation_record(cli, run, shared):
    first = records(run, "math500")[0]
    content = first.prompt[-1]["content"]
    assert len(first.prompt) == 1 and len(content) <= 800  # shown whole
    code, out, err = cli("show", run, "--benchmark", "MATH500", "-n", "1")  # a display name is accepted
    assert code == 0, err
    header = f"--- math500 · doc {first.doc_id} · sample 0 · grade {first.grade:.3g}"
    assert out.splitlines()[0] == "=== math500: 1 of 6 records ==="
    assert out.count("--- math500 ·") == 1 and "coqa" not in out
    shown = [header, "prompt:", *("    " + line if line else "" for line in content.split("\n")), "response:"]
    assert lines_after(out, header, len(shown)) == shown
    assert f"extracted: {first.extracted if first.extracted is not None else '(none)'}" in out.splitlines()
    assert f"gold: {math500_answers(shared)[first.doc_id]}" in out.splitlines()
    response = [("    " + line if line else "") for line in first.response.split("\n")]
    assert lines_after(out, "response:", len(response) + 1)[1:] == response


def test_show_cuts_a_long_prompt_to_its_head_and_tail_unless_full(cli, run, shared):
    record = records(run, "coqa")[0]
    content = record.prompt[-1]["content"]
    code, out, _ = cli("show", run, "--benchmark", "coqa", "-n", "1")
    assert code == 0 and len(content) > 800
    assert f"    … [{len(content) - 800} characters cut; --full shows all] …" in out.splitlines()
    assert "    " + content[-600:].split("\n")[-1] in out.splitlines()  # the question ("A:") at the end stays
    assert f"gold: {json.dumps(coqa_references(shared)[record.doc_id])}" in out.splitlines()
    code, full, _ = cli("show", run, "--benchmark", "coqa", "-n", "1", "--full")
    assert code == 0 and "characters cut" not in full and "prompt [user]:" in full.splitlines()
    assert all(("    " + line if line else "") in full.splitlines() for line in content.split("\n"))


def test_show_prints_each_choice_with_its_logprob_and_marks_picked_and_gold(cli, run):
    code, out, err = cli("show", run, "--benchmark", "headqa", "-n", "0")
    assert code == 0, err
    for r in records(run, "headqa"):
        header = f"--- headqa · doc {r.doc_id} · sample 0 · grade {r.grade:.3g}"
        expected = []
        for i, (lp, text) in enumerate(zip(r.extra["logprobs"], r.choices, strict=True)):
            marks = [m for m, yes in (("picked", i == r.extracted), ("gold", i == r.gold)) if yes]
            expected.append(
                f"    [{i}] {lp:10.4f}  {json.dumps(text)}" + (f"   <- {', '.join(marks)}" if marks else "")
            )
        block = lines_after(out, header, 5 + len(expected))
        assert block[-len(expected) - 1 :] == ["choices (log-probability, continuation):", *expected]
    marked = [line for line in out.splitlines() if "   <- " in line]
    assert sum(line.endswith("gold") for line in marked) == 3 and sum("picked" in line for line in marked) == 3
    assert not any(line.startswith("gold:") for line in out.splitlines())  # marked among the choices instead


def test_wrong_shows_only_records_graded_below_1(cli, run):
    graded = {(b, r.doc_id, r.sample): r.grade for b in BENCHMARKS for r in records(run, b)}
    assert min(graded.values()) < 1 <= max(graded.values()), "the run should hold right and wrong answers"
    code, out, err = cli("show", run, "--wrong", "-n", "0", "--json")
    assert code == 0, err
    shown = {(r["benchmark"], r["doc_id"], r["sample"]) for r in json.loads(out)}
    assert shown == {key for key, grade in graded.items() if grade < 1}
    code, out, _ = cli("show", run, "--wrong", "-n", "1")
    wrong = {b: sum(g < 1 for (bench, _, _), g in graded.items() if bench == b) for b in BENCHMARKS}
    for b in BENCHMARKS:
        total = sum(bench == b for bench, _, _ in graded)
        shown_line = f"1 of {wrong[b]}" if wrong[b] else "no"
        assert f"=== {b}: {shown_line} wrong records ({total} in all) ===" in out.splitlines()
    assert out.count("\n--- ") == sum(1 for b in BENCHMARKS if wrong[b])


def test_records_made_before_gold_existed_say_so_and_a_regrade_fills_them(cli, run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(run, old)
    for path in (old / "records").glob("*.jsonl"):  # what an older rtransfer wrote: no gold, no choices
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text(
            "".join(json.dumps({k: v for k, v in r.items() if k not in ("gold", "choices")}) + "\n" for r in rows)
        )
    assert all(r.gold is None and r.choices is None and "gold" not in r.extra for r in records(old, "headqa"))
    code, out, _ = cli("show", old, "--benchmark", "math500,headqa", "-n", "1")
    assert code == 0
    assert out.splitlines().count(f"gold: (not recorded; run rtransfer regrade {old})") == 2
    assert f"choices (texts not recorded; run rtransfer regrade {old}):" in out.splitlines()
    assert cli("regrade", old)[0] == 0
    for b in BENCHMARKS:
        assert [(r.gold, r.choices) for r in records(old, b)] == [(r.gold, r.choices) for r in records(run, b)]


def test_show_errors_are_one_line(cli, run, tmp_path):
    assert cli("show", tmp_path / "nowhere") == (
        2,
        "",
        f"rtransfer: error: {tmp_path / 'nowhere'}: no such run directory\n",
    )
    assert cli("show", tmp_path) == (2, "", f"rtransfer: error: {tmp_path}: not a run directory (no records/*.jsonl)\n")
    has = "(it has: coqa, headqa, math500, mctaco)"
    for name in ("gpqa_diamond", "nonsense"):
        expected = f"rtransfer: error: {run} has no records of {name!r} {has}\n"
        assert cli("show", run, "--benchmark", name) == (2, "", expected)


# --- every benchmark says what its grader compares with ----------------------------------------------------------
def gold_response(bench: str, gold) -> str | None:
    """An answer that states the gold, in the form the benchmark's grader reads (None: no such answer)."""
    if bench in ("halueval", "lab_support"):
        return gold.capitalize()
    if bench in ("coqa", "lab_story"):
        return gold[0] if isinstance(gold, list) else gold
    if isinstance(gold, str):
        return f"The answer is \\boxed{{{gold}}}."  # math answers and choice letters
    return None  # IFEval's instructions, LiveCodeBench's tests


def data_for(bench: str, shared: Path, tmp_path: Path) -> Path | None:
    if bench.startswith("lab_"):
        return None  # generated
    if bench == "gpqa_diamond":
        return write_gpqa(tmp_path)  # hand-written items: the real questions stay off disk
    if bench == "livecodebench":
        return write_livecodebench(tmp_path, [SUM, TOP_K])
    return shared / "benchmarks"


@pytest.mark.parametrize("bench", sorted(IMPLEMENTED))
def test_every_benchmarks_gold_is_what_its_grader_accepts(bench, shared, tmp_path):
    task = get_task(bench)
    doc = task.load(data_for(bench, shared, tmp_path))[0]
    gold = task.gold(doc)
    assert gold is not None and json.loads(json.dumps(gold)) == gold
    if task.kind == "loglik":
        logprobs = [-9.0] * len(task.choices(doc)[1])
        logprobs[gold] = -1.0
        assert task.grade_choices(doc, logprobs).score == 1.0
    elif bench in ("ifeval", "lab_format"):
        assert gold == {"instruction_id_list": doc.data["instruction_id_list"], "kwargs": doc.data["kwargs"]}
    elif bench == "livecodebench":
        assert gold == {"tests": 4, "public": 1, "kind": "stdin"}  # SUM: 1 public and 3 private tests
    else:
        assert task.grade(doc, gold_response(bench, gold)).score == 1.0


def test_livecodebench_gold_describes_the_tests_without_them(tmp_path):
    data = write_livecodebench(tmp_path, [SUM, TOP_K])
    call = get_task("livecodebench").load(data)[1]
    assert get_task("livecodebench").gold(call) == {"tests": 3, "public": 1, "kind": "call topSum"}
    private_only = get_task("livecodebench:evalchemy")
    assert private_only.gold(private_only.load(data)[0]) == {"tests": 3, "public": 0, "kind": "stdin"}
