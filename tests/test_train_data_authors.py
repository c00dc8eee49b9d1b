"""Training data shaped like the authors' datasets (math_rl_48k, math_sft_40K), verl and ShareGPT rows: the columns
each is read from, the gold answers the grader gets, seeded samples, provenance, and one-line errors. Rows are
written to local files; the hub path is exercised by replacing the one function that fetches hub rows."""

import json
from pathlib import Path

import pytest

from rtransfer.benchmarks._math import EVALCHEMY_PROMPT
from rtransfer.errors import DataError
from rtransfer.grading.math import grade_math
from rtransfer.train import data
from rtransfer.train.data import DataRows, gold_answer, hub_revision, lab_queries, load_queries, read_traces

SHA = "0123456789abcdef0123456789abcdef01234567"
GSM8K_GOLD = "Tom has 3 boxes of 6 apples, 3 * 6 = <<3*6=18>>18, so the answer is 18.\n#### 18"
MATH_GOLD = "Half of the circle is shaded, so the fraction is $\\boxed{\\frac{1}{2}}$."


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def rl_rows(n: int = 2) -> list[dict]:
    """math_rl_48k: question, golden_answer (a solution with a #### tail, or with a box), data_source."""
    rows = [
        {"question": "How many apples has Tom?", "golden_answer": GSM8K_GOLD, "data_source": "gsm8k"},
        {"question": "What fraction is shaded?", "golden_answer": MATH_GOLD, "data_source": "math"},
    ]
    return rows[:n]


def sft_row(i: int = 0) -> dict:
    """math_sft_40K: question, a think and a no-think completion side by side."""
    return {
        "question": f"What is {i} + 18?",
        "think_response": f"<think>{i} plus 18.</think>\nThe answer is $\\boxed{{{i + 18}}}$.",
        "no_think_response": f"The answer is $\\boxed{{{i + 18}}}$.",
    }


# --- gold answers -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gold"),
    [
        (GSM8K_GOLD, "18"),
        ("So she pays 1,250 dollars.\n#### 1,250", "1250"),
        ("#### $18", "$18"),
        (MATH_GOLD, "\\frac{1}{2}"),
        ("First \\boxed{3}, then checked: \\boxed{\\sqrt{2}}", "\\sqrt{2}"),
        ("\\boxed{18}", "18"),
        ("  \\frac{1}{2} ", "\\frac{1}{2}"),
        ("(1,2)", "(1,2)"),
    ],
)
def test_gold_answer_takes_the_final_answer(text, gold):
    assert gold_answer(text) == gold


def test_the_grader_accepts_a_correct_answer_for_normalised_golds():
    right, wrong = "The answer is \\boxed{18}", "The answer is \\boxed{17}"
    for text in (GSM8K_GOLD, "\\boxed{18}", "$\\boxed{18}$", "#### 18"):
        assert grade_math(right, gold_answer(text)).score == 1.0, text
        assert grade_math(wrong, gold_answer(text)).score == 0.0, text
    assert grade_math("so \\boxed{0.5}", gold_answer(MATH_GOLD)).score == 1.0
    assert grade_math("so \\boxed{1250}", gold_answer("#### 1,250")).score == 1.0


# --- queries ----------------------------------------------------------------------------------------------------------


def test_math_rl_48k_rows_are_read_from_question_and_golden_answer(tmp_path):
    path = write_rows(tmp_path / "rl.jsonl", rl_rows(2))
    queries = load_queries(str(path), seed=3)
    assert [(q.id, q.prompt, q.answer) for q in queries] == [
        ("1", EVALCHEMY_PROMPT.format(problem="How many apples has Tom?"), "18"),
        ("2", EVALCHEMY_PROMPT.format(problem="What fraction is shaded?"), "\\frac{1}{2}"),
    ]
    assert isinstance(queries, list) and isinstance(queries, DataRows)
    assert queries.info == {
        "source": str(path),
        "columns": {"problem": "question", "answer": "golden_answer"},
        "rows": 2,
        "kept": 2,
        "sampled": None,
        "revision": None,
    }


