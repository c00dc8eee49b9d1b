"""IFEval: the real 541 prompts, every instruction type against hand-made responses (expected results follow the
official checkers' rules: google-research instruction_following_eval), strict vs loose, aggregation, offline use."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rtransfer.benchmarks.base import Doc
from rtransfer.benchmarks.ifeval import IFEval
from rtransfer.errors import DataError
from rtransfer.grading.ifeval import INSTRUCTION_TYPES, check, checkers, english_punkt, grade_ifeval, loose_variants
from rtransfer.records import Record

SHARED = Path(os.environ.get("RTRANSFER_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def data_dir() -> Path:
    path = SHARED / "benchmarks"
    assert (path / "ifeval" / "input_data.jsonl").is_file(), f"IFEval data not found under {path} (RTRANSFER_SHARED)"
    return path


@pytest.fixture(scope="module")
def docs(data_dir) -> list[Doc]:
    return IFEval().load(data_dir)


def follows(instruction_id: str, kwargs: dict, response: str, prompt: str = "a prompt") -> tuple[bool, bool]:
    (strict,), (loose,) = check(response, [instruction_id], [kwargs], prompt)
    return strict, loose


# --- data -------------------------------------------------------------------------------------------------------------


def test_loads_all_541_prompts(docs):
    assert len(docs) == 541
    assert len({d.id for d in docs}) == 541
    first = docs[0]
    assert first.id == "1000"  # the dataset's key, as a string
    assert first.data["instruction_id_list"] == [
        "punctuation:no_comma",
        "detectable_format:number_highlighted_sections",
        "length_constraints:number_words",
    ]
    assert first.data["kwargs"] == [{}, {"num_highlights": 3}, {"relation": "at least", "num_words": 300}]
    assert IFEval().prompt(first) == [{"role": "user", "content": first.data["prompt"]}]
    assert first.data["prompt"].startswith("Write a 300+ word summary of the wikipedia page")


def test_every_instruction_type_in_the_data_is_one_of_the_25_and_supported(docs):
    assert len(INSTRUCTION_TYPES) == len(set(INSTRUCTION_TYPES)) == 25
    assert set(checkers()) == set(INSTRUCTION_TYPES)  # the official registry, no more, no less
    used = {i for d in docs for i in d.data["instruction_id_list"]}
    assert used == set(INSTRUCTION_TYPES)  # IFEval uses all 25
    assert sum(len(d.data["instruction_id_list"]) for d in docs) == 834  # the official instruction count


def test_settings_and_identity():
    task = IFEval()
    assert (task.name, task.group, task.kind, task.hf_dataset, task.data_folder) == (
        "ifeval",
        "non",
        "generate",
        "google/IFEval",
        "ifeval",
    )
    assert (task.settings.samples, task.settings.temperature, task.settings.max_new_tokens) == (1, 0.0, 32768)
    assert task.grader_version.startswith("1+if-verifiable-")


def test_every_prompt_grades_and_none_kwargs_are_dropped(docs):
    task = IFEval()
    for doc in docs:
        assert all(v is not None for kw in doc.data["kwargs"] for v in kw.values())
        grade = task.grade(doc, doc.data["prompt"])  # any text: only checks that every checker runs on real args
        assert grade.weight == len(doc.data["instruction_id_list"])
        assert len(grade.extra["strict"]) == len(grade.extra["loose"]) == grade.weight


def test_hub_style_rows_with_none_kwargs(tmp_path):
    """The hub copy fills every argument an instruction does not take with None; those are dropped."""
    row = {
        "key": 7,
        "prompt": "Answer without commas.",
        "instruction_id_list": ["punctuation:no_comma", "keywords:frequency"],
        "kwargs": [
            {"keyword": None, "frequency": None, "relation": None},
            {"keyword": "rain", "frequency": 2, "relation": "at least", "num_words": None},
        ],
    }
    (tmp_path / "ifeval").mkdir()
    (tmp_path / "ifeval" / "input_data.jsonl").write_text(json.dumps(row) + "\n")
    (doc,) = IFEval().load(tmp_path)
    assert doc.id == "7"
    assert doc.data["kwargs"] == [{}, {"keyword": "rain", "frequency": 2, "relation": "at least"}]
    assert IFEval().grade(doc, "Rain and rain again").extra["strict"] == [True, True]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"key": 2, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": []}', "kwargs"),
        ('{"key": 2, "prompt": "p", "instruction_id_list": ["keywords:key_sentences"], "kwargs": [{}]}', "unknown"),
        ('{"key": 2, "prompt": "p", "instruction_id_list": [], "kwargs": []}', "instruction_id_list"),
        ('{"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}', "duplicate"),
        ('{"key": 2, "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}', "prompt"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path, line, message):
    good = {"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    path = tmp_path / "ifeval" / "input_data.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(DataError, match=rf"input_data\.jsonl:2: .*{message}"):
        IFEval().load(tmp_path)


def test_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no ifeval data"):
        IFEval().load(tmp_path)


def test_bad_arguments_are_a_data_error():
    with pytest.raises(DataError, match="bad arguments"):
        check("text", ["length_constraints:number_words"], [{"num_words": 5, "relation": "at most"}], "p")
    with pytest.raises(DataError, match="unknown IFEval instruction"):
        check("text", ["keywords:key_sentences"], [{}], "p")


# --- every instruction type: (id, kwargs, response, followed under strict) --------------------------------------------

ENGLISH = "This is my answer, written plainly in the English language for the reader."
CASES = [
    # Words in all capitals, counted on NLTK's word_tokenize (a hyphenated word is one word).
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
     "The NASA and ESA teams met at CERN today.", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
     "STATE-OF-THE-ART work from the USA.", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
     "Only ONE shouted word here.", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
     "TWO LOUD words.", False),
    # All capitals and detected as English.
    ("change_case:english_capital", {}, ENGLISH.upper(), True),
    ("change_case:english_capital", {}, ENGLISH, False),
    # All lower case and detected as English.
    ("change_case:english_lowercase", {}, ENGLISH.lower(), True),
    ("change_case:english_lowercase", {}, ENGLISH, False),
    # The response starts with the request (case and surrounding whitespace ignored).
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a haiku about rain."},
     "Write a HAIKU about rain.\nSoft rain on the roof.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a haiku about rain."},
     "Here it is: Write a haiku about rain. Soft rain.", False),
    # Exactly two different responses separated by ******.
    ("combination:two_responses", {}, "Rain is water.\n******\nRain is weather.", True),
    ("combination:two_responses", {}, "Rain is water.\n******\nRain is water.", False),
    ("combination:two_responses", {}, "One.\n******\nTwo.\n******\nThree.", False),
    # At least n [placeholders].
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], we meet at [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], see you soon.", False),
    # A postscript line starting with the marker (lower-cased match; "P.S." needs its dots).
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Main text.\n\np.s. Bring snacks.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Main text.\n\nPS Bring snacks.", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Text.\nP.P.S. One more thing.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Text.\nP.S. One more thing.", False),
    # One of the three fixed answers appears.
    ("detectable_format:constrained_response", {}, "My answer is maybe.", True),
    ("detectable_format:constrained_response", {}, "Yes, definitely.", False),
    # The whole response parses as JSON, optionally inside ``` fences.
    ("detectable_format:json_format", {}, '```json\n{"city": "Paris", "days": [1, 2]}\n```', True),
    ("detectable_format:json_format", {}, '{"city": "Paris"}', True),
    ("detectable_format:json_format", {}, 'The JSON is {"city": "Paris"}', False),
    # At least n sections marked "<splitter> <number>" (case-sensitive).
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nIntro.\nSection 2\nBody.", True),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nIntro only.", False),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "Section 1\nIntro.\nSection 2\nBody.", False),
    # Exactly n bullets: lines starting with "* " (not "**") or "-".
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "Items:\n* one\n- two\n**Bold** is no bullet", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two\n* three", False),
    # At least n non-empty *highlights* (single or double asterisks, on one line).
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*First* and **second** part.", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*First* and * * part.", False),
    # A non-empty <<title>> on one line.
    ("detectable_format:title", {}, "<<Ode to Rain>>\nDrops fall.", True),
    ("detectable_format:title", {}, "<<  >>\nDrops fall.", False),
    ("detectable_format:title", {}, "<<Ode to\nRain>>", False),
    # Every keyword appears (case-insensitive; inside longer words too).
    ("keywords:existence", {"keywords": ["banana", "rain"]}, "RAIN falls on the bananas.", True),
    ("keywords:existence", {"keywords": ["banana", "rain"]}, "Rain falls on the apples.", False),
    # No forbidden word as a whole word.
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "A concatenation of dogs.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "The Cat sat.", False),
    # Keyword occurrences, case-insensitive substrings.
    ("keywords:frequency", {"keyword": "data", "frequency": 3, "relation": "at least"}, "Data, database, metadata",
     True),
    ("keywords:frequency", {"keyword": "data", "frequency": 3, "relation": "at least"}, "data and data", False),
    ("keywords:frequency", {"keyword": "very", "frequency": 2, "relation": "less than"}, "very good", True),
    ("keywords:frequency", {"keyword": "very", "frequency": 2, "relation": "less than"}, "very very good", False),
    # Letter occurrences, case-insensitive.
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"}, "Zebra zone", True),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"}, "Zebra", False),
    ("keywords:letter_frequency", {"letter": "e", "let_frequency": 3, "let_relation": "less than"}, "the tree", False),
    # The language langdetect finds.
    ("language:response_language", {"language": "fr"},
     "Bonjour, je m'appelle Marie et j'habite à Paris depuis dix ans avec ma famille.", True),
    ("language:response_language", {"language": "fr"},
     "Hello, my name is Marie and I have lived in Paris for ten years with my family.", False),
    ("language:response_language", {"language": "hi"}, "नमस्ते, आप कैसे हैं? मैं आज बहुत खुश हूँ।", True),
    ("language:response_language", {"language": "fr"}, "12345 !!! 678", True),  # undetectable counts as followed
    # Paragraphs split on blank lines; the nth starts with the word (punctuation after it ignored).
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"},
     "The first paragraph.\n\nHowever, the second one starts so.", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"},
     "The first paragraph.\n\nBut the second does not.", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"},
     "One.\n\nHowever two.\n\nThree.", False),
    # Exactly n paragraphs split on ***; an empty paragraph inside fails.
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "One.\n***\nTwo.\n***\nThree.\n***", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "One.\n***\nTwo.", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "One.\n***\n***\nThree.", False),
    # Sentences by NLTK's English Punkt ("Mr." and "Dr." do not end a sentence).
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "Mr. Smith met Dr. Jones. They talked.", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"}, "One. Two! Three?", False),
    ("length_constraints:number_sentences", {"num_sentences": 5, "relation": "at least"},
     "xx,x. xx,x! xx/x. x{x}x? x.", True),
    ("length_constraints:number_sentences", {"num_sentences": 6, "relation": "at least"},
     "xx,x. xx,x! xx/x. x{x}x? x.", False),
    # Words are runs of \w: "Hyphenated-word" is two, punctuation is none.
    ("length_constraints:number_words", {"num_words": 6, "relation": "at least"},
     "Hyphenated-word has two word counts.", True),
    ("length_constraints:number_words", {"num_words": 7, "relation": "at least"},
     "Hyphenated-word has two word counts.", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "word1, word2, word3, word4.", True),
    # No ASCII comma.
    ("punctuation:no_comma", {}, "No commas here; none at all.", True),
    ("punctuation:no_comma", {}, "Yes, one comma.", False),
    # Ends with the phrase (case, outer whitespace and outer double quotes ignored).
    ("startend:end_checker", {"end_phrase": "Is there anything else I can help with?"},
     '"Here it is. is there anything else i can help with?"\n', True),
    ("startend:end_checker", {"end_phrase": "Is there anything else I can help with?"},
     "Is there anything else I can help with? Bye.", False),
    # Wrapped in double quotes.
    ("startend:quotation", {}, '  "The whole answer."  ', True),
    ("startend:quotation", {}, 'The "whole" answer.', False),
    ("startend:quotation", {}, '"', False),
]  # fmt: skip


@pytest.mark.parametrize(("instruction_id", "kwargs", "response", "expected"), CASES)
def test_instruction(instruction_id, kwargs, response, expected):
    strict, loose = follows(instruction_id, kwargs, response)
    assert strict is expected
    assert loose or not strict  # the response itself is the first loose variant


def test_cases_cover_every_type_both_ways():
    outcomes = {(i, expected) for i, _, _, expected in CASES}
    assert {i for i, _ in outcomes} == set(INSTRUCTION_TYPES)
    assert all((i, True) in outcomes and (i, False) in outcomes for i in INSTRUCTION_TYPES)


def test_punkt_is_nltks_english_model():
    tokenizer = english_punkt()
    # instruction_following_eval's own sentence-count cases (instructions_util_test.py).
    for text, n in [("xx,x. xx,x! xx/x. x{x}x? x.", 5), ("xx,x! xxxx. x(x)x?", 3), ("xxxx. xx,x! xx|x. x&x x?", 4)]:
        assert len(tokenizer.tokenize(text)) == n
    # NLTK's English abbreviations, and its known split after "No." (a number abbreviation it does not know).
    assert tokenizer.tokenize("He left at 5 p.m. on Monday. See No. 5 here.") == [
        "He left at 5 p.m. on Monday.",
        "See No.",
        "5 here.",
    ]


# --- strict vs loose --------------------------------------------------------------------------------------------------


def test_loose_variants_are_the_official_eight():
    assert loose_variants("*a*\nb\nc") == ["*a*\nb\nc", "a\nb\nc", "b\nc", "*a*\nb", "b", "b\nc", "a\nb", "b"]


@pytest.mark.parametrize(
    ("instruction_id", "kwargs", "response"),
    [
        ("punctuation:no_comma", {}, "Sure, here you go:\nNo commas in the answer itself."),  # first line dropped
        ("detectable_format:json_format", {}, 'Here is the JSON:\n{"a": 1}'),
        ("startend:quotation", {}, 'Sure!\n"The answer."'),
        ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. Any other questions?\nHope it helps."),
        ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. **Any other questions?**"),  # no *
        ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "Of course!\nSay hi.\nHi!"),
        ("startend:quotation", {}, '**"The answer."**'),  # without its asterisks
    ],
)
def test_fails_strict_passes_loose(instruction_id, kwargs, response):
    assert follows(instruction_id, kwargs, response) == (False, True)


def test_loose_still_fails_when_no_variant_follows():
    assert follows("punctuation:no_comma", {}, "First line\nmiddle, with a comma\nlast line") == (False, False)


def test_empty_answer_follows_nothing():
    for response in ["", "   \n", "<think>no commas, but never finished"]:
        grade = grade_ifeval(
            response, ["punctuation:no_comma", "keywords:forbidden_words"], [{}, {"forbidden_words": ["x"]}], "p"
        )
        assert (grade.score, grade.weight, grade.extracted) == (0.0, 2.0, None)
        assert grade.extra["strict"] == grade.extra["loose"] == [False, False]


def test_thinking_is_stripped_before_checking():
    response = "<think>Commas, commas, and MORE commas.</think>\n\nthere are no commas in this plain english answer."
    grade = grade_ifeval(response, ["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}], "p")
    assert grade.extra["strict"] == [True, True]
    assert (grade.score, grade.extracted) == (1.0, 2)


def test_grade_fields_on_a_real_prompt(docs):
    doc = next(d for d in docs if d.id == "1000")  # no comma, 3 highlights, at least 300 words
    words = " ".join(["word"] * 300)
    grade = IFEval().grade(doc, f"*one* *two* *three* {words}")
    assert (grade.score, grade.weight, grade.extracted) == (1.0, 3.0, 3)
    assert grade.extra == {
        "instructions": doc.data["instruction_id_list"],
        "strict": [True, True, True],
        "loose": [True, True, True],
    }
    grade = IFEval().grade(doc, "*one*, *two*")
    assert grade.extra["strict"] == [False, False, False]
    assert grade.extra["loose"] == [False, False, False]


# --- aggregation ------------------------------------------------------------------------------------------------------


def record(doc_id: str, strict: list[bool], loose: list[bool], sample: int = 0) -> Record:
    return Record(
        doc_id,
        sample,
        None,
        "",
        grade=sum(strict) / len(strict),
        weight=len(strict),
        grading={"strict": strict, "loose": loose},
    )


def test_aggregate_prompt_and_instruction_level():
    records = [
        record("a", [True, True, False], [True, True, True]),
        record("b", [True], [True]),
        record("c", [False, False], [True, False]),
    ]
    metrics = IFEval().aggregate([], records)
    expected = {
        "score": 50.0,  # 3 of 6 instructions, strict
        "n": 3,
        "prompt_strict": 100 / 3,  # only b
        "prompt_loose": 200 / 3,  # a and b
        "inst_strict": 50.0,
        "inst_loose": 500 / 6,  # 3 + 1 + 1 of 6
    }
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key


def test_aggregate_averages_samples_per_prompt_first():
    records = [
        record("a", [True, True], [True, True], sample=0),
        record("a", [True, False], [True, True], sample=1),
        record("b", [False], [False], sample=0),
        record("b", [True], [True], sample=1),
    ]
    metrics = IFEval().aggregate([], records)
    assert metrics["prompt_strict"] == pytest.approx(50.0)  # a: (1 + 0) / 2, b: (0 + 1) / 2
    assert metrics["prompt_loose"] == pytest.approx(75.0)  # a: 1, b: 0.5
    assert metrics["inst_strict"] == pytest.approx(100 * (2 * 0.75 + 1 * 0.5) / 3)
    assert metrics["score"] == pytest.approx(metrics["inst_strict"])


def test_aggregate_refuses_records_without_results():
    bad = Record("a", 0, None, "", grade=1.0, weight=1, grading={})
    with pytest.raises(DataError, match="per-instruction"):
        IFEval().aggregate([], [bad])


# --- offline ----------------------------------------------------------------------------------------------------------

OFFLINE = """
import os, socket, nltk

