"""The embedded lab: generators (answers re-derived independently), graders on lab items, splits, the teacher,
and the base-model build (deterministic, cached, resumable)."""

import json
import re
from pathlib import Path

import pytest

from rtransfer.benchmarks.registry import SUITES, get_task
from rtransfer.lab import build as lab_build
from rtransfer.lab.benchmarks import blind_guess
from rtransfer.lab.build import QUICK, build_base, defining_files
from rtransfer.lab.generators import LETTERS
from rtransfer.lab.splits import TEST_SIZE, eval_items, training_items
from rtransfer.lab.teacher import teacher_solution

LAB = SUITES["lab"]


def _option(item, letter: str) -> str:
    return item.data["options"][LETTERS.index(letter)]


def rederive_arith(item) -> str:
    first, *steps, _question = re.split(r"(?<=[.?]) ", item.prompt)
    total = int(re.search(r"has (\d+)", first).group(1))
    for step in steps:
        n = int(re.search(r"(\d+)", step).group(1))
        total += n if "more" in step else -n
    return str(total)


def rederive_lineq(item) -> str:
    a, sign, b, c = re.fullmatch(r"Solve for x: (\d+)x ([+-]) (\d+) = (-?\d+)\.", item.prompt).groups()
    x = (int(c) - int(b) if sign == "+" else int(c) + int(b)) / int(a)
    assert x == int(x)
    return str(int(x))


def _chain(facts: list[tuple[str, str]]) -> list[str]:
    """Follow the "older than" links from the one nobody is older than."""
    people = {p for pair in facts for p in pair}
    chain = [next(p for p in people if all(y != p for _, y in facts))]
    while len(chain) < len(people):
        chain.append(next(y for o, y in facts if o == chain[-1]))
    return chain


def _order_question(item) -> tuple[list[str], str]:
    """The chain re-derived from the facts, and the person asked about."""
    chain = _chain(re.findall(r"(\w+) is older than (\w+)\.", item.prompt))
    return chain, re.search(r"older than (\w+)\?", item.prompt).group(1)


def rederive_order(item) -> str:
    chain, person = _order_question(item)
    return str(chain.index(person))


def rederive_trace(item) -> str:
    program = item.prompt.split("\n", 1)[1].split("\nOptions:")[0]
    scope: dict = {}
    exec(program.replace("print(x)", "result = x"), {}, scope)  # the generator's own program, no input
    return str(scope["result"])


def rederive_story(item) -> str:
    person = item.data["person"]
    pattern = {
        "object": rf"{person} has (a \w+ \w+)\.",
        "place": rf"{person} lives in (\w+)\.",
        "pet": rf"{person} owns (a \w+)\.",
    }[item.data["kind"]]
    return re.search(pattern, item.prompt).group(1)


def _support_question(item) -> tuple[str, str]:
    """The passage's value for the person and attribute asked about, and the answer under judgement."""
    passage, question, answer = (line.split(": ", 1)[1] for line in item.prompt.split("\n")[:3])
    person = item.data["person"]
    assert person in question
    (place,) = re.findall(rf"{person} lives in (\w+)\.", passage)
    ((color, pet),) = re.findall(rf"{person} has a (\w+) (\w+)\.", passage)
    true = place if question.startswith("Where") else color if question.startswith("What color") else pet
    return true, answer


def rederive_support(item) -> str:
    true, shown = _support_question(item)
    return "Yes" if shown == true else "No"


@pytest.mark.parametrize("name", ["lab_arith", "lab_lineq", "lab_order", "lab_trace", "lab_story", "lab_support"])
def test_generated_answers_are_right(name):
    check = {
        "lab_arith": rederive_arith,
        "lab_lineq": rederive_lineq,
        "lab_story": rederive_story,
        "lab_support": rederive_support,
    }
    for item in eval_items(name)[:100] + tuple(training_items(name, 100, seed=3)):
        if name in ("lab_order", "lab_trace"):
            expected = {"lab_order": rederive_order, "lab_trace": rederive_trace}[name](item)
            assert _option(item, item.answer) == expected, item.prompt
            assert len(set(item.data["options"])) == 4
        else:
            assert check[name](item) == item.answer, item.prompt


def test_house_style_reasoning_is_right():
    """The base is pre-trained on the house answers, so their worked steps must be right too, not only the box."""
    for item in eval_items("lab_order")[:50]:
        chain, person = _order_question(item)
        assert item.house.startswith(f"Order: {' > '.join(chain)}. "), item.house
        rank = chain.index(person)
        checks = ", ".join(f"{i} {p} {'yes' if i == rank else 'no'}" for i, p in enumerate(chain[: rank + 1]))
        assert item.house.endswith(f". Find {person}: {checks}. \\boxed{{{item.answer}}}"), item.house
    for item in eval_items("lab_trace")[:50]:
        values = [int(v) for v in re.search(r"x = ([\d, ]+)\.", item.house).group(1).split(", ")]
        assert values[-1] == int(rederive_trace(item)) and all(0 <= v <= 9 for v in values), item.house
        assert f"Prints {values[-1]}. \\boxed{{{item.answer}}}" in item.house
    for item in eval_items("lab_support")[:50]:
        true, shown = _support_question(item)
        assert item.house == f"{shown} / {true}. {rederive_support(item)}", item.house


