"""`rtransfer ti` never prints a number the data cannot support: runs compared on the documents they share, a σ
that rounding noise cannot pass for a spread, scores in the scale they claim, a row for every tuned model.

The run directories are real evaluations of the two models rtransfer ships (the lab's pre-trained model and the
lab base mid-trained from it) on the lab's benchmarks, two per group."""

import json
from importlib.resources import files
from pathlib import Path

import pytest

from rtransfer.benchmarks.registry import get_task
from rtransfer.engines.factory import EngineSpec, make_engine
from rtransfer.errors import RunMismatchError
from rtransfer.evaluate import EvalPlan, evaluate
from rtransfer.runs import RunDir

LAB = Path(str(files("rtransfer") / "data" / "lab"))
BENCHMARKS = ("lab_arith", "lab_lineq", "lab_order", "lab_trace", "lab_format", "lab_story")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The mid-trained lab base on 40 and on 20 documents per benchmark, the pre-trained model (here, its
    "tuned" model: any two models will do; labelled as a GRPO arm) on 20."""
    root = tmp_path_factory.mktemp("runs")
    tasks = [get_task(b) for b in BENCHMARKS]
    out = {}
    for label, model, limits in (("base", LAB / "base", (40, 20)), ("tuned", LAB / "pretrained", (20,))):
        engine = make_engine(EngineSpec(model=str(model), batch_size=16))
        for limit in limits:
            run = RunDir(root / f"{label}{limit}")
            tuned = label == "tuned"
            plan = EvalPlan(tasks, limit=limit).load()
            evaluate(engine, plan, run, name=label, base="base" if tuned else None, method="grpo" if tuned else None)
            out[f"{label}{limit}"] = run
    return out


def rounded(value):
    """JSON values with floats to 9 decimals: the same sums taken in another document order."""
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return round(value, 9) if isinstance(value, float) else value


def ti_json(cli, *argv) -> tuple[int, list[dict], str]:
    code, out, err = cli("ti", *argv, "--json", "--bootstrap", "200")
    return code, json.loads(out) if out.strip() else [], err


def test_runs_on_different_limits_are_compared_on_the_shared_documents(runs, cli):
    code, mixed, err = ti_json(cli, runs["base40"].path, runs["tuned20"].path, "--base", runs["base40"].path)
    assert code == 0, err
    code, same, _ = ti_json(cli, runs["base20"].path, runs["tuned20"].path, "--base", runs["base20"].path)
    assert code == 0
    (row,), (reference,) = mixed, same
    # The same TI, domain indexes, σ and CIs as when both models were evaluated on the same 20 documents.
    for key in ("TI_other", "TI_non", "DI_math", "DI_other", "DI_non", "sigma", "change", "TI_other_ci", "change_ci"):
        assert rounded(row[key]) == rounded(reference[key]), key
    assert row["n"] == {b: 20 for b in BENCHMARKS} == reference["n"]
    assert "lab_arith: compared on the 20 documents (20 samples) that every model answered" in err
    assert "(base: 40 documents, tuned: 20 documents)" in err
    assert row["notes"] and "notes" not in reference


def test_strict_refuses_runs_on_different_documents(runs, cli):
    code, out, err = cli("ti", runs["base40"].path, runs["tuned20"].path, "--base", runs["base40"].path, "--strict")
    assert code == 2 and not out
    assert "--strict: lab_arith was scored on different documents or samples (base: 40 documents, tuned: 20" in err
    assert len(err.strip().splitlines()) == 1


def test_eval_refuses_a_smaller_limit_into_a_run_that_holds_more(runs):
    run = runs["base40"]
    before = run.scores()
    engine = make_engine(EngineSpec(model=str(LAB / "base")))
    with pytest.raises(RunMismatchError, match=r"lab_arith's records hold 40 documents, 20 of them outside the 20"):
        evaluate(engine, EvalPlan([get_task("lab_arith")], limit=20).load(), run, name="base")
    assert run.scores() == before  # nothing rewritten: scores.json and the records still agree


def write(tmp_path, text: str, name="scores.csv") -> Path:
    path = tmp_path / name
    path.write_text(text.strip() + "\n")
    return path


# One tuned model; its two "other" gains are equal to one decimal (0.2 and 0.2, as floats 0.19999999999999574 and
# 0.1999999999999993), which once gave TI_other = 821,719,554 from a σ of 2e-15.
NEAR_EQUAL = """
model,base,MATH500,AIME24,HeadQA,GPQA-Diamond,CoQA,IFEval
B,,50.0,20.0,50.1,30.3,60.0,70.0
T,B,60.0,25.0,50.3,30.5,58.0,71.0
"""


def test_gains_equal_within_the_tables_decimal_have_no_sigma(tmp_path, cli):
    code, rows, _ = ti_json(cli, write(tmp_path, NEAR_EQUAL))
    assert code == 1  # no TI defined, and still one JSON row per tuned model
    (row,) = rows
    assert row["TI_other"] is None and row["TI_non"] is None  # an undefined row prints no TI at all
    assert "σ of the other group is" in row["error"] and "resolution (0.1 points)" in row["error"]
    assert "ways out: --index v1" in row["error"]
    # v1 needs no σ and gives the ratio of mean relative gains: (0.2/50.1 + 0.2/30.3)/2 over (10/50 + 5/20)/2.
    code, (v1,), _ = ti_json(cli, write(tmp_path, NEAR_EQUAL), "--index", "v1")
    assert code == 0
    assert v1["TI_other"] == pytest.approx(100 * (0.2 / 50.1 + 0.2 / 30.3) / (10 / 50 + 5 / 20), rel=1e-6)


def test_gains_one_step_apart_are_a_spread(tmp_path, cli):
    # 0.2 and 0.3: one decimal apart, a real (small) spread: the TI is defined and bounded by the data.
    table = NEAR_EQUAL.replace("30.5", "30.6")
    code, (row,), err = ti_json(cli, write(tmp_path, table))
    assert code == 0, err
    assert row["sigma"]["other"] == pytest.approx(0.05, abs=1e-9)
    assert abs(row["TI_other"]) < 1000


def test_fraction_tables_are_refused_or_converted(tmp_path, cli):
    points = write(tmp_path, NEAR_EQUAL.replace("30.5", "30.6"))
    fractions = "\n".join(
        ",".join(c if i < 2 or n == 0 else f"{float(c) / 100:.4f}" for i, c in enumerate(line.split(",")))
        for n, line in enumerate(points.read_text().splitlines())
    )
    path = write(tmp_path, fractions, "fractions.csv")
    code, out, err = cli("ti", path)
    assert code == 2 and not out
    assert "every score lies in 0–1, but scores are read in points (0–100); pass --scale 1" in err
    code, (converted,), _ = ti_json(cli, path, "--scale", "1")
    code_points, (reference,), _ = ti_json(cli, points)
    assert code == code_points == 0
    assert converted["TI_other"] == pytest.approx(reference["TI_other"], rel=1e-9)
    assert converted["TI_non"] == pytest.approx(reference["TI_non"], rel=1e-9)


def test_a_fraction_row_in_a_points_table_is_named(tmp_path, cli):
    table = NEAR_EQUAL + "T2,B,0.6,0.25,0.503,0.305,0.58,0.71\n"
    code, _, err = cli("ti", write(tmp_path, table))
    assert code == 2 and ":4: every score of 'T2' lies in 0–1 while the table is in points" in err


def test_a_model_that_lost_math_is_said_to_have_lost_it(tmp_path, cli):
    # Two equal math losses: σ_math is zero, but the first real cause is the loss.
    table = NEAR_EQUAL.replace("T,B,60.0,25.0", "T,B,45.0,15.0")
    code, (row,), _ = ti_json(cli, write(tmp_path, table))
    assert code == 1
    assert row["error"].startswith("the model lost math (DI_math < 0, math change -5 points)")


def test_one_tuned_model_with_one_benchmark_per_group_gets_a_row_and_the_ways_out(tmp_path, cli):
    table = "model,base,MATH500,HeadQA,IFEval\nB,,50.0,40.0,70.0\nT,B,60.0,41.0,69.0\n"
    code, rows, err = ti_json(cli, write(tmp_path, table))
    assert code == 1
    assert [r["model"] for r in rows] == ["T"] and rows[0]["TI_other"] is None
    assert rows[0]["change"] == {"math": 10.0, "other": 1.0, "non": -1.0}
    assert (
        "σ of the math group is taken over a single gain (zero by definition): its gains cannot be z-normalised"
        in rows[0]["error"]
    )
    assert "the TI is undefined for every model; the notes above say why and what to do" in err
    code, (v1,), _ = ti_json(cli, write(tmp_path, table), "--index", "v1")
    assert code == 0 and v1["TI_other"] == pytest.approx(100 * (1 / 40) / (10 / 50))
    code, out, _ = cli("ti", write(tmp_path, table))  # the terminal table is printed too
    assert code == 1 and "T" in out


def test_inputs_can_be_labelled_and_names_must_differ(runs, cli, tmp_path):
    base, tuned = runs["base20"].path, runs["tuned20"].path
    code, (row,), _ = ti_json(cli, f"b={base}", f"pre={tuned}", "--base", "b")
    assert code == 0 and (row["model"], row["base"]) == ("pre", "b")  # the run's own base "base" follows its label
    code, _, err = cli("ti", base, runs["base40"].path, tuned, "--base", base)
    assert code == 2 and "are both named 'base'; label them apart with NAME=PATH" in err
    manifest = json.loads((tuned / "manifest.json").read_text())
    selfish = tmp_path / "selfish"
    selfish.mkdir()
    (selfish / "manifest.json").write_text(json.dumps({**manifest, "name": "x", "base": "x"}))
    (selfish / "records").symlink_to(tuned / "records")
    code, _, err = cli("ti", base, selfish, "--base", base)
    assert code == 2 and "the run names itself ('x') as its base; give the base run with --base" in err


def test_a_report_of_run_directories_knows_their_methods(runs, tmp_path):
    from rtransfer.report.build import write_run_report

    write_run_report([runs["base40"].path, runs["tuned20"].path], str(runs["base40"].path), tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    # The run says it is a GRPO arm (eval --method): the finding misses only an off-policy arm to compare it with.
    assert "the study has no off-policy SFT arm" in text and "no on-policy" not in text
    assert "lab_arith: compared on the 20 documents" in text  # the report says what the TI compared


def test_runs_that_loaded_other_contents_under_the_same_ids_are_named(runs, cli, tmp_path):
    import shutil

    other = tmp_path / "tuned-other-data"
    shutil.copytree(runs["tuned20"].path, other)
    manifest = json.loads((other / "manifest.json").read_text())
    assert manifest["provenance"]["lab_order"]["docs"] == runs["base20"].manifest()["provenance"]["lab_order"]["docs"]
    manifest["provenance"]["lab_order"]["docs"] = "0123456789abcdef"  # as if made from another data folder
    (other / "manifest.json").write_text(json.dumps(manifest))
    base = runs["base20"].path
    code, _, err = ti_json(cli, base, other, "--base", base)
    assert code == 0 and "lab_order: the runs loaded documents with different contents under the same ids" in err
    assert "lab_arith: the runs loaded" not in err  # the benchmarks whose contents agree are not named
    code, _, err = cli("ti", base, other, "--base", base, "--strict")
    assert code == 2 and "--strict: lab_order was loaded with different contents (base: " in err


def test_a_groups_resolution_is_its_finest_step():
    import numpy as np

    from rtransfer.transfer import DocGrades, ModelScores, transferability

    def run(model, base, aime_right, math_right, other):
        aime = DocGrades(
            [f"a{i}" for i in range(30)], np.array([i < aime_right for i in range(30)], float), np.ones(30)
        )
        math = DocGrades(
            [f"m{i}" for i in range(500)], np.array([i < math_right for i in range(500)], float), np.ones(500)
        )
        docs = {"aime24": aime, "math500": math}
        scores = {b: d.score() for b, d in docs.items()} | other
        return ModelScores(model, base, scores, docs=docs)

    base = run("B", None, 3, 200, {"headqa": 40.0, "gpqa_diamond": 30.0, "coqa": 50.0, "ifeval": 60.0})
    # AIME +1 problem (+3.33 points on a 3.33 grid), MATH-500 +16 (+3.2 on a 0.2 grid): σ_math 0.067, a spread that
    # MATH-500's grid resolves (floor 0.05); on AIME's grid alone (floor 0.83) it would read as equal gains.
    tuned = run("T", "B", 4, 216, {"headqa": 41.0, "gpqa_diamond": 33.0, "coqa": 49.0, "ifeval": 58.0})
    (result,) = transferability([base, tuned])
    assert result.sigma["math"] == pytest.approx((10 / 3 - 3.2) / 2)
    assert result.undefined is None and np.isfinite(result.ti["other"])
