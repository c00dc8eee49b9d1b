"""TI inputs: scores tables (good and malformed), lm-evaluation-harness results, rtransfer run directories."""

import json
import re

import pytest

from rtransfer.errors import DataError
from rtransfer.records import Record
from rtransfer.runs import RunDir, new_manifest
from rtransfer.sources import load_inputs, load_lm_eval, load_run_dir, load_scores_csv

HEADER = "model,base,method,MATH500,AIME24,HeadQA,ACPBench,CoQA,IFEval"
GOOD = [HEADER, "B,,base,50,20,40,30,60,70", "T,B,SFT,60,32,45,25,50,70"]


def write(tmp_path, lines, name="scores.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_display_and_canonical_headers_are_one_benchmark(tmp_path):
    rows = load_scores_csv(write(tmp_path, GOOD))
    canonical = load_scores_csv(
        write(tmp_path, [HEADER.replace("MATH500", "math500").replace("HeadQA", "headqa"), *GOOD[1:]], "c.csv")
    )
    assert rows[1].scores == canonical[1].scores
    assert rows[1].scores["math500"] == 60.0 and rows[1].base == "B" and rows[0].base is None


def test_empty_cell_is_a_missing_score(tmp_path):
    rows = load_scores_csv(write(tmp_path, [HEADER, "B,,base,50,20,40,30,60,70", "T,B,SFT,60,,45,25,50,70"]))
    assert "aime24" not in rows[1].scores


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([HEADER, "T,B,SFT,60,32,45,25,50,70"], "base 'B' of 'T' has no row of its own"),
        (
            [HEADER + ",MMLU", "B,,base,50,20,40,30,60,70,1", "T,B,SFT,60,32,45,25,50,70,1"],
            "unknown benchmark column 'MMLU'",
        ),
        (
            [HEADER, "B,,base,50,20,40,30,60,70", "T,B,SFT,sixty,32,45,25,50,70"],
            "scores.csv:3: MATH500 of 'T' is 'sixty', not a number",
        ),
        ([HEADER, "B,,base,50,20,40,30,60,70", "T,B,SFT,0.6,32,45,25,50,170"], "outside 0–100"),
        (["name,base,MATH500", "B,,50"], "no 'model' column"),
        ([HEADER, "B,,base,50,20,40,30,60,70", "T,B,SFT,60,32,45,25,50,70,99"], "more cells than header"),
        ([HEADER, "B,,base,50,20,40,30,60,70", "B,,base,50,20,40,30,60,70"], "more than one row"),
        ([HEADER + ",MATH-500", "B,,base,50,20,40,30,60,70,1"], "two columns name the benchmark 'math500'"),
        ([HEADER], "no rows"),
    ],
)
def test_malformed_tables_give_one_line_errors(tmp_path, cli, lines, message):
    path = write(tmp_path, lines)
    with pytest.raises(DataError, match=re.escape(message)):
        load_scores_csv(path)
    code, out, err = cli("ti", "--scores", path)
    assert code == 2 and out == ""
    assert err.startswith("rtransfer: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_missing_input_file_is_one_line_error(cli, tmp_path):
    code, _, err = cli("ti", tmp_path / "nope.csv")
    assert code == 2 and "no such file or directory" in err and err.count("\n") == 1


def lm_eval_results(model: str, math500: float, acp_tasks=7) -> dict:
    """A results file in the shape lm-evaluation-harness 0.4 writes (`results_<timestamp>.json`)."""
    results = {
        "hendrycks_math_500": {
            "alias": "hendrycks_math_500",
            "exact_match,none": math500,
            "exact_match_stderr,none": 0.021,
        },
        "gpqa_diamond_cot_zeroshot": {
            "alias": "gpqa_diamond_cot_zeroshot",
            "exact_match,strict-match": 0.02,
            "exact_match_stderr,strict-match": 0.01,
            "exact_match,flexible-extract": 0.4263,
            "exact_match_stderr,flexible-extract": 0.035,
        },
        "headqa_en": {
            "alias": "headqa_en",
            "acc,none": 0.376,
            "acc_stderr,none": 0.009,
            "acc_norm,none": 0.41,
            "acc_norm_stderr,none": 0.009,
        },
        "coqa": {"alias": "coqa", "em,none": 0.05, "em_stderr,none": 0.01, "f1,none": 0.1, "f1_stderr,none": 0.01},
        "ifeval": {
            "alias": "ifeval",
            "prompt_level_strict_acc,none": 0.6,
            "prompt_level_strict_acc_stderr,none": 0.02,
            "inst_level_strict_acc,none": 0.692,
            "inst_level_strict_acc_stderr,none": "N/A",
            "prompt_level_loose_acc,none": 0.65,
            "inst_level_loose_acc,none": 0.74,
        },
        "mc_taco": {"alias": "mc_taco", "acc,none": 0.677, "acc_stderr,none": 0.004, "f1,none": 0.5},
        "halueval_qa": {"alias": " - halueval_qa", "exact_match,custom-extract": 0.30},
        "halueval_dialogue": {"alias": " - halueval_dialogue", "exact_match,custom-extract": 0.40},
        "halueval_summarization": {"alias": " - halueval_summarization", "exact_match,custom-extract": 0.38},
    }
    for t in ("app", "areach", "just", "land", "prog", "reach", "val")[:acp_tasks]:
        results[f"acp_{t}_mcq_cot_2shot"] = {"alias": f"acp_{t}_mcq_cot_2shot", "exact_match,mcq-extract": 0.1}
    return {
        "results": results,
        "group_subtasks": {"halueval": ["halueval_qa", "halueval_dialogue", "halueval_summarization"]},
        "configs": {},
        "versions": {"coqa": 3.0, "ifeval": 4.0},
        "n-shot": {"coqa": 0},
        "config": {
            "model": "hf",
            "model_args": f"pretrained={model},dtype=bfloat16",
            "batch_size": "auto",
            "device": "cuda:0",
            "limit": None,
            "bootstrap_iters": 100000,
        },
        "git_hash": "a1b2c3d",
        "date": 1751000000.0,
        "model_name": model,
        "model_name_sanitized": model.replace("/", "__"),
    }


def test_lm_eval_results_are_mapped_to_benchmarks(tmp_path):
    path = tmp_path / "Qwen__Qwen3-14B" / "results_2025-07-01T10-00-00.json"
    path.parent.mkdir()
    path.write_text(json.dumps(lm_eval_results("Qwen/Qwen3-14B", 0.602, acp_tasks=5)))
    row, notes = load_lm_eval(tmp_path)
    assert row.model == "Qwen/Qwen3-14B"
    assert row.scores["math500"] == pytest.approx(60.2)
    assert row.scores["gpqa_diamond"] == pytest.approx(42.63)  # the flexible-extract filter, as the authors
    assert row.scores["headqa"] == pytest.approx(37.6)
    assert row.scores["coqa"] == pytest.approx(10.0)
    assert row.scores["ifeval"] == pytest.approx(69.2)  # strict instruction level
    assert row.scores["mctaco"] == pytest.approx(67.7)
    assert row.scores["halueval"] == pytest.approx(36.0)  # mean of the three tasks
    assert "acpbench" not in row.scores  # 5 of 7 subtasks is another benchmark: left out, and said so
    joined = "\n".join(notes)
    for missing in ("aime24", "aime25", "olympiadbench", "livecodebench", "acpbench: only 5 of 7"):
        assert missing in joined


def test_lm_eval_base_and_tuned_give_a_ti(tmp_path, cli):
    base, tuned = tmp_path / "base.json", tmp_path / "tuned.json"
    base_data = lm_eval_results("org/base", 0.40)
    base_data["results"]["aime24"] = {"alias": "aime24", "exact_match,none": 0.1}
    base.write_text(json.dumps(base_data))
    data = lm_eval_results("org/tuned", 0.70)
    data["results"]["coqa"]["f1,none"] = 0.05
    # Two math benchmarks with unequal gains: with one tuned model and a single gain per group, σ would be 0.
    data["results"]["aime24"] = {"alias": "aime24", "exact_match,none": 0.2}
    tuned.write_text(json.dumps(data))
    code, out, err = cli("ti", base, tuned, "--base", base, "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["model"] == "org/tuned" and row["base"] == "org/base"
    assert row["TI_other"] == 0.0 and row["TI_non"] < 0
    assert "aime25: no task" in err


def test_lm_eval_input_without_base_is_an_error(tmp_path, cli):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(lm_eval_results("org/m", 0.4)))
    code, _, err = cli("ti", path)
    assert code == 2 and "--base" in err
    path.write_text("{not json")
    code, _, err = cli("ti", path, "--base", "x")
    assert code == 2 and "not valid JSON" in err
    path.write_text(json.dumps({"foo": 1}))
    code, _, err = cli("ti", path, "--base", "x")
    assert code == 2 and "not an lm-evaluation-harness results file" in err


def make_run(tmp_path, name, grades: dict[str, list[float]], weights=None) -> RunDir:
    run = RunDir(tmp_path / name)
    run.start(
        new_manifest(
            name,
            sampling={"temperature": 0.0},
            seed=0,
            benchmarks={b: {"version": "1", "grader_version": "1"} for b in grades},
        )
    )
    for bench, values in grades.items():
        with run.writer(bench) as w:
            for i, g in enumerate(values):
                weight = (weights or {}).get(bench, [1.0] * len(values))[i]
                w.write(Record(f"{bench}-{i}", 0, prompt="q", response="a", grade=g, weight=weight))
    return run


def test_run_dir_scores_come_from_records_with_weights(tmp_path):
    run = make_run(tmp_path, "m", {"math500": [1, 0, 1, 1], "ifeval": [1.0, 0.5]}, weights={"ifeval": [1.0, 2.0]})
    row, notes = load_run_dir(run.path)
    assert notes == []
    assert row.model == "m"
    assert row.scores["math500"] == 75.0
    assert row.scores["ifeval"] == pytest.approx(100 * (1 * 1 + 0.5 * 2) / 3)  # ratio metric: 2 of 3 instructions
    assert set(row.docs) == {"math500", "ifeval"}


def test_run_dirs_give_ti_with_bootstrap_ci(tmp_path, cli):
    import numpy as np

    rng = np.random.default_rng(0)
    benches = {
        "math500": (0.3, 0.6),
        "aime24": (0.1, 0.3),
        "headqa": (0.4, 0.45),
        "acpbench": (0.2, 0.3),
        "coqa": (0.5, 0.3),
        "ifeval": (0.6, 0.5),
    }
    n = 300
    base = make_run(tmp_path, "base", {b: list((rng.random(n) < p0).astype(float)) for b, (p0, _) in benches.items()})
    tuned = make_run(tmp_path, "tuned", {b: list((rng.random(n) < p1).astype(float)) for b, (_, p1) in benches.items()})
    code, out, err = cli("ti", base.path, tuned.path, "--base", base.path, "--json", "--bootstrap", "200")
    assert code == 0, err
    (row,) = json.loads(out)
    lo, hi = row["TI_non_ci"]
    assert lo < row["TI_non"] < hi and row["TI_non"] < 0
    code, out, _ = cli("ti", base.path, tuned.path, "--base", "base")
    assert code == 0 and "TI_other CI" in out


def test_inputs_can_mix_tables_and_runs(tmp_path):
    run = make_run(tmp_path, "tuned", {"math500": [1, 1], "headqa": [1, 0], "coqa": [0, 0]})
    table = write(tmp_path, ["model,base,math500,headqa,coqa", "B,,40,40,40"])
    rows, _ = load_inputs([table, run.path], base="B")
    assert {r.model: r.base for r in rows} == {"B": None, "tuned": "B"}
    with pytest.raises(DataError, match="neither one of the inputs"):
        load_inputs([table, run.path], base="nobody")


def write_samples(folder, task, metric, per_doc, filt="none", stamp="2025-07-01T10-00-00"):
    """A `samples_<task>_<stamp>.jsonl` as lm-eval's --log_samples writes it (abridged doc and arguments)."""
    with open(folder / f"samples_{task}_{stamp}.jsonl", "w") as f:
        for i, value in enumerate(per_doc):
            for this_filter in dict.fromkeys([filt, "strict-match"]):  # other filters' lines must be ignored
                line = {
                    "doc_id": i,
                    "doc": {"question": f"q{i}"},
                    "target": "A",
                    "arguments": [["prompt", {}]],
                    "resps": [["..."]],
                    "filtered_resps": ["A"],
                    "filter": this_filter,
                    "metrics": [metric],
                    "doc_hash": "h",
                    "prompt_hash": "h",
                    "target_hash": "h",
                    metric: value if this_filter == filt else 0.0,
                }
                f.write(json.dumps(line) + "\n")


def test_lm_eval_samples_give_per_document_grades(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    data = lm_eval_results("org/m", 0.0)
    math = (rng.random(500) < 0.6).astype(float)
    data["results"]["hendrycks_math_500"]["exact_match,none"] = math.mean()
    write_samples(tmp_path, "hendrycks_math_500", "exact_match", list(math))
    inst = [[True, False, True], [True], [False, False]]  # 3 of 6 instructions followed
    data["results"]["ifeval"]["inst_level_strict_acc,none"] = 0.5
    write_samples(tmp_path, "ifeval", "inst_level_strict_acc", inst)
    halu = {"halueval_qa": [1, 1, 0, 0], "halueval_dialogue": [1, 0], "halueval_summarization": [1, 1, 1, 0, 0, 0]}
    for task, values in halu.items():
        data["results"][task]["exact_match,custom-extract"] = sum(values) / len(values)
        write_samples(tmp_path, task, "exact_match", values, filt="custom-extract")
    write_samples(tmp_path, "mc_taco", "acc", [1.0, 0.0])  # 50 %, but the results say 67.7 %: no CI from it
    (tmp_path / "results_2025-07-01T10-00-00.json").write_text(json.dumps(data))

    row, notes = load_lm_eval(tmp_path)
    assert row.docs["math500"].score() == pytest.approx(row.scores["math500"]) and len(row.docs["math500"].ids) == 500
    assert row.docs["ifeval"].weights.tolist() == [3, 1, 2] and row.scores["ifeval"] == pytest.approx(50.0)
    assert row.scores["halueval"] == pytest.approx(100 * (0.5 + 0.5 + 0.5) / 3)
    assert row.docs["halueval"].score() == pytest.approx(row.scores["halueval"])
    assert "mctaco" not in row.docs and any("mctaco: samples files give 50.0000" in n for n in notes)
    assert "coqa" not in row.docs  # no samples file: the aggregate alone


def test_lm_eval_malformed_samples_line_is_named(tmp_path):
    (tmp_path / "results_x.json").write_text(json.dumps(lm_eval_results("org/m", 0.5)))
    (tmp_path / "samples_coqa_x.jsonl").write_text('{"doc_id": 0, "filter": "none"}\n')
    with pytest.raises(DataError, match=r"samples_coqa_x\.jsonl:1: not an lm-eval sample with 'f1'"):
        load_lm_eval(tmp_path)


def test_incomplete_benchmarks_are_left_out_of_run_dirs(tmp_path):
    run = make_run(tmp_path, "m", {"math500": [1, 0], "halueval": [1, 1]})
    run.write_scores({"benchmarks": {"halueval": {"score": 100.0, "complete": False, "tasks": ["qa"]}}})
    row, notes = load_run_dir(run.path)
    assert "halueval" not in row.scores and "halueval" not in row.docs and row.scores["math500"] == 50.0
    assert notes == ["halueval is incomplete in this run (['qa']); left out"]