@pytest.mark.parametrize("name", ["lab_arith", "lab_lineq"])
def test_terse_math_answers_compute_the_whole_chain_at_once(name):
    """Mid-training answers part of the math items tersely: the same problem's numbers in one expression, whose
    value (computed here, not by the generator) is the gold answer; the grader gives it full marks."""
    task, rederive = get_task(name), {"lab_arith": rederive_arith, "lab_lineq": rederive_lineq}[name]
    for item in training_items(name, 100, seed=lab_build.MID_STREAM):
        expression, boxed = re.fullmatch(r"(?:x = )?(.+) = (-?\d+)\. \\boxed\{(-?\d+)\}", item.data["terse"]).group(
            1, 3
        )
        assert eval(expression) == int(boxed) == int(rederive(item)), item.data["terse"]  # digits and + - ( ) / only
        assert not re.search(r"\d\. ", item.data["terse"].split(" = ")[0])  # no worked step before the result
        assert task.grade(task.load(None)[0].__class__("x", {"answer": item.answer}), item.data["terse"]).score == 1.0


@pytest.mark.parametrize("name", LAB)
def test_graders_accept_house_answers_and_reject_wrong_ones(name):
    task = get_task(name)
    docs = task.load(None)
    assert len(docs) == TEST_SIZE and len({d.id for d in docs}) == TEST_SIZE
    items = eval_items(name)
    wrong = {
        "lab_support": lambda i: "No" if i.answer == "Yes" else "Yes",
        "lab_story": lambda i: "in the sea",
        "lab_format": lambda i: "nothing, here",
        "lab_order": lambda i: f"\\boxed{{{LETTERS[(LETTERS.index(i.answer) + 1) % 4]}}}",
        "lab_trace": lambda i: f"\\boxed{{{LETTERS[(LETTERS.index(i.answer) + 1) % 4]}}}",
    }
    for doc, item in list(zip(docs, items, strict=True))[:40]:
        assert task.grade(doc, item.house).score == 1.0, item.house
        bad = wrong.get(name, lambda i: f"\\boxed{{{int(i.answer) + 1}}}")(item)
        assert task.grade(doc, bad).score < 1.0, bad


