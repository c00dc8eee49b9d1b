"""HaluEval: the complete official data in shared/ (three tasks, 10,000 records each), hand-written records in the
official schema, Yes/No reading, and the mean over the three tasks as a weighted mean of per-document grades."""

import hashlib
import json
import os
from pathlib import Path

import pytest

from rtransfer.benchmarks.base import Doc
from rtransfer.benchmarks.halueval import (
    CONTEXT,
    INSTRUCTIONS,
    TASK,
    TASKS,
    VARIANTS,
    VERSIONS,
    HaluEval,
    hallucinated_draw,
)
from rtransfer.errors import DataError
from rtransfer.grading.yesno import lm_eval_verdict, parse_yes_no
from rtransfer.records import Record, doc_grades

SHARED = Path(os.environ.get("RTRANSFER_SHARED", Path(__file__).resolve().parents[2] / "shared"))

# Records in the official schema (RUCAIBox/HaluEval data/{qa,dialogue,summarization}_data.json), written by hand.
QA = [
    {
        "knowledge": "Paris is the capital of France.",
        "question": "What is the capital of France?",
        "right_answer": "Paris",
        "hallucinated_answer": "Lyon is the capital of France.",
    },
    {
        "knowledge": "Mount Everest is 8,849 metres high.",
        "question": "How high is Mount Everest?",
        "right_answer": "8,849 metres",
        "hallucinated_answer": "About 9,500 metres.",
    },
]
DIALOGUE = [
    {
        "knowledge": "Inception is directed by Christopher Nolan. Inception stars Leonardo DiCaprio.",
        "dialogue_history": "[Human]: Do you know Inception? [Assistant]: Yes, a 2010 film. [Human]: Who directed it?",
        "right_response": "Christopher Nolan directed it, and it stars Leonardo DiCaprio.",
        "hallucinated_response": "Steven Spielberg directed it, and it stars Tom Hanks.",
    },
    {
        "knowledge": "The Hobbit is written by J. R. R. Tolkien.",
        "dialogue_history": "[Human]: I loved The Hobbit. Who wrote it?",
        "right_response": "It was written by J. R. R. Tolkien.",
        "hallucinated_response": "It was written by C. S. Lewis in 1950.",
    },
]
SUMMARIZATION = [
    {
        "document": "The council approved a new bike lane on Main Street on Tuesday. Work starts in May.",
        "right_summary": "A bike lane on Main Street was approved and work begins in May.",
        "hallucinated_summary": "The council rejected a bike lane on Main Street after protests.",
    },
]