def test_verl_rows_take_the_user_message_and_the_nested_ground_truth(tmp_path):
    row = {
        "data_source": "openai/gsm8k",
        "prompt": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "How many apples has Tom?"},
        ],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": "18"},
        "extra_info": {"split": "train", "index": 0},
    }
    queries = load_queries(str(write_rows(tmp_path / "verl.jsonl", [row])))
    assert [(q.prompt, q.answer) for q in queries] == [
        (EVALCHEMY_PROMPT.format(problem="How many apples has Tom?"), "18")
    ]
    assert queries.info["columns"] == {"problem": "prompt", "answer": "reward_model.ground_truth"}


def test_a_column_suffix_chooses_the_gold_column_of_queries(tmp_path):
    path = write_rows(tmp_path / "q.jsonl", [{"problem": "1 + 1?", "answer": "wrong", "final": "\\boxed{2}"}])
    assert [q.answer for q in load_queries(str(path))] == ["wrong"]
    queries = load_queries(f"{path}#final")
    assert [q.answer for q in queries] == ["2"] and queries.info["columns"] == {"problem": "problem", "answer": "final"}
    assert queries.info["source"] == f"{path}#final"


def test_a_local_path_with_a_hash_in_its_name_is_that_path(tmp_path):
    path = write_rows(tmp_path / "q#1.jsonl", [{"problem": "1 + 1?", "answer": "2"}])
    assert [q.answer for q in load_queries(str(path))] == ["2"]


def test_max_queries_is_a_seeded_sample_not_the_first_rows(tmp_path):
    rows = [{"id": f"q{i:02d}", "question": f"{i} + 1?", "golden_answer": f"#### {i + 1}"} for i in range(60)]
    path = str(write_rows(tmp_path / "rl.jsonl", rows))
    first, again, other = (load_queries(path, seed, limit=10) for seed in (1, 1, 2))
    ids = [q.id for q in first]
    assert ids == [q.id for q in again] and ids != [q.id for q in other]
    assert ids != [f"q{i:02d}" for i in range(10)]
    assert len(set(ids)) == 10 and ids == sorted(ids)  # distinct, in file order
    assert all(q.answer == str(int(q.id[1:]) + 1) for q in first)
    assert first.info | {"source": None} == {
        "source": None,
        "columns": {"problem": "question", "answer": "golden_answer"},
        "rows": 60,
        "kept": 10,
        "sampled": 1,
        "revision": None,
    }
    everything = load_queries(path, 1, limit=60)
    assert [q.id for q in everything] == [r["id"] for r in rows] and everything.info["sampled"] is None


def test_the_lab_keeps_its_first_queries_unchanged():
    queries = load_queries("lab", seed=0, limit=24)
    assert [(q.id, q.prompt, q.answer) for q in queries] == [(q.id, q.prompt, q.answer) for q in lab_queries(0)[:24]]
    assert [q.id for q in queries[:4]] == [
        "lab_arith/train/0",
        "lab_lineq/train/0",
        "lab_arith/train/1",
        "lab_lineq/train/1",
    ]
    assert queries.info == {
        "source": "lab",
        "columns": None,
        "rows": 4000,
        "kept": 24,
        "sampled": None,
        "revision": None,
    }


def test_hub_queries_record_the_revision(monkeypatch):
    fetched = []

    def fake_hub_rows(name):
        fetched.append(name)
        return list(enumerate(rl_rows(2), start=1)), SHA

    monkeypatch.setattr(data, "_hub_rows", fake_hub_rows)
    queries = load_queries("ReasoningTransferability/math_rl_48k", seed=0)
    assert fetched == ["ReasoningTransferability/math_rl_48k"]
    assert [q.answer for q in queries] == ["18", "\\frac{1}{2}"]
    assert queries.info == {
        "source": "ReasoningTransferability/math_rl_48k",
        "columns": {"problem": "question", "answer": "golden_answer"},
        "rows": 2,
        "kept": 2,
        "sampled": None,
        "revision": SHA,
    }


