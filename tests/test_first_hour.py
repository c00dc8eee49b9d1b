"""A newcomer's first hour on a CPU without internet: `lab` is a model everywhere, no hub path retries for tens of
seconds, --limit keeps every part of HaluEval and MC-TACO, --skip-missing runs what the data allows, and
`rtransfer list` says what there is. Real data from shared/benchmarks, the lab base shipped in the package."""

import csv
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from rtransfer import online
from rtransfer.benchmarks.registry import get_task
from rtransfer.cli import main
from rtransfer.evaluate import EvalPlan, load_docs, score
from rtransfer.lab.build import resolve_model
from rtransfer.records import Record
from rtransfer.sources import load_run_dir

FAST = 10.0  # seconds: an offline failure takes this at most (the hub libraries' retries took 24 to 49)


@pytest.fixture
def benchmarks(shared):
    return shared / "benchmarks"


@pytest.fixture
def no_hub(monkeypatch):
    """The hub's address is a closed port on this machine: what rtransfer sees without a connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name in (*online.OFFLINE_VARIABLES, *online.PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    return f"127.0.0.1:{port}"


def timed(cli, *argv):
    start = time.monotonic()
    code, out, err = cli(*argv)
    return code, out, err, time.monotonic() - start


# --- lab is a model wherever a model is asked for --------------------------------------------------------------------


def test_eval_takes_lab_and_limits_halueval_per_task_and_mctaco_per_question(cli, benchmarks, tmp_path):
    run = tmp_path / "run"
    argv = ["eval", "--model", "lab", "--benchmarks", "halueval,mctaco", "--data-dir", benchmarks, "--out", run]
    code, out, err = cli(*argv, "--limit", "1", "--max-new-tokens", "1", "--json")
    assert code == 0, err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["name"] == "lab" and manifest["model"] == resolve_model("lab")  # the shipped base, copied
    halueval, mctaco = json.loads(out)
    assert halueval["counts"] == {"qa": 1, "dialogue": 1, "summarization": 1} and halueval["n"] == 3
    assert halueval["complete"] is True and halueval["full"] is False
    assert halueval["partial"] == "; ".join(f"{t}: 1 of 10000 documents" for t in ("qa", "dialogue", "summarization"))
    # MC-TACO: all 13 candidates of the first question (rows 1-13 of the file), so it counts towards em and f1.
    assert mctaco["questions"] == 1 and mctaco["n"] == len(first_questions(benchmarks, 1)) == 13
    # The TI keeps a limited HaluEval: all three tasks are there.
    row, notes = load_run_dir(run)
    assert notes == [] and row.scores["halueval"] == pytest.approx(halueval["score"])


def test_probe_takes_lab(cli):
    code, out, err = cli("probe", "weights", "--base", "lab", "--tuned", "lab", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["base"] == result["tuned"] == resolve_model("lab")
    assert result["total"]["unchanged_share"] == 1.0


def test_other_models_pass_through_unchanged(tmp_path):
    assert resolve_model("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B" and resolve_model(str(tmp_path)) == str(tmp_path)


# --- offline: one line in seconds ------------------------------------------------------------------------------------


def test_offline_benchmark_without_data_dir_fails_fast(cli, no_hub, tmp_path):
    code, _, err, seconds = timed(cli, "eval", "--model", "lab", "--benchmarks", "math500", "--out", tmp_path / "r")
    assert code == 2 and seconds < FAST
    assert err == (
        f"rtransfer: error: cannot load HuggingFaceH4/MATH-500: the Hugging Face hub cannot be reached ({no_hub}: "
        "Connection refused); pass --data-dir with local copies, e.g. --data-dir ../shared/benchmarks\n"
    )
    assert not (tmp_path / "r").exists()


def test_offline_hub_model_fails_fast(cli, no_hub, benchmarks, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (imported outside the timing)

    argv = ["eval", "--model", "rtransfer-tests/no-such-model", "--benchmarks", "math500", "--data-dir", benchmarks]
    code, _, err, seconds = timed(cli, *argv, "--limit", "1", "--out", tmp_path / "r")
    assert code == 2 and seconds < FAST
    assert err == (
        "rtransfer: error: cannot load model 'rtransfer-tests/no-such-model': the Hugging Face hub cannot be reached "
        f"({no_hub}: Connection refused) and its local cache has no copy; give a local model directory, or lab for "
        "the lab base\n"
    )


@pytest.mark.parametrize("command", ["train", "probe"])
def test_training_and_probing_a_hub_model_offline_fail_fast(cli, no_hub, tmp_path, command):
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (imported outside the timing)

    model = "rtransfer-tests/no-such-model"
    if command == "train":
        queries = tmp_path / "q.jsonl"
        queries.write_text('{"problem": "1+1?", "answer": "2"}\n')
        argv = ["train", "grpo", "--model", model, "--data", queries, "--out", tmp_path / "m"]
    else:
        argv = ["probe", "weights", "--base", model, "--tuned", "lab", "--out", tmp_path / "p"]
    code, _, err, seconds = timed(cli, *argv)
    assert code == 2 and seconds < FAST
    assert err.endswith(
        f"cannot load model '{model}': the Hugging Face hub cannot be reached ({no_hub}: Connection refused) and its "
        "local cache has no copy; give a local model directory, or lab for the lab base\n"
    )


def test_declared_offline_fails_fast_in_a_fresh_process(tmp_path):
    """HF_HUB_OFFLINE=1, as a user sets it: the libraries read it when imported, hence a process of its own."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "RTRANSFER_CACHE": str(tmp_path)}
    argv = [sys.executable, "-m", "rtransfer.cli", "eval", "--model", "lab", "--benchmarks", "ifeval"]
    start = time.monotonic()
    done = subprocess.run([*argv, "--out", tmp_path / "r"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and time.monotonic() - start < FAST
    assert done.stderr.splitlines()[-1] == (
        "rtransfer: error: cannot load google/IFEval: the Hugging Face hub cannot be reached (HF_HUB_OFFLINE is set, "
        "and the local cache has no copy); pass --data-dir with local copies, e.g. --data-dir ../shared/benchmarks"
    )


# --- --limit per part ------------------------------------------------------------------------------------------------


def first_questions(benchmarks, n: int) -> list[str]:
    """Row indexes (doc ids) of every candidate of MC-TACO's first n questions, read from the TSV directly."""
    with open(benchmarks / "mctaco" / "test_9442.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    keys = list(dict.fromkeys((r[0], r[1]) for r in rows))[:n]
    return [str(i) for i, r in enumerate(rows) if (r[0], r[1]) in keys]


def test_limit_takes_whole_mctaco_questions(benchmarks):
    task = get_task("mctaco")
    docs = load_docs(task, EvalPlan([task], data_dir=benchmarks, limit=20))
    assert [d.id for d in docs] == first_questions(benchmarks, 20) and len(docs) == 127
    assert len({d.data["question_id"] for d in docs}) == 20  # rows [:20], as before, held 3 questions


def test_limited_halueval_scores_the_mean_of_its_three_tasks(benchmarks):
    task = get_task("halueval")
    docs = load_docs(task, EvalPlan([task], data_dir=benchmarks, limit=4))
    assert [d.id for d in docs] == [f"{t}/{i}" for t in ("qa", "dialogue", "summarization") for i in range(4)]
    # Right on every qa item, on 3 of 4 dialogue items, on 1 of 4 summaries: task accuracies 100, 75, 25.
    wrong = {"dialogue/0", "summarization/0", "summarization/1", "summarization/2"}
    records = []
    for d in docs:
        said = {"yes": "No", "no": "Yes"}[d.data["label"]] if d.id in wrong else d.data["label"].title()
        g = task.grade(d, said)
        records.append(Record(d.id, 0, None, said, g.extracted, g.score, weight=g.weight, grading=g.extra))
    m = score(task, docs, records)
    assert (m["qa"], m["dialogue"], m["summarization"]) == (100.0, 75.0, 25.0)
    assert m["score"] == pytest.approx(200 / 3) and m["complete"] is True and m["full"] is False


def test_help_says_what_limit_means(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = squeezed(capsys.readouterr().out)  # as wrapped to any terminal's width
    assert squeezed("HaluEval: the first N of each of its three tasks (as lm-eval)") in text
    assert squeezed("MC-TACO: every candidate row of the first N questions") in text


def squeezed(text: str) -> str:
    return "".join(text.split())


# --- --skip-missing --------------------------------------------------------------------------------------------------


def test_missing_data_names_the_flag_before_any_model_loads(cli, benchmarks, tmp_path):
    argv = ["eval", "--model", "lab", "--benchmarks", "gpqa_diamond,livecodebench,math500", "--data-dir", benchmarks]
    code, _, err = cli(*argv, "--out", tmp_path / "r")
    assert code == 2 and err == (
        f"rtransfer: error: {benchmarks}/gpqa_diamond/gpqa_diamond.csv: file not found (GPQA is gated: put the "
        "official gpqa_diamond.csv here); no livecodebench data either; --skip-missing runs the other 1 benchmark "
        "without them\n"
    )
    assert not (tmp_path / "cache" / "lab").exists()  # the lab base was not even copied


def test_skip_missing_runs_the_rest(cli, benchmarks, tmp_path):
    argv = ["eval", "--model", "lab", "--benchmarks", "gpqa_diamond,math500,livecodebench", "--data-dir", benchmarks]
    code, _, err = cli(*argv, "--out", tmp_path / "r", "--skip-missing", "--limit", "1", "--max-new-tokens", "4")
    assert code == 0, err
    assert f"rtransfer: note: no data found in {benchmarks}, skipped: gpqa_diamond, livecodebench\n" in err
    assert list(json.loads((tmp_path / "r" / "scores.json").read_text())["benchmarks"]) == ["math500"]
    code, _, err = cli(
        "eval",
        "--model",
        "lab",
        "--benchmarks",
        "gpqa_diamond",
        "--data-dir",
        benchmarks,
        "--out",
        tmp_path / "s",
        "--skip-missing",
    )
    assert code == 2 and err.endswith("gpqa_diamond.csv here): nothing to run\n")


# --- rtransfer list --------------------------------------------------------------------------------------------------


def test_list_names_benchmarks_groups_suites_and_the_data_found(cli, benchmarks):
    code, out, err = cli("list", "--data-dir", benchmarks, "--json")
    assert code == 0, err
    found = json.loads(out)
    by_name = {b["name"]: b for b in found["benchmarks"]}
    assert by_name["mctaco"] | {"data_note": ""} == {
        "name": "mctaco",
        "display": "MC-TACO",
        "group": "non",
        "kind": "loglik",
        "variants": [],
        "data": "found",
        "data_note": "",
    }
    assert by_name["gpqa_diamond"]["data"] == "missing" and by_name["gpqa_diamond"]["variants"] == [
        "gpqa_diamond:paper-order"
    ]
    assert {n for n, b in by_name.items() if b["data"] == "missing"} == {"gpqa_diamond", "livecodebench"}
    assert by_name["lab_arith"]["data"] == "generated"
    assert found["suites"]["paper"][:2] == ["math500", "aime24"] and len(found["suites"]["paper"]) == 12
    assert found["groups"]["math"]["benchmarks"] == [
        "math500",
        "aime24",
        "aime25",
        "olympiadbench",
        "lab_arith",
        "lab_lineq",
    ]
    code, out, _ = cli("list")
    assert code == 0
    assert any(line.split()[:4] == ["halueval", "HaluEval", "non", "generate"] for line in out.splitlines())
    assert "  paper  math500, aime24, aime25, olympiadbench, gpqa_diamond," in out


def test_list_imports_no_model_library():
    code = "import sys; from rtransfer.cli import main; main(['list']); print(sorted({'torch', 'transformers', "
    code += "'datasets'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "[]"
