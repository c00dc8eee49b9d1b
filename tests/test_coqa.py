"""CoQA: the real one-story dev file in shared/, the official EM/F1 rules, every turn scored."""

import json
import os
from pathlib import Path

import pytest

from rtransfer.benchmarks.base import Doc
from rtransfer.benchmarks.coqa import CoQA, story_from_hub
from rtransfer.errors import DataError
from rtransfer.grading.overlap import (
    coqa_scores,
    exact_match,
    leave_one_out,
    max_reference,
    normalize_answer,
    read_answer,
    token_f1,
)
from rtransfer.records import Record, doc_grades

SHARED = Path(os.environ.get("RTRANSFER_SHARED", Path(__file__).resolve().parents[2] / "shared"))
STORY = "3dr23u6we5exclen4th8uq9rb42tel"
GOLD = [  # the main answers of the 12 turns, as in the file
    "white",
    "in a barn",
    "no",
    "with her mommy and 5 sisters",
    "orange and white",
    "no",
    "she painted herself",
    "the farmer",
    "they started laughing",
    "a bucket of water",
    "licked her face",
    "no",
]

QUESTIONS = [
    "What color was Cotton?",
    "Where did she live?",
    "Did she live alone?",
    "Who did she live with?",
    "What color were her sisters?",
    "Was Cotton happy that she looked different than the rest of her family?",
    "What did she do to try to make herself the same color as her sisters?",
    "Whose paint was it?",
    "What did Cotton's mother and siblings do when they saw her painted orange?",
    "Where did Cotton's mother put her to clean the paint off?",
    "What did the other cats do when Cotton emerged from the bucket of water?",
    "Did they want Cotton to change the color of her fur?",
]


@pytest.fixture(scope="module")
def data_dir() -> Path:
    path = SHARED / "benchmarks"
    assert (path / "coqa").is_dir(), f"shared benchmark data not found at {path} (set RTRANSFER_SHARED)"
    return path


@pytest.fixture(scope="module")
def docs(data_dir) -> list[Doc]:
    return CoQA().load(data_dir)


def records(task: CoQA, docs: list[Doc], answer_of) -> list[Record]:
    """Grade `answer_of(doc)` for every doc and wrap the grades as the runner does."""
    out = []
    for doc in docs:
        g = task.grade(doc, answer_of(doc))
        out.append(Record(doc.id, 0, None, answer_of(doc), extracted=g.extracted, grade=g.score, grading=g.extra))
    return out


# --- the overlap metrics, by hand ----------------------------------------------------------------------------------


def test_normalisation_is_the_official_one():
    assert normalize_answer("The  Cat's hat!") == "cats hat"
    assert normalize_answer("An apple a day.") == "apple day"
    assert normalize_answer("another theme, then") == "another theme then"  # articles only as whole words
    assert normalize_answer("A: white") == "white"  # punctuation first, then the article
    assert normalize_answer("“Quoted”") == "“quoted”"  # only ASCII punctuation, as the official script


def test_exact_match_and_f1_by_hand():
    assert exact_match("The Dog.", "dog") == 1.0
    assert exact_match("dog", "dogs") == 0.0
    # gold {big, red, dog}, prediction {red, dog, barked}: 2 in common, P = R = 2/3
    assert token_f1("the big red dog", "a red dog barked") == pytest.approx(2 / 3)
    assert token_f1("in a barn", "barn") == pytest.approx(2 / 3)  # P 1, R 1/2
    assert token_f1("white", "orange") == 0.0
    assert token_f1("no no yes", "no") == pytest.approx(0.5)  # bags of tokens: P 1, R 1/3
    # an empty side: 1 only when both are empty (after normalisation)
    assert token_f1("white", "") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("the", "a") == 1.0
    assert exact_match("", "") == 1.0


def test_multiple_references_leave_one_out():
    refs = ["white", "white", "white", "orange"]
    # "orange" matches only the reference left out in the 4th round: 3/4 by CoQA's rule, 1 by SQuAD's
    assert leave_one_out(token_f1, refs, "orange") == pytest.approx(0.75)
    assert max_reference(token_f1, refs, "orange") == 1.0
    assert coqa_scores(refs, "white") == {"em": 1.0, "f1": 1.0}
    # F1 against "in a barn" = 0.5 and against "in a barn near" = 0.8: rounds give 0.8 and 0.5
    assert leave_one_out(token_f1, ["in a barn", "in a barn near"], "barn near") == pytest.approx(0.65)
    assert max_reference(token_f1, ["in a barn", "in a barn near"], "barn near") == pytest.approx(0.8)


