"""The multiple-choice benchmarks: GPQA-Diamond, ACPBench, HEAD-QA, MC-TACO, on the real files in shared/."""

import gzip
import json
import os
from pathlib import Path

import pytest

from helpers import GPQA_HEADER, GPQA_ITEMS, write_gpqa
from rtransfer.benchmarks.acpbench import TASKS, AcpBench, AcpBenchMultiTurn, fewshot
from rtransfer.benchmarks.base import Doc
from rtransfer.benchmarks.gpqa_diamond import GpqaDiamond, GpqaDiamondPaperOrder
from rtransfer.benchmarks.headqa import HeadQA
from rtransfer.benchmarks.mctaco import McTaco, question_metrics
from rtransfer.benchmarks.registry import get_task
from rtransfer.errors import DataError
from rtransfer.records import Record

SHARED = Path(os.environ.get("RTRANSFER_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="module")
def data_dir() -> Path:
    path = SHARED / "benchmarks"
    assert path.is_dir(), f"shared benchmark data not found at {path} (set RTRANSFER_SHARED)"
    return path


@pytest.fixture(scope="module")
def acp_docs(data_dir) -> list[Doc]:
    return AcpBench().load(data_dir)


@pytest.fixture(scope="module")
def headqa_docs(data_dir) -> list[Doc]:
    return HeadQA().load(data_dir)


@pytest.fixture(scope="module")
def mctaco_docs(data_dir) -> list[Doc]:
    return McTaco().load(data_dir)


def records_for(task, docs, logprobs_of) -> list[Record]:
    """Grade each doc from the log-probabilities `logprobs_of(doc)` and wrap the grades as the runner would."""
    out = []
    for doc in docs:
        g = task.grade_choices(doc, logprobs_of(doc))
        out.append(Record(doc.id, 0, None, None, extracted=g.extracted, grade=g.score, grading=g.extra))
    return out


def test_registry_serves_these_tasks():
    for name, group, kind in [
        ("gpqa_diamond", "other", "generate"),
        ("acpbench", "other", "generate"),
        ("headqa", "other", "loglik"),
        ("mctaco", "non", "loglik"),
    ]:
        task = get_task(name)
        assert (task.name, task.group, task.kind, task.data_folder) == (name, group, kind, name)
        assert task.hf_dataset


# --- GPQA-Diamond (hand-written items in the official CSV schema; the real questions stay off disk) -------------


def test_gpqa_loads_the_official_csv_schema(tmp_path):
    docs = GpqaDiamond().load(write_gpqa(tmp_path))
    assert [d.id for d in docs] == [item[-1] for item in GPQA_ITEMS]
    assert docs[1].data["question"] == GPQA_ITEMS[1][0]  # quotes and a newline survive the CSV round trip
    for doc, item in zip(docs, GPQA_ITEMS, strict=True):
        options = doc.data["options"]
        assert sorted(options) == sorted(item[1:5])
        assert options["ABCD".index(doc.data["answer"])] == item[1]  # the letter tracks the correct answer


def test_gpqa_shuffle_is_deterministic_per_seed(tmp_path):
    root = write_gpqa(tmp_path)
    orders = {seed: [d.data["order"] for d in GpqaDiamond().load(root, seed=seed)] for seed in (0, 1)}
    assert orders[0] == [d.data["order"] for d in GpqaDiamond().load(root, seed=0)]
    assert orders[0] != orders[1]
    assert len({tuple(o) for o in orders[0]}) > 1  # questions are shuffled independently
    # the order depends on the question's id, not its position in the file
    reversed_docs = GpqaDiamond().load(write_gpqa(tmp_path / "rev", items=GPQA_ITEMS[::-1]), seed=0)
    assert [d.data["order"] for d in reversed_docs][::-1] == orders[0]


def test_gpqa_paper_order_puts_the_correct_answer_at_d(tmp_path):
    docs = GpqaDiamondPaperOrder().load(write_gpqa(tmp_path), seed=5)
    assert {d.data["answer"] for d in docs} == {"D"}
    assert all(d.data["options"][3] == item[1] for d, item in zip(docs, GPQA_ITEMS, strict=True))


def test_gpqa_prompt_and_grade(tmp_path):
    task = GpqaDiamond()
    doc = task.load(write_gpqa(tmp_path))[0]
    (message,) = task.prompt(doc)
    o = doc.data["options"]
    assert message["role"] == "user"
    assert message["content"] == (
        "Return your final response within \\boxed{} and only include the letter choice (A, B, C, or D) as your "
        f"final response.\nProblem: {GPQA_ITEMS[0][0]}\nOptions: A) {o[0]}, B) {o[1]}, C) {o[2]}, D) {o[3]}\nAnswer:"
    )
    gold = doc.data["answer"]
    assert task.grade(doc, f"<think>maybe A</think>The answer is \\boxed{{{gold}}}").score == 1.0
    for other in set("ABCD") - {gold}:
        assert task.grade(doc, f"\\boxed{{{other}}}").score == 0.0
    assert task.grade(doc, "I cannot tell.").score == 0.0
    s = task.settings
    assert (s.samples, s.temperature, s.top_p, s.max_new_tokens) == (3, 0.6, 0.95, 32768)


def test_gpqa_bad_files(tmp_path):
    with pytest.raises(DataError, match="gpqa_diamond"):
        GpqaDiamond().load(tmp_path)  # no folder
    (tmp_path / "gpqa_diamond").mkdir()
    with pytest.raises(DataError, match=r"gpqa_diamond\.csv: file not found"):
        GpqaDiamond().load(tmp_path)
    write_gpqa(tmp_path, header=[c for c in GPQA_HEADER if c != "Incorrect Answer 2"])
    with pytest.raises(DataError, match="missing columns: Incorrect Answer 2"):
        GpqaDiamond().load(tmp_path)
    write_gpqa(tmp_path, items=[*GPQA_ITEMS, ("Q?", "a", "b", "", "d", "X", "recX")])
    with pytest.raises(DataError, match="record 5: empty Incorrect Answer 2"):
        GpqaDiamond().load(tmp_path)
    write_gpqa(tmp_path, items=[*GPQA_ITEMS, GPQA_ITEMS[0]])
    with pytest.raises(DataError, match="duplicate Record ID recTEST01"):
        GpqaDiamond().load(tmp_path)


# --- ACPBench -----------------------------------------------------------------------------------------------------


def test_acpbench_loads_seven_tasks(acp_docs):
    assert len(acp_docs) == 900
    counts = {task: sum(d.data["task"] == task for d in acp_docs) for task in TASKS}
    assert counts == {"app": 130, "areach": 120, "just": 130, "land": 130, "prog": 130, "reach": 130, "val": 130}
    assert len({d.id for d in acp_docs}) == 900
    assert acp_docs[0].id == f"app/{acp_docs[0].data['id']}"


def test_acpbench_fewshot_is_the_authors():
    shots = fewshot()
    assert set(shots) == set(TASKS) and all(len(s) == 2 for s in shots.values())
    assert all(s["answer"].startswith("Let's think step by step.") for v in shots.values() for s in v)
    assert shots["app"][0]["answer"].endswith("**Final Answer**: D.")
    assert shots["val"][1]["answer"].endswith("**Final Answer**: A.")
    assert "Final Answer" not in shots["land"][1]["answer"]  # as in the authors' yaml


def test_acpbench_prompt_is_two_shot_chat(acp_docs):
    task = AcpBenchMultiTurn()
    doc = next(d for d in acp_docs if d.data["task"] == "prog")
    messages = task.prompt(doc)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    shots = fewshot()["prog"]
    assert messages[0]["content"] == f"**Question**: {shots[0]['context']}  {shots[0]['question']} **Thoughts**:"
    assert messages[1]["content"] == shots[0]["answer"] and messages[3]["content"] == shots[1]["answer"]
    assert messages[4]["content"] == f"**Question**: {doc.data['context']}  {doc.data['question']} **Thoughts**:"
    s = task.settings
    assert (s.samples, s.temperature) == (1, 0.0) and "**Question**:" in s.stop and "\n\n\n\n" in s.stop


def test_acpbench_default_is_the_authors_single_turn_layout(acp_docs):
    doc = acp_docs[0]
    (message,) = AcpBench().prompt(doc)
    turns = [m["content"] for m in AcpBenchMultiTurn().prompt(doc)]
    assert message["content"] == f"{turns[0]} {turns[1]}\n\n{turns[2]} {turns[3]}\n\n{turns[4]}"


def test_acpbench_grade(acp_docs):
    task = AcpBench()
    doc = acp_docs[0]
    gold = doc.data["answer"]
    assert task.grade(doc, f"Let's think step by step. ... **Final Answer**: {gold}.").score == 1.0
    for other in set("ABCD") - {gold}:
        assert task.grade(doc, f"Step 1: ... **Final Answer**: {other}.").score == 0.0
    assert task.grade(doc, "Step 1: A is applicable.").score == 0.0  # no final answer: no guess


def test_acpbench_aggregate_pools_docs_and_keeps_per_task():
    docs = [Doc(f"app/{i}", {}) for i in range(3)] + [Doc("val/0", {})]
    grades = [1.0, 1.0, 0.0, 0.0]
    records = [Record(d.id, 0, None, "", grade=g) for d, g in zip(docs, grades, strict=True)]
    result = AcpBench().aggregate(docs, records)
    assert result["score"] == pytest.approx(50.0) and result["n"] == 4
    assert result["per_task"] == pytest.approx({"app": 200 / 3, "val": 0.0})
    assert result["macro"] == pytest.approx(100 / 3)


def test_acpbench_bad_files(tmp_path):
    (tmp_path / "empty" / "acpbench").mkdir(parents=True)
    with pytest.raises(DataError, match=r"app/test\.mcq\.json\.gz: file not found"):
        AcpBench().load(tmp_path / "empty")
    folder = tmp_path / "data" / "acpbench" / "app"
    folder.mkdir(parents=True)
    (folder / "test.mcq.json.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"app/test\.mcq\.json\.gz: not a gzipped JSON file"):
        AcpBench().load(tmp_path / "data")
    bad = [{"id": 1, "context": "c", "question": "q", "answer": "E"}]
    (folder / "test.mcq.json.gz").write_bytes(gzip.compress(json.dumps(bad).encode()))
    with pytest.raises(DataError, match="record 1: answer 'E'"):
        AcpBench().load(tmp_path / "data")


# --- HEAD-QA --------------------------------------------------------------------------------------------------


def test_headqa_loads_all_questions(headqa_docs):
    assert len(headqa_docs) == 2742
    assert len({d.id for d in headqa_docs}) == 2742
    assert headqa_docs[0].id == "Cuaderno_2016_1_B/1"
    assert all(len(d.data["answers"]) == 4 for d in headqa_docs)


def test_headqa_choices_and_grade(headqa_docs, data_dir):
    task = HeadQA()
    doc = headqa_docs[0]
    context, continuations = task.choices(doc)
    assert context == [{"role": "user", "content": f"Question: {doc.data['question']}\nAnswer:"}]
    raw = json.loads((data_dir / "headqa" / "test_HEAD_EN.json").read_text())["exams"]["Cuaderno_2016_1_B"]["data"][0]
    assert continuations == [" " + a["atext"] for a in raw["answers"]]
    assert continuations[doc.data["gold"]] == " " + raw["answers"][int(raw["ra"]) - 1]["atext"]
    logprobs = [-9.0, -9.0, -9.0, -9.0]
    logprobs[doc.data["gold"]] = -1.0
    assert task.grade_choices(doc, logprobs).score == 1.0
    logprobs[(doc.data["gold"] + 1) % 4] = -0.5  # another option is now likelier
    assert task.grade_choices(doc, logprobs).score == 0.0


def test_headqa_aggregate_gives_acc_and_acc_norm():
    task = HeadQA()
    docs = [
        Doc("x/1", {"question": "q1", "answers": ["a long option", "b", "c", "d"], "gold": 0}),
        Doc("x/2", {"question": "q2", "answers": ["a", "b", "c", "d"], "gold": 2}),
    ]
    # x/1: raw log-probability favours "b" (-1 > -6.5), per character the gold one (-0.5 > -1); x/2: gold both ways.
    logprobs = {"x/1": [-6.5, -1.0, -9.0, -9.0], "x/2": [-3.0, -3.0, -1.0, -3.0]}
    result = task.aggregate(docs, records_for(task, docs, lambda d: logprobs[d.id]))
    assert (result["score"], result["acc_norm"], result["n"]) == (50.0, 100.0, 2)


def test_headqa_bad_file(tmp_path):
    (tmp_path / "headqa").mkdir()
    (tmp_path / "headqa" / "test_HEAD_EN.json").write_text('{"exams": {"X": {"data": [{"qid": "1"')
    with pytest.raises(DataError, match=r"test_HEAD_EN\.json: not a HEAD-QA JSON file"):
        HeadQA().load(tmp_path)
    (tmp_path / "headqa" / "test_HEAD_EN.json").write_text('{"exams": {"X": {"name": "X", "data": [{"qid": "1"}]}}}')
    with pytest.raises(DataError, match="question 1: malformed"):
        HeadQA().load(tmp_path)


# --- MC-TACO ------------------------------------------------------------------------------------------------


def test_mctaco_loads_all_rows(mctaco_docs):
    assert len(mctaco_docs) == 9442
    assert len({d.data["question_id"] for d in mctaco_docs}) == 1332
    assert [d.id for d in mctaco_docs[:3]] == ["0", "1", "2"]
    assert sum(d.data["label"] == "yes" for d in mctaco_docs) == 3198


def test_mctaco_choices_and_grade(mctaco_docs):
    task = McTaco()
    doc = mctaco_docs[0]  # Durer's mother, "she was ill for 30 seconds": no
    context, continuations = task.choices(doc)
    d = doc.data
    assert context[0]["content"] == f"{d['sentence']}\nQuestion: {d['question']}\nAnswer: {d['answer']}\nPlausible:"
    assert "How long was his mother ill?" in context[0]["content"]
    assert continuations == [" no", " yes"]
    g = task.grade_choices(doc, [-0.2, -1.9])
    assert (g.score, g.extra["pred_label"], g.extra["gold_label"]) == (1.0, "no", "no")
    assert task.grade_choices(doc, [-2.0, -0.1]).score == 0.0


# Five questions, hand-computed with the official evaluator's rules (CogComp/MCTACO evaluator.py):
#   q1 gold y n n, pred y n n: all right, P = R = 1, F1 1
#   q2 gold y y n, pred y n y: wrong, TP 1, P = 1/2, R = 1/2, F1 1/2
#   q3 gold n n,   pred n n:   all right, no predicted and no gold yes: P = R = 1, F1 1
#   q4 gold n,     pred y:     wrong, P = 0/1, R = 1 (no gold yes), F1 0
#   q5 gold y,     pred n:     wrong, P = 1 (nothing predicted), R = 0, F1 0
# EM = 2/5, F1 = 2.5/5; rows right 6/10; pooled-row F1 = 2*2/(4+4).
MCTACO_EXAMPLE = [
    ("q1", [("yes", "yes"), ("no", "no"), ("no", "no")]),
    ("q2", [("yes", "yes"), ("yes", "no"), ("no", "yes")]),
    ("q3", [("no", "no"), ("no", "no")]),
    ("q4", [("no", "yes")]),
    ("q5", [("yes", "no")]),
]


def test_question_metrics_hand_computed():
    rows = [(q, gold == "yes", pred == "yes") for q, pairs in MCTACO_EXAMPLE for gold, pred in pairs]
    em, f1, n = question_metrics(rows)
    assert (em, f1, n) == (pytest.approx(0.4), pytest.approx(0.5), 5)


def test_mctaco_aggregate_official_metrics(tmp_path):
    lines = [
        f"Sentence {q}.\tQuestion {q}?\tcandidate {i}\t{gold}\tEvent Duration"
        for q, pairs in MCTACO_EXAMPLE
        for i, (gold, _) in enumerate(pairs)
    ]
    (tmp_path / "mctaco").mkdir()
    (tmp_path / "mctaco" / "test_9442.tsv").write_text("\n".join(lines) + "\n")
    task = McTaco()
    docs = task.load(tmp_path)
    preds = [pred for _, pairs in MCTACO_EXAMPLE for _, pred in pairs]
    records = records_for(task, docs, lambda d: [-0.1, -2.0] if preds[int(d.id)] == "no" else [-2.0, -0.1])
    result = task.aggregate(docs, records)
    assert result["score"] == pytest.approx(60.0) and result["n"] == 10
    assert result["em"] == pytest.approx(40.0) and result["f1"] == pytest.approx(50.0)
    assert result["questions"] == 5 and result["f1_rows"] == pytest.approx(50.0)
    # A question with a candidate not graded yet is left out of em and f1 (q2 here: EM 2/4, F1 2/4).
    partial = task.aggregate(docs, [r for r in records if r.doc_id != "4"])
    assert partial["questions"] == 4 and partial["em"] == pytest.approx(50.0) and partial["f1"] == pytest.approx(50.0)


def test_mctaco_bad_file(tmp_path):
    (tmp_path / "mctaco").mkdir()
    path = tmp_path / "mctaco" / "test_9442.tsv"
    path.write_text("s\tq\ta\tyes\tFrequency\ns\tq\tno label here\n")
    with pytest.raises(DataError, match=r"test_9442\.tsv:2: 3 tab-separated fields"):
        McTaco().load(tmp_path)
    path.write_text("s\tq\ta\tmaybe\tFrequency\n")
    with pytest.raises(DataError, match=r"test_9442\.tsv:1: label 'maybe'"):
        McTaco().load(tmp_path)
    path.unlink()
    with pytest.raises(DataError, match="file not found"):
        McTaco().load(tmp_path)