nltk.data.path[:] = [os.environ["NLTK_DATA"]]  # an empty folder: no system-wide NLTK data either

def no_network(*args, **kwargs):
    raise OSError("network disabled in this test")

socket.socket.connect = no_network
socket.create_connection = no_network
try:  # the machine really has no Punkt data: NLTK alone cannot split sentences here
    nltk.data.find("tokenizers/punkt_tab/english/")
    raise SystemExit("punkt_tab is installed: this test would prove nothing")
except LookupError:
    pass

from rtransfer.grading.ifeval import check

ids = ["length_constraints:number_sentences", "change_case:capital_word_frequency", "language:response_language"]
kwargs = [{"num_sentences": 3, "relation": "at least"}, {"capital_frequency": 2, "capital_relation": "at least"},
          {"language": "en"}]
strict, _ = check("Mr. Smith met the NASA team. They talked. It went WELL.", ids, kwargs, "p")
print(strict)
"""


def test_works_offline_without_nltk_data(tmp_path):
    home, nltk_data = tmp_path / "home", tmp_path / "nltk_data"
    home.mkdir()
    nltk_data.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "NLTK_DATA": str(nltk_data),
        "PYTHONPATH": str(SRC),
        "RTRANSFER_CACHE": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(OFFLINE)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[True, True, True]"
    assert not any(nltk_data.iterdir()) and not any(home.iterdir())  # nothing downloaded or written