def test_a_single_reference_is_plain_max():
    for pred in ("barn", "in the barn", "a house", ""):
        for metric in (token_f1, exact_match):
            assert leave_one_out(metric, ["in a barn"], pred) == max_reference(metric, ["in a barn"], pred)
    assert coqa_scores(["in a barn"], "barn") == {"em": 0.0, "f1": pytest.approx(2 / 3)}
    with pytest.raises(ValueError):
        coqa_scores([], "x")


# --- data and prompts ----------------------------------------------------------------------------------------------


def test_loads_the_twelve_turns(docs):
    assert [d.id for d in docs] == [f"{STORY}/{t}" for t in range(1, 13)]
    assert [d.data["references"][0] for d in docs] == GOLD
    assert all(len(d.data["references"]) == 4 for d in docs)  # the main answer and 3 additional sets
    assert docs[3].data["references"] == ["with her mommy and 5 sisters", *["her mommy and 5 other sisters"] * 3]
    assert docs[2].data["references"] == ["no", "no", "No", "no"]  # duplicates kept, as the official evaluator
    assert [d.data["last"] for d in docs] == [False] * 11 + [True]
    assert {d.data["source"] for d in docs} == {"mctest"}


def test_prompt_holds_previous_gold_turns_not_the_answer(docs):
    task = CoQA()
    story = docs[0].data["story"]
    (first,) = task.prompt(docs[0])
    assert first == {"role": "user", "content": f"{story}\n\nQ: What color was Cotton?\n\nA:"}
    for doc in docs:
        (message,) = task.prompt(doc)
        text, turn = message["content"], doc.data["turn"]
        assert text.startswith(story + "\n\n")
        history = "".join(f"Q: {q}\n\nA: {a}\n\n" for q, a in zip(QUESTIONS[: turn - 1], GOLD[: turn - 1], strict=True))
        assert text == f"{story}\n\n{history}Q: {QUESTIONS[turn - 1]}\n\nA:"
        assert text.count("\nQ: ") == turn  # earlier turns and this one, nothing later
    # the current answer and the additional answers are never shown
    (fourth,) = task.prompt(docs[3])
    assert "A: with her mommy" not in fourth["content"] and "A: her mommy" not in fourth["content"]
    (last,) = task.prompt(docs[11])
    assert last["content"].endswith(
        "A: licked her face\n\nQ: Did they want Cotton to change the color of her fur?\n\nA:"
    )


def test_settings_are_lm_evals_with_the_papers_budget():
    s = CoQA.settings
    assert (s.samples, s.temperature, s.max_new_tokens, s.stop) == (1, 0.0, 32768, ("\nQ:",))
    assert (CoQA.name, CoQA.group, CoQA.kind, CoQA.data_folder) == ("coqa", "non", "generate", "coqa")


# --- grading and aggregation ---------------------------------------------------------------------------------------


def test_read_answer():
    assert read_answer("<think>The kitten is white.\nSo white.</think>\n\nWhite\nBecause the story says so.") == "White"
    assert read_answer("**Answer:** in a barn") == "in a barn"
    assert read_answer("A: no") == "no"
    assert read_answer("<think>never finished") == ""


def test_grade_a_turn(docs):
    task = CoQA()
    g = task.grade(docs[0], "<think>Cotton is a white kitten.</think>\nWhite.\nShe was the only white one.")
    assert (g.score, g.extracted, g.extra) == (1.0, "White.", {"em": 1.0})
    g = task.grade(docs[1], "in a barn near a farm house")  # refs: "in a barn" x3, "in a barn near"
    assert g.score == pytest.approx(coqa_scores(docs[1].data["references"], "in a barn near a farm house")["f1"])
    assert 0 < g.score < 1 and g.extra["em"] == 0.0
    assert task.grade(docs[0], "<think>still thinking").score == 0.0


def test_every_turn_is_scored(docs):
    task = CoQA()
    # Right on the last turn only: lm-eval (last turn only) would say 100; every turn counts here.
    recs = records(task, docs, lambda d: GOLD[-1] if d.data["last"] else "I do not know")
    m = task.aggregate(docs, recs)
    assert m["n"] == 12 and m["stories"] == 1 and m["last_turns"] == 1
    assert m["last_turn_f1"] == 100.0
    assert m["score"] == pytest.approx(100.0 / 12) and m["f1"] == m["score"]
    assert m["em"] == pytest.approx(100.0 / 12)
    assert m["by_source"] == {"mctest": {"f1": pytest.approx(100 / 12), "em": pytest.approx(100 / 12), "n": 12}}