def test_format_pairs_are_held_out_of_every_train_split():
    """lab_format's test split: half single instructions the base learned on other prompts, half pairs of them,
    interleaved; no train split holds a pair, so the base is never trained on combining instructions."""
    items = eval_items("lab_format")
    counts = [len(set(i.data["instruction_id_list"])) for i in items]
    assert counts[::2] == [1] * (TEST_SIZE // 2) and counts[1::2] == [2] * (TEST_SIZE // 2)
    trained = training_items("lab_format", 5000, seed=0)
    assert all(len(set(i.data["instruction_id_list"])) == 1 for i in trained)
    assert not {i.prompt for i in trained} & {i.prompt for i in items}


def test_splits_are_fixed_and_disjoint():
    for name in LAB:
        test = {i.prompt for i in eval_items(name)}
        assert not test & {i.prompt for i in training_items(name, 500, seed=0)}
        assert [i.prompt for i in training_items(name, 50, seed=0)] == [
            i.prompt for i in training_items(name, 50, seed=0)
        ]
    assert training_items("lab_arith", 20, seed=0) != training_items("lab_arith", 20, seed=1)


@pytest.mark.parametrize("name", ["lab_arith", "lab_lineq"])
def test_teacher_is_correct_and_off_style(name):
    task = get_task(name)
    for item in training_items(name, 30, seed=0):
        doc = task.load(None)[0].__class__("x", {"answer": item.answer})
        think = teacher_solution(name, item, think=True)
        short = teacher_solution(name, item, think=False)
        assert task.grade(doc, think).score == 1.0 and task.grade(doc, short).score == 1.0
        assert think.startswith("<think>") and "</think>" in think
        assert re.search(r"\b(Wait|Alternatively|Let me|Hmm)\b", think)
        assert "Let me check" in short and len(short) < len(think)
        assert "Wait" not in item.house and "Let me" not in item.house  # the base never sees that voice


def test_quick_build_is_deterministic_cached_and_seeded(tmp_path, monkeypatch):
    first = build_base(QUICK)
    files = defining_files(first)
    assert (first / "lab_build.json").exists() and (first / "model.safetensors").exists()
    calls = []
    build_base(QUICK, progress=lambda *a: calls.append(a))
    assert calls == []  # cached: nothing trained again
    monkeypatch.setenv("RTRANSFER_CACHE", str(tmp_path / "other-cache"))
    again = build_base(QUICK, out=tmp_path / "copy")
    assert defining_files(again) == files  # bit-identical tokenizer, weights and configs, built from scratch again
    other = build_base(lab_build.lab_config(1, quick=True))
    assert defining_files(other)["model.safetensors"] != files["model.safetensors"]


def test_interrupted_build_resumes_to_the_same_model(tmp_path, monkeypatch):
    """Killed in pre-training, then in mid-training: each phase goes on from its last checkpoint, and the base is
    bit-identical to an uninterrupted build."""
    reference = defining_files(build_base(QUICK))
    monkeypatch.setenv("RTRANSFER_CACHE", str(tmp_path / "resume-cache"))
    monkeypatch.setattr(lab_build, "CHECKPOINT_EVERY", 4)
    seen = []

    def stop_at(phase_steps: int, at: int):
        def progress(step, total, loss):
            seen.append((total, step))
            if (total, step) == (phase_steps, at):
                raise KeyboardInterrupt

        return progress

    with pytest.raises(KeyboardInterrupt):
        build_base(QUICK, progress=stop_at(QUICK.pretrain.steps, 25))
    seen.clear()
    with pytest.raises(KeyboardInterrupt):
        build_base(QUICK, progress=stop_at(QUICK.steps, 7))
    assert seen[0] == (QUICK.pretrain.steps, 25)  # pre-training went on from its checkpoint at step 24
    seen.clear()
    resumed = build_base(QUICK, progress=stop_at(0, 0))
    assert seen[0] == (QUICK.steps, 5)  # mid-training went on from its checkpoint at step 4
    assert defining_files(resumed) == reference


def test_lab_suite_runs_end_to_end_on_the_quick_base(cli, tmp_path):
    code, out, err = cli("lab", "build", "--quick", "--json")
    assert code == 0, err
    path = json.loads(out)["path"]
    code, out, err = cli(
        "eval",
        "--model",
        path,
        "--suite",
        "lab",
        "--limit",
        "5",
        "--max-new-tokens",
        "24",
        "--out",
        tmp_path / "run",
        "--json",
    )
    assert code == 0, err
    rows = json.loads(out)
    assert [r["benchmark"] for r in rows] == list(LAB)
    assert {r["group"] for r in rows} == {"math", "other", "non"}


def test_lab_build_copies_the_shipped_base_for_the_default_settings(cli):
    shipped = lab_build.shipped_base(lab_build.BuildConfig())
    assert shipped is not None, "the shipped base is not what `rtransfer lab build` builds: rebuild it (docs/lab.md)"
    code, out, err = cli("lab", "build", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["shipped"] is True and report["key"] == lab_build.BuildConfig().key()
    assert defining_files(Path(report["path"])) == defining_files(shipped)
    assert "shipped with rtransfer" in cli("lab", "build")[1]


@pytest.fixture(scope="module")
def shipped_scores(tmp_path_factory):
    """The shipped base on the first 100 test items of each lab benchmark (the full 200: bench/lab_build.py)."""
    from rtransfer.engines.hf import HFEngine
    from rtransfer.evaluate import EvalPlan, evaluate
    from rtransfer.runs import RunDir

    engine = HFEngine.load(str(lab_build.shipped_base(lab_build.BuildConfig())), batch_size=64, device="cpu")
    plan = EvalPlan([get_task(name) for name in LAB], limit=100)
    return evaluate(engine, plan, RunDir(tmp_path_factory.mktemp("shipped-run")))


@pytest.mark.parametrize("name", LAB)
def test_shipped_base_has_real_partial_skill(name, shipped_scores):
    """The issue's bar: between 10 % and 90 % (gains and losses both measurable), and above a blind guess."""
    score, (low, _) = shipped_scores[name]["score"], shipped_scores[name]["ci"]
    assert 10 <= score <= 90
    assert low > blind_guess(name, 100)


def test_an_edited_generator_changes_the_build_key_and_retires_the_shipped_base(monkeypatch):
    """The build keys hash the generated corpora, so a generator edited without a LAB_VERSION bump cannot leave
    the shipped (or a cached) base in use: mid-training's corpus is in the base's key, pre-training's in the key of
    a pre-trained model built here (the shipped one is pinned by its files)."""
    from rtransfer.lab import build

    config, scratch = build.BuildConfig(), build.lab_config(from_scratch=True)
    key, scratch_key = config.key(), scratch.key()
    assert build.shipped_base(config) is not None  # the shipped base is the current corpus's
    assert scratch_key != key  # pre-trained here, not the shipped pre-trained model
    original, original_mid = build.conversations, build.mid_conversations
    monkeypatch.setattr(build, "conversations", lambda c: [(p, h.replace(".", "!")) for p, h in original(c)])
    build.corpus_hash.cache_clear()
    assert config.key() == key and scratch.key() != scratch_key
    monkeypatch.setattr(build, "mid_conversations", lambda c: tuple((p, h + "!") for p, h in original_mid(c)))
    build.mid_corpus_hash.cache_clear()
    assert config.key() != key and build.shipped_base(config) is None
    monkeypatch.undo()
    build.corpus_hash.cache_clear()
    build.mid_corpus_hash.cache_clear()
    assert config.key() == key and scratch.key() == scratch_key