def write(folder: Path, name: str, records: list[dict], eol: str = "\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r) + eol for r in records), encoding="utf-8")
    return folder.parent


@pytest.fixture
def three_tasks(tmp_path) -> Path:
    write(tmp_path / "halueval", "qa_data.json", QA)
    write(tmp_path / "halueval", "dialogue_data.json", DIALOGUE, eol="\r\n")  # CRLF, as general_data.json
    return write(tmp_path / "halueval", "summarization_data.json", SUMMARIZATION)


@pytest.fixture(scope="module")
def shared_docs() -> list[Doc]:
    path = SHARED / "benchmarks"
    assert (path / "halueval").is_dir(), f"shared benchmark data not found at {path} (set RTRANSFER_SHARED)"
    return HaluEval().load(path)


def raw_records(task: str) -> list[dict]:
    return [json.loads(line) for line in (SHARED / f"benchmarks/halueval/{task}_data.json").open(encoding="utf-8")]


def records(task: HaluEval, docs: list[Doc], response_of) -> list[Record]:
    out = []
    for doc in docs:
        response = response_of(doc)
        g = task.grade(doc, response)
        out.append(Record(doc.id, 0, None, response, g.extracted, g.score, weight=g.weight, grading=g.extra))
    return out


def right(doc: Doc) -> str:
    return doc.data["label"].capitalize()


# --- data -----------------------------------------------------------------------------------------------------------


# The official files (RUCAIBox/HaluEval data/*.json at b7253db, as SOURCE.md in the shared folder says): git blob id,
# and a field of the first record, so that a truncated or edited copy is caught before anything is scored on it.
OFFICIAL = {
    "qa": (
        "981d8944c2a74937a9556d50dd12ffb493d95c27",
        "question",
        "Which magazine was started first Arthur's Magazine or First for Women?",
    ),
    "dialogue": (
        "271c2e99c1eee5f87d45cd7470ab8fc7393ea98f",
        "right_response",
        "I like crime fiction! Didn't know RDJ was in there. Jake Gyllenhaal starred as well.",
    ),
    "summarization": (
        "15b0622c60d1991e2742bf1beac50c24f45c2717",
        "document",
        "Marseille, France (CNN)The French prosecutor leading an investigation into the crash of Germanwings",
    ),
}


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.mark.parametrize("task", TASKS)
def test_the_shared_files_are_the_complete_official_ones(task):
    blob, field, first = OFFICIAL[task]
    data = (SHARED / f"benchmarks/halueval/{task}_data.json").read_bytes()
    assert data.count(b"\n") == 10000
    assert git_blob_id(data) == blob
    assert json.loads(data.split(b"\n", 1)[0])[field].startswith(first)


def test_the_shared_data_loads_all_three_tasks(shared_docs):
    assert [d.id for d in shared_docs] == [f"{t}/{i}" for t in TASKS for i in range(10000)]  # file order
    assert all(d.data["size"] == 10000 and d.data["weight"] == pytest.approx(1e-4) for d in shared_docs)
    for k, task in enumerate(TASKS):
        docs = shared_docs[10000 * k : 10000 * (k + 1)]
        assert {d.data["task"] for d in docs} == {task}
        right, hallucinated = VERSIONS[task]
        for doc, rec in zip(docs, raw_records(task), strict=True):
            assert doc.data["judged"] == rec[hallucinated if doc.data["label"] == "yes" else right]
            assert all(doc.data[f] == rec[f] for f in CONTEXT[task])
            assert (doc.data["label"] == "yes") == hallucinated_draw(0, task, doc.data["record"])
        assert 4800 < sum(d.data["label"] == "yes" for d in docs) < 5200  # one fair coin per record (sd 50)


def test_the_first1000_qa_subset_still_stands_in_for_qa(tmp_path):
    subset = raw_records("qa")[:3]
    root = write(tmp_path / "halueval", "qa_data.first1000.json", subset)
    docs = HaluEval().load(root)
    assert [d.id for d in docs] == ["qa/0", "qa/1", "qa/2"] and all(d.data["size"] == 3 for d in docs)
    assert [d.data["question"] for d in docs] == [r["question"] for r in subset]
    m = TASK.aggregate(docs, records(TASK, docs, right))  # a subset is not the paper's HaluEval, even whole
    assert m["complete"] is False and m["incomplete"] == "dialogue is not scored; summarization is not scored"
    assert m["full"] is False and m["partial"] == "qa is the 3-record subset qa_data.first1000.json"
    write(tmp_path / "halueval", "qa_data.json", QA)  # the full file wins when both are there
    assert [d.data["question"] for d in HaluEval().load(root)] == [r["question"] for r in QA]


def test_the_draw_is_fixed_by_seed_not_by_position(shared_docs):
    again = HaluEval().load(SHARED / "benchmarks")
    assert [d.data["label"] for d in again] == [d.data["label"] for d in shared_docs]
    other_seed = HaluEval().load(SHARED / "benchmarks", seed=1)
    assert [d.data["label"] for d in other_seed] != [d.data["label"] for d in shared_docs]
    assert all(
        (d.data["label"] == "yes") == hallucinated_draw(0, "qa", int(d.id.split("/")[1])) for d in shared_docs[:50]
    )


def test_the_three_tasks_in_the_official_schema(three_tasks):
    docs = HaluEval().load(three_tasks)
    assert [d.id for d in docs] == ["qa/0", "qa/1", "dialogue/0", "dialogue/1", "summarization/0"]
    assert [d.data["weight"] for d in docs] == [0.5, 0.5, 0.5, 0.5, 1.0]
    d = docs[2].data
    assert d["dialogue_history"] == DIALOGUE[0]["dialogue_history"] and d["knowledge"] == DIALOGUE[0]["knowledge"]
    assert d["judged"] == DIALOGUE[0]["hallucinated_response" if d["label"] == "yes" else "right_response"]
    m = TASK.aggregate(docs, records(TASK, docs, right))
    assert m["tasks"] == list(TASKS) and m["sizes"] == {"qa": 2, "dialogue": 2, "summarization": 1}
    assert m["complete"] is True and m["counts"] == m["sizes"] and "incomplete" not in m  # three tasks, all graded
    assert m["full"] is False  # but not the official 10,000 records each
    assert m["partial"] == "; ".join(f"{t} has {n} records, not the official 10000" for t, n in m["sizes"].items())


def test_both_versions_variant(three_tasks):
    docs = VARIANTS["both"].load(three_tasks)
    assert [d.id for d in docs[:2]] == ["qa/0/right", "qa/0/hallucinated"]
    assert [(d.data["judged"], d.data["label"]) for d in docs[:2]] == [
        (QA[0]["right_answer"], "no"),
        (QA[0]["hallucinated_answer"], "yes"),
    ]
    assert len(docs) == 10 and docs[-1].data["weight"] == 0.5


def test_paper_variant_reads_the_samples_rows(tmp_path):
    rows = [  # pminervini/HaluEval qa_samples: one judged answer per record, labelled
        {
            **{k: QA[0][k] for k in ("knowledge", "question")},
            "answer": QA[0]["hallucinated_answer"],
            "hallucination": "yes",
        },
        {**{k: QA[1][k] for k in ("knowledge", "question")}, "answer": QA[1]["right_answer"], "hallucination": "no"},
    ]
    root = write(tmp_path / "halueval", "qa_samples.json", rows)
    docs = VARIANTS["paper"].load(root)
    assert [(d.id, d.data["judged"], d.data["label"]) for d in docs] == [
        ("qa/0", QA[0]["hallucinated_answer"], "yes"),
        ("qa/1", QA[1]["right_answer"], "no"),
    ]
    write(tmp_path / "halueval", "qa_samples.json", [{**rows[0], "hallucination": "maybe"}])
    with pytest.raises(DataError, match=r"qa_samples\.json:1: hallucination is 'maybe'"):
        VARIANTS["paper"].load(root)


def test_missing_tasks(tmp_path):
    root = write(tmp_path / "halueval", "dialogue_data.json", DIALOGUE)
    docs = HaluEval().load(root)  # qa and summarization missing: scored, but marked
    m = TASK.aggregate(docs, records(TASK, docs, right))
    assert m["tasks"] == ["dialogue"] and m["complete"] is False and m["dialogue"] == 100.0
    assert "qa" not in m and "summarization" not in m
    with pytest.raises(DataError, match=r"no summarization file \(expected summarization_data\.json\)"):
        VARIANTS["summarization"].load(root)  # asked for alone: must exist
    assert len(VARIANTS["dialogue"].load(root)) == 2


def test_no_task_file_is_an_error(tmp_path):
    folder = tmp_path / "halueval"
    folder.mkdir()
    (folder / "general_data.json").write_bytes((SHARED / "benchmarks/halueval/general_data.json").read_bytes()[:2000])
    with pytest.raises(DataError, match=r"no HaluEval task file .*qa_data\.json, qa_data\.first1000\.json"):
        HaluEval().load(tmp_path)  # general_data.json is not one of the paper's tasks


def test_malformed_files_name_file_and_line(tmp_path):
    folder = tmp_path / "halueval"
    folder.mkdir()
    (folder / "qa_data.json").write_text(json.dumps(QA[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"qa_data\.json:2: not valid JSON"):
        HaluEval().load(tmp_path)
    write(folder, "qa_data.json", [QA[0], {k: v for k, v in QA[1].items() if k != "hallucinated_answer"}])
    with pytest.raises(DataError, match=r"qa_data\.json:2: field\(s\) hallucinated_answer missing or not text"):
        HaluEval().load(tmp_path)
    write(folder, "qa_data.json", [{**QA[0], "knowledge": ["a", "list"]}])
    with pytest.raises(DataError, match=r"qa_data\.json:1: field\(s\) knowledge"):
        HaluEval().load(tmp_path)


# --- prompts --------------------------------------------------------------------------------------------------------


def test_prompts_are_the_authors(three_tasks):
    docs = {d.data["task"]: d for d in HaluEval().load(three_tasks)}
    for task, instruction in INSTRUCTIONS.items():
        assert instruction.startswith("I want you act as a")
        assert instruction.endswith('The answer you give MUST be "Yes" or "No"".')  # their quoting
        assert instruction.count("#Your Judgement#:") == 1  # one worked example each
        (message,) = TASK.prompt(docs[task])
        assert message["role"] == "user"
    qa, dialogue, summary = (docs[t].data for t in TASKS)
    assert TASK.prompt(docs["qa"])[0]["content"] == (
        f"{INSTRUCTIONS['qa']}\n\n#Knowledge: {qa['knowledge']}\n#Question#: {qa['question']}\n"
        f"#Answer#: {qa['judged']}\n#Your Judgement#:"
    )
    assert TASK.prompt(docs["dialogue"])[0]["content"] == (
        f"{INSTRUCTIONS['dialogue']}\n\n#Knowledge: {dialogue['knowledge']}\n"
        f"#Dialogue History#: {dialogue['dialogue_history']}\n#Response#: {dialogue['judged']}\n#Your Judgement#:"
    )
    assert TASK.prompt(docs["summarization"])[0]["content"] == (
        f"{INSTRUCTIONS['summarization']}\n\n#Document#: {summary['document']}\n#Summary#: {summary['judged']}\n"
        "#Your Judgement#:"
    )
    assert "recommand movies similar to The Dark Knight" in INSTRUCTIONS["dialogue"]
    assert 'Animal Welfare Act 2006." She added' in INSTRUCTIONS["summarization"]
    s = TASK.settings
    assert (s.samples, s.temperature, s.max_new_tokens, s.stop) == (1, 0.0, 32768, ())


# --- reading the verdict -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "verdict", "rule"),
    [
        ("Yes", "yes", "first_word"),
        ("No.", "no", "first_word"),
        ("**No**", "no", "first_word"),
        ("YES", "yes", "first_word"),
        ("No, the answer is supported by the knowledge.", "no", "first_word"),
        ("<think>Is it yes? Or no? Yes and No...</think>\n\nNo", "no", "first_word"),
        ("Okay, thinking.</think>Yes", "yes", "first_word"),  # the template opened <think>
        ("#Your Judgement#: Yes", "yes", "statement"),
        ("#Your Judgement#: No\nThe answer matches the knowledge. Yes, it does.", "no", "statement"),
        ("The answer is correct, so my judgement is: No.", "no", "statement"),
        ("Judgment - well. Final answer: yes", "yes", "statement"),
        ("Hallucination: yes", "yes", "statement"),
        ("Let me check. \\boxed{No}", "no", "boxed"),
        ("\\boxed{\\text{Yes}} (answer: no, wait)", "yes", "boxed"),
        ("The summary adds a date. Yes.", "yes", "only_verdict"),
        ("Judgement: No hallucination", "no", "only_verdict"),
        ("No hallucination detected.", "no", "only_verdict"),
    ],
)
def test_verdicts(response, verdict, rule):
    assert parse_yes_no(response) == (verdict, rule)


@pytest.mark.parametrize(
    "response",
    [
        "",
        "Yes and No",  # both
        "Yes and no",
        "No hallucination, yes.",
        "<think>The answer is Yes",  # thinking never finished: no answer
        "I cannot determine that.",
        "Nope",
        "There is no evidence of fabrication.",  # lowercase prose is not a verdict
        "The answer is no longer valid",
        "Not sure.",
    ],
)
def test_no_verdict(response):
    assert parse_yes_no(response) == (None, "none")


def test_the_authors_reading_for_comparison():
    assert lm_eval_verdict("Yes") == "yes" and lm_eval_verdict("No") == "no"
    assert lm_eval_verdict("Not sure.") == "no"  # their substring test reads "Not" as "No"
    assert lm_eval_verdict("yes") is None  # and is case-sensitive
    assert lm_eval_verdict("Well,\nYes") is None  # first line only
    assert lm_eval_verdict("Yes, No") is None


# --- grading and the aggregate --------------------------------------------------------------------------------------


def test_grade_and_unparseable(three_tasks):
    doc = HaluEval().load(three_tasks)[0]
    gold = doc.data["label"]
    g = TASK.grade(doc, f"<think>hmm</think>{gold.capitalize()}.")
    assert (g.score, g.extracted, g.weight) == (1.0, gold, 0.5)
    g = TASK.grade(doc, "I cannot tell.")
    assert (g.score, g.extracted, g.extra["unparseable"]) == (0.0, None, True)
    assert "unparseable" not in TASK.grade(doc, "No").extra


def test_score_is_the_mean_of_task_accuracies(three_tasks):
    docs = HaluEval().load(three_tasks)
    wrong = {"qa/1", "dialogue/0", "dialogue/1"}  # qa 50 %, dialogue 0 %, summarization 100 %
    unparseable = {"qa/1"}

    def respond(doc: Doc) -> str:
        if doc.id in unparseable:
            return "Hard to say."
        flip = {"yes": "no", "no": "yes"}
        return (flip[doc.data["label"]] if doc.id in wrong else doc.data["label"]).capitalize()

    recs = records(TASK, docs, respond)
    m = TASK.aggregate(docs, recs)
    assert (m["qa"], m["dialogue"], m["summarization"]) == (50.0, 0.0, 100.0)
    assert m["score"] == pytest.approx(50.0)  # (50 + 0 + 100) / 3, not 2 right of 5 = 40
    _, values, weights = doc_grades(recs)
    assert m["score"] == pytest.approx(100 * (values * weights).sum() / weights.sum())  # the aggregate contract
    assert m["n"] == 5 and m["unparseable"] == 1
    assert m["lm_eval_parse"] == pytest.approx(50.0)  # plain "Yes"/"No" answers read the same both ways


def test_aggregate_over_two_samples_and_real_qa(shared_docs):
    recs = []
    for doc in shared_docs[:10]:  # sample 0 right, sample 1 unparseable: avg@2 = 0.5 per document
        for sample, response in enumerate((right(doc), "?")):
            g = TASK.grade(doc, response)
            recs.append(Record(doc.id, sample, None, response, g.extracted, g.score, weight=g.weight, grading=g.extra))
    m = TASK.aggregate(shared_docs[:10], recs)
    assert m["score"] == pytest.approx(50.0) and m["qa"] == pytest.approx(50.0)
    assert m["unparseable"] == 10 and m["tasks"] == ["qa"] and m["complete"] is False
    with pytest.raises(DataError, match="not among the loaded documents"):
        TASK.aggregate(shared_docs[:5], recs)


# --- the whole benchmark: 30,000 documents through `rtransfer grade` and `rtransfer ti` ---------------------------


def graded_answer(doc: Doc) -> str:
    """Right on qa, wrong on every fourth dialogue record, unreadable on every fifth summary: known accuracies."""
    record, task = doc.data["record"], doc.data["task"]
    if task == "summarization" and record % 5 == 0:
        return "I cannot tell."
    if task == "dialogue" and record % 4 == 0:
        return {"yes": "No", "no": "Yes"}[doc.data["label"]]
    return right(doc)


def test_grade_reports_the_complete_benchmark(cli, shared_docs, tmp_path):
    responses = tmp_path / "responses.jsonl"
    responses.write_text(
        "".join(json.dumps({"doc_id": d.id, "response": graded_answer(d)}) + "\n" for d in shared_docs)
    )
    code, out, err = cli("grade", "halueval", responses, "--data-dir", SHARED / "benchmarks", "--json")
    assert code == 0, err
    m = json.loads(out)
    assert m["complete"] is True and m["tasks"] == list(TASKS) and m["n"] == 30000
    assert m["full"] is True and "partial" not in m and m["counts"] == m["sizes"]
    assert m["sizes"] == {"qa": 10000, "dialogue": 10000, "summarization": 10000}
    assert (m["qa"], m["dialogue"], m["summarization"]) == (100.0, 75.0, 80.0)
    assert m["score"] == pytest.approx(85.0) and m["unparseable"] == 2000
    assert m["ci_low"] < 85.0 < m["ci_high"]


def test_a_cut_of_the_complete_data_is_not_complete(shared_docs):
    docs = shared_docs[:25000]  # qa and dialogue whole, half of summarization: a run stopped half-way, say
    m = TASK.aggregate(docs, records(TASK, docs, right))
    assert m["tasks"] == list(TASKS) and m["counts"] == {"qa": 10000, "dialogue": 10000, "summarization": 5000}
    assert m["complete"] is False and m["incomplete"] == (
        "the tasks are graded in unequal shares (qa 10000 of 10000, dialogue 10000 of 10000, summarization 5000 of "
        "10000), so the score is not their mean"
    )
    assert m["full"] is False and m["partial"] == "summarization: 5000 of 10000 documents"
    even = [d for d in shared_docs if int(d.id.split("/")[1]) < 5000]  # the same share of each: their mean
    m = TASK.aggregate(even, records(TASK, even, right))
    assert m["complete"] is True and m["counts"] == dict.fromkeys(TASKS, 5000) and m["full"] is False


def test_ti_keeps_the_complete_benchmark_in_the_non_group(cli, shared_docs, tmp_path):
    from rtransfer.evaluate import score
    from rtransfer.runs import RunDir, new_manifest

    def run_dir(name: str, answer, math: list[float]) -> Path:
        run = RunDir(tmp_path / name)
        benchmarks = {"math500": {"version": "1", "grader_version": "1"}, "headqa": {"version": "1"}}
        run.start(new_manifest(name, name=name, base=None if name == "base" else "base", seed=0, benchmarks=benchmarks))
        with run.writer("math500") as w:
            for i, g in enumerate(math):
                w.write(Record(f"m{i}", 0, prompt="q", response="a", grade=g))
        with run.writer("headqa") as w:
            for i in range(4):
                w.write(Record(f"h{i}", 0, prompt="q", response=None, grade=float(i % 2)))
        halu = records(TASK, shared_docs, answer)
        with run.writer("halueval") as w:
            for r in halu:
                w.write(r)
        run.write_scores({"benchmarks": {"halueval": score(TASK, shared_docs, halu)}})
        return run.path

    base = run_dir("base", graded_answer, [1, 0, 0, 0])
    tuned = run_dir("tuned", right, [1, 1, 1, 0])
    # v1: with one tuned model and one benchmark per group, v2's pooled σ of a group is 0 (README, undefined cases)
    code, out, err = cli("ti", base, tuned, "--base", base, "--index", "v1", "--bootstrap", "0", "--json")
    assert code == 0, err
    assert "halueval" not in err  # no "incomplete ... left out" note
    (row,) = json.loads(out)
    assert row["benchmarks"]["non"] == ["halueval"]
    assert row["dR_non"] == pytest.approx((100 - 85) / 85) and row["TI_non"] == pytest.approx(100 * (15 / 85) / 2)