def test_aggregate_is_the_mean_of_turn_scores(docs):
    task = CoQA()
    answers = {d.id: d.data["references"][-1] for d in docs}  # the 3rd additional answer set
    recs = records(task, docs, lambda d: answers[d.id])
    m = task.aggregate(docs, recs)
    expected = [coqa_scores(d.data["references"], answers[d.id]) for d in docs]
    assert m["score"] == pytest.approx(100 * sum(e["f1"] for e in expected) / 12)
    assert m["em"] == pytest.approx(100 * sum(e["em"] for e in expected) / 12)
    _, values, weights = doc_grades(recs)
    assert m["score"] == pytest.approx(100 * (values * weights).sum() / weights.sum())  # the aggregate contract
    # SQuAD's rule: every answer equals one reference
    assert m["f1_max"] == m["em_max"] == 100.0
    assert m["score"] < 100.0  # leave-one-out: where the other references disagree, matching one is not enough


# --- other layouts and bad files -----------------------------------------------------------------------------------


def test_hub_layouts_map_to_the_same_story(data_dir):
    official = json.loads((data_dir / "coqa" / "coqa-dev-v1.0.first1.json").read_text())["data"][0]

    def columns(turns: list[dict]) -> dict[str, list]:  # the hub's layout: a dict of lists
        return {k: [t[k] for t in turns] for k in turns[0]}

    eleuther = {
        **{k: official[k] for k in ("id", "source", "story")},
        "questions": columns(official["questions"]),
        "answers": columns(official["answers"]),
        "additional_answers": {k: columns(v) for k, v in official["additional_answers"].items()},
    }
    stanford = {  # stanfordnlp/coqa: no id, questions as strings, no additional answers
        "source": official["source"],
        "story": official["story"],
        "questions": [q["input_text"] for q in official["questions"]],
        "answers": {"input_text": [a["input_text"] for a in official["answers"]], "answer_start": [0] * 12},
    }
    a, b = story_from_hub(eleuther, 0), story_from_hub(stanford, 7)
    assert a["id"] == STORY and b["id"] == "validation-7"
    assert a["questions"] == b["questions"] == QUESTIONS and a["answers"] == b["answers"] == GOLD
    assert len(a["additional"]) == 3 and b["additional"] == []
    docs = CoQA().to_doc(a, "hub", 0)
    assert [d.data["references"] for d in docs] == [d.data["references"] for d in CoQA().load(data_dir)]


def write_story(root: Path, story: dict, name: str = "coqa-dev-v1.0.json") -> Path:
    (root / "coqa").mkdir(parents=True, exist_ok=True)
    (root / "coqa" / name).write_text(json.dumps({"version": "1.0", "data": [story]}))
    return root


def test_bad_files(tmp_path, data_dir):
    story = json.loads((data_dir / "coqa" / "coqa-dev-v1.0.first1.json").read_text())["data"][0]
    with pytest.raises(DataError, match="no coqa data"):
        CoQA().load(tmp_path)
    (tmp_path / "coqa").mkdir()
    with pytest.raises(DataError, match="no CoQA file"):
        CoQA().load(tmp_path)
    (tmp_path / "coqa" / "coqa-dev-v1.0.json").write_text("{not json")
    with pytest.raises(DataError, match=r"coqa-dev-v1\.0\.json: not a JSON file"):
        CoQA().load(tmp_path)
    write_story(tmp_path, {**story, "answers": story["answers"][:-1]})
    with pytest.raises(DataError, match="12 questions but 11 answers"):
        CoQA().load(tmp_path)
    write_story(tmp_path, {**story, "additional_answers": {"0": story["additional_answers"]["0"][:5]}})
    with pytest.raises(DataError, match="additional answers '0' have 5 turns, not 12"):
        CoQA().load(tmp_path)
    swapped = [story["questions"][1], story["questions"][0], *story["questions"][2:]]
    write_story(tmp_path, {**story, "questions": swapped})
    with pytest.raises(DataError, match="turn_id 2 out of order"):
        CoQA().load(tmp_path)


def test_folder_without_the_official_file_reads_every_dev_json(tmp_path, data_dir):
    story = json.loads((data_dir / "coqa" / "coqa-dev-v1.0.first1.json").read_text())["data"][0]
    write_story(tmp_path, story, "part1.json")
    write_story(tmp_path, {**story, "id": "second"}, "part2.json")
    write_story(tmp_path, {**story, "id": "train-story"}, "coqa-train-v1.0.json")  # never evaluated
    docs = CoQA().load(tmp_path)
    assert len(docs) == 24 and docs[12].id == "second/1"
    write_story(tmp_path, story, "part2.json")
    with pytest.raises(DataError, match=f"story {STORY} appears twice"):
        CoQA().load(tmp_path)