def test_an_unknown_hub_revision_is_none_and_said(monkeypatch):
    monkeypatch.setattr(data, "_hub_rows", lambda name: (list(enumerate(rl_rows(1), start=1)), None))
    queries = load_queries("ReasoningTransferability/math_rl_48k")
    assert queries.info["revision"] is None
    assert queries.info["note"] == (
        "the revision of ReasoningTransferability/math_rl_48k is unknown "
        "(the hub cannot be asked, and the local cache holds none)"
    )


def test_offline_the_revision_comes_from_the_local_caches(tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never asks the hub
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    name = "ReasoningTransferability/math_rl_48k"
    assert hub_revision(name) is None
    prepared = tmp_path / "datasets" / "ReasoningTransferability___math_rl_48k" / "default" / "0.0.0" / SHA
    prepared.mkdir(parents=True)
    assert hub_revision(name) == SHA
    other = "f" * 40
    (tmp_path / "hub" / "datasets--ReasoningTransferability--math_rl_48k" / "snapshots" / other).mkdir(parents=True)
    assert hub_revision(name) == other
    ref = tmp_path / "hub" / "datasets--ReasoningTransferability--math_rl_48k" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text(SHA)
    assert hub_revision(name) == SHA


# --- traces -----------------------------------------------------------------------------------------------------------


def test_math_sft_40k_traces_take_the_column_named_after_the_hash(tmp_path):
    path = write_rows(tmp_path / "sft.jsonl", [sft_row(0), sft_row(1)])
    no_think = read_traces(f"{path}#no_think_response")
    assert [(t.query_id, t.prompt, t.completion) for t in no_think] == [
        ("1", "What is 0 + 18?", "The answer is $\\boxed{18}$."),
        ("2", "What is 1 + 18?", "The answer is $\\boxed{19}$."),
    ]
    think = read_traces(f"{path}#think_response")
    assert [t.completion for t in think] == [sft_row(0)["think_response"], sft_row(1)["think_response"]]
    assert think.info == {
        "source": f"{path}#think_response",
        "columns": {"prompt": "question", "completion": "think_response"},
        "rows": 2,
        "kept": 2,
        "sampled": None,
        "revision": None,
    }


def test_traces_too_are_a_seeded_sample(tmp_path):
    path = write_rows(tmp_path / "sft.jsonl", [sft_row(i) for i in range(40)])
    first, again, other = (read_traces(f"{path}#no_think_response", seed, limit=8) for seed in (5, 5, 6))
    prompts = [t.prompt for t in first]
    assert prompts == [t.prompt for t in again] and prompts != [t.prompt for t in other]
    numbers = [int(t.query_id) for t in first]
    assert numbers != list(range(1, 9)) and numbers == sorted(set(numbers)) and len(numbers) == 8
    assert all(t.prompt == sft_row(n - 1)["question"] for t, n in zip(first, numbers, strict=True))
    assert (first.info["rows"], first.info["kept"], first.info["sampled"]) == (40, 8, 5)


def test_one_completion_column_needs_no_hash(tmp_path):
    row = {k: v for k, v in sft_row(0).items() if k != "think_response"}
    traces = read_traces(write_rows(tmp_path / "sft.jsonl", [row]))
    assert [t.completion for t in traces] == ["The answer is $\\boxed{18}$."]
    assert traces.info["columns"] == {"prompt": "question", "completion": "no_think_response"}


def test_several_completion_columns_without_a_hash_is_a_one_line_error(tmp_path):
    path = write_rows(tmp_path / "sft.jsonl", [sft_row(0)])
    with pytest.raises(DataError) as err:
        read_traces(path)
    assert str(err.value) == (
        f"{path}:1: several completion columns (think_response, no_think_response); "
        f"choose one with {path}#COLUMN, e.g. {path}#think_response"
    )
    with pytest.raises(DataError) as err:
        read_traces(f"{path}#thinking")
    assert str(err.value) == f"{path}:1: no column 'thinking': columns are question, think_response, no_think_response"


def test_hub_traces_with_a_column(monkeypatch):
    monkeypatch.setattr(data, "_hub_rows", lambda name: (list(enumerate([sft_row(0)], start=1)), SHA))
    traces = read_traces("ReasoningTransferability/math_sft_40K#no_think_response")
    assert [t.completion for t in traces] == ["The answer is $\\boxed{18}$."]
    assert traces.info["revision"] == SHA and traces.info["source"].endswith("#no_think_response")


def test_sharegpt_conversations_are_traces(tmp_path):
    row = {
        "id": "c7",
        "conversations": [
            {"from": "system", "value": "Think step by step."},
            {"from": "human", "value": "What is 9 + 9?"},
            {"from": "gpt", "value": "9 + 9 = \\boxed{18}"},
        ],
    }
    traces = read_traces(write_rows(tmp_path / "chat.jsonl", [row]))
    assert [(t.query_id, t.prompt, t.completion) for t in traces] == [("c7", "What is 9 + 9?", "9 + 9 = \\boxed{18}")]
    assert traces.info["columns"] == {"chat": "conversations"}


def test_messages_lists_are_traces(tmp_path):
    row = {"messages": [{"role": "user", "content": "1 + 1?"}, {"role": "assistant", "content": "\\boxed{2}"}]}
    traces = read_traces(write_rows(tmp_path / "m.jsonl", [row]))
    assert [(t.prompt, t.completion) for t in traces] == [("1 + 1?", "\\boxed{2}")]


def test_a_chat_that_does_not_end_in_an_answer_is_a_one_line_error(tmp_path):
    row = {"conversations": [{"from": "gpt", "value": "Hello"}, {"from": "human", "value": "1 + 1?"}]}
    path = write_rows(tmp_path / "chat.jsonl", [row])
    with pytest.raises(DataError) as err:
        read_traces(path)
    assert str(err.value) == (
        f"{path}:1: no completion text (the last message of conversations is not an assistant's answer)"
    )


# --- errors -----------------------------------------------------------------------------------------------------------


def test_unmapped_columns_are_one_line_errors_naming_both_sides(tmp_path):
    path = write_rows(tmp_path / "math.jsonl", [{"id": 1, "text": "1 + 1?", "label": "2"}])
    with pytest.raises(DataError) as err:
        load_queries(str(path))
    assert str(err.value) == (
        f"{path}:1: cannot find the problem: columns are id, text, label; "
        "expected one of problem, question, prompt, query (or a messages or conversations list)"
    )
    path = write_rows(tmp_path / "rl.jsonl", [{"question": "1 + 1?", "data_source": "x"}])
    with pytest.raises(DataError) as err:
        load_queries(str(path))
    assert str(err.value) == (
        f"{path}:1: cannot find the answer: columns are question, data_source; "
        "expected one of answer, gold, golden_answer, ground_truth, solution_answer, reward_model.ground_truth"
    )
    path = write_rows(tmp_path / "t.jsonl", [{"question": "1 + 1?", "reply": "2"}])
    with pytest.raises(DataError) as err:
        read_traces(path)
    assert str(err.value) == (
        f"{path}:1: cannot find the completion: columns are question, reply; expected one of "
        + ", ".join(data.COMPLETION_FIELDS)
        + " (or a messages or conversations list)"
    )


def test_a_later_row_without_its_gold_names_the_row(tmp_path):
    path = write_rows(tmp_path / "rl.jsonl", [*rl_rows(2), {"question": "3 + 1?", "golden_answer": ""}])
    with pytest.raises(DataError) as err:
        load_queries(str(path))
    assert str(err.value) == f"{path}:3: the query has no answer (column golden_answer is empty)"
