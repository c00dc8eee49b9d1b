"""Transferability Index: hand-computed cases, σ choices, undefined cases, the paper's table, bootstrap."""

import csv
import json
import math

import numpy as np
import pytest

from rtransfer.transfer import DocGrades, ModelScores, resampled_scores, transferability

GROUP = {"math500": "math", "aime24": "math", "headqa": "other", "acpbench": "other", "coqa": "non", "ifeval": "non"}
BASE = {"math500": 50, "aime24": 20, "headqa": 40, "acpbench": 30, "coqa": 60, "ifeval": 70}
T1 = {"math500": 60, "aime24": 32, "headqa": 45, "acpbench": 25, "coqa": 50, "ifeval": 70}
T2 = {"math500": 56, "aime24": 22, "headqa": 44, "acpbench": 37, "coqa": 64, "ifeval": 78}


def table() -> list[ModelScores]:
    return [
        ModelScores("B", None, dict(BASE)),
        ModelScores("T1", "B", dict(T1), method="SFT"),
        ModelScores("T2", "B", dict(T2), method="RL"),
    ]


def reference_v2(tuned: dict, base: dict, sigma: dict) -> dict:
    """The v2 formula written out term by term, one scalar at a time."""
    di = {}
    for g in ("math", "other", "non"):
        benches = [b for b in GROUP if GROUP[b] == g]
        total_w = sum(100 - base[b] for b in benches)
        di[g] = 0.0
        for b in benches:
            delta = (tuned[b] - base[b]) / sigma[g]
            s = math.copysign(math.sqrt(abs(delta)), delta) if delta else 0.0
            di[g] += (100 - base[b]) / total_w * s
    return {"other": di["other"] / di["math"] * 100, "non": di["non"] / di["math"] * 100}


def population_std(values) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def test_v1_matches_hand_computation():
    t1 = {r.model: r for r in transferability(table(), index="v1")}["T1"]
    # ΔR_math = (10/50 + 12/20)/2 = 0.4; ΔR_other = (5/40 − 5/30)/2; ΔR_non = (−10/60 + 0)/2
    assert t1.domain["math"] == pytest.approx(0.4)
    assert t1.ti["other"] == pytest.approx((5 / 40 - 5 / 30) / 2 / 0.4 * 100)
    assert t1.ti["non"] == pytest.approx(-10 / 60 / 2 / 0.4 * 100)
    assert t1.ti["non"] == pytest.approx(-20.8333, abs=1e-3)


def test_v2_pooled_sigma_matches_hand_computation():
    results = {r.model: r for r in transferability(table(), index="v2", sigma="pooled")}
    sigma = {
        g: population_std([t[b] - BASE[b] for t in (T1, T2) for b in GROUP if GROUP[b] == g])
        for g in ("math", "other", "non")
    }
    assert sigma["math"] == pytest.approx(population_std([10, 12, 6, 2]))
    for name, tuned in (("T1", T1), ("T2", T2)):
        expected = reference_v2(tuned, BASE, sigma)
        assert results[name].ti["other"] == pytest.approx(expected["other"])
        assert results[name].ti["non"] == pytest.approx(expected["non"])
        assert results[name].sigma == pytest.approx(sigma)


def test_v2_per_model_sigma_differs_from_pooled():
    pooled = {r.model: r for r in transferability(table(), sigma="pooled")}
    per_model = {r.model: r for r in transferability(table(), sigma="model")}
    for name, tuned in (("T1", T1), ("T2", T2)):
        sigma = {g: population_std([tuned[b] - BASE[b] for b in GROUP if GROUP[b] == g]) for g in GROUP.values()}
        expected = reference_v2(tuned, BASE, sigma)
        assert per_model[name].ti["other"] == pytest.approx(expected["other"])
        assert per_model[name].ti["non"] == pytest.approx(expected["non"])
        assert per_model[name].ti["other"] != pytest.approx(pooled[name].ti["other"])


def test_v1_zero_base_score_is_undefined_with_reason():
    rows = table()
    rows[0].scores["aime24"] = 0.0
    t1 = {r.model: r for r in transferability(rows, index="v1")}["T1"]
    assert math.isnan(t1.ti["other"]) and "scores 0 on aime24" in t1.undefined
    assert t1.as_dict()["TI_other"] is None and "aime24" in t1.as_dict()["error"]


def test_zero_math_gain_is_undefined():
    rows = table()
    rows[1].scores.update(math500=50, aime24=20)  # T1 gains nothing on math
    t1 = {r.model: r for r in transferability(rows, index="v2")}["T1"]
    assert "DI_math is zero" in t1.undefined
    t1 = {r.model: r for r in transferability(rows, index="v1")}["T1"]
    assert "ΔR_math is zero" in t1.undefined


def test_zero_sigma_with_nonzero_gain_is_undefined():
    rows = table()
    rows[1].scores.update(math500=60, aime24=30)  # T1's two math gains are equal: its own σ_math is 0
    t1 = {r.model: r for r in transferability(rows, sigma="model")}["T1"]
    assert "σ of the math group is zero" in t1.undefined
    assert {r.model: r for r in transferability(rows, sigma="pooled")}["T1"].undefined is None


def test_missing_group_is_undefined_and_missing_benchmark_is_skipped():
    rows = table()
    del rows[1].scores["coqa"]  # T1 keeps ifeval in the non group
    t1 = {r.model: r for r in transferability(rows)}["T1"]
    assert t1.undefined is None and t1.benchmarks["non"] == ["ifeval"]
    del rows[1].scores["ifeval"]
    t1 = {r.model: r for r in transferability(rows)}["T1"]
    assert "no non benchmark" in t1.undefined


def _reported(shared):
    with open(shared / "paper" / "ti_reported.csv") as f:
        return {r["model"]: (float(r["TI_other"]), float(r["TI_non"])) for r in csv.DictReader(f)}


def test_paper_table_reproduced_from_shared_scores(cli, shared):
    code, out, _ = cli("ti", "--scores", shared / "paper" / "scores.csv", "--json")
    assert code == 0
    rows = json.loads(out)
    reported = _reported(shared)
    assert {r["model"] for r in rows} == set(reported)
    close = {
        r["model"]
        for r in rows
        if all(abs(r[f"TI_{g}"] - reported[r["model"]][i]) <= 1.5 for i, g in enumerate(("other", "non")))
    }
    assert len(close) >= 14
    from rtransfer.paper import KNOWN_MISMATCHES

    assert set(reported) - close == set(KNOWN_MISMATCHES)


def test_paper_flag_uses_packaged_copy_of_the_same_numbers(cli, shared):
    _, from_shared, _ = cli("ti", "--scores", shared / "paper" / "scores.csv", "--json")
    code, packaged, _ = cli("ti", "--paper", "--json")
    assert code == 0
    packaged_rows = json.loads(packaged)
    assert [r["TI_other"] for r in packaged_rows] == [r["TI_other"] for r in json.loads(from_shared)]
    reported = _reported(shared)
    for r in packaged_rows:
        assert (r["reported_TI_other"], r["reported_TI_non"]) == reported[r["model"]]
    assert sum(r["reproduced"] for r in packaged_rows) == 14


def test_paper_terminal_table_shows_reported_and_recomputed(cli):
    code, out, _ = cli("ti", "--paper")
    assert code == 0
    assert "paper TI_other" in out and "UniReason-Qwen3-14B (RL)" in out
    assert "14 of 18 reported rows reproduced within ±1.5" in out


def grades(values, n_docs=None, prefix="d") -> DocGrades:
    values = np.asarray(values, dtype=float)
    return DocGrades([f"{prefix}{i}" for i in range(len(values))], values, np.ones(len(values)))


def test_resampling_is_paired_across_models():
    rng = np.random.default_rng(0)
    same = rng.integers(0, 2, 200).astype(float)
    rows = [ModelScores("B", None, {"math500": 0.0}), ModelScores("T", "B", {"math500": 0.0})]
    for r in rows:
        r.docs["math500"] = grades(same)
        r.scores["math500"] = r.docs["math500"].score()
    sample = resampled_scores(rows, ["math500"], 300, np.random.default_rng(1))
    assert np.array_equal(sample[:, 0, 0], sample[:, 1, 0])  # same draw for both: zero gain every time
    assert sample[:, 0, 0].std() > 0
    assert sample[:, 0, 0].mean() == pytest.approx(rows[0].scores["math500"], abs=1.0)


def _rows_with_docs(n_docs: int) -> list[ModelScores]:
    rng = np.random.default_rng(7)
    rows = table()
    for r in rows:
        for bench, score in r.scores.items():
            p = score / 100
            values = (rng.random(n_docs) < p).astype(float)
            r.docs[bench] = DocGrades([f"{bench}-{i}" for i in range(n_docs)], values, np.ones(n_docs))
            r.scores[bench] = r.docs[bench].score()
    return rows


def test_bootstrap_ci_brackets_the_estimate_and_is_reproducible():
    rows = _rows_with_docs(400)
    first = transferability(rows, bootstrap=300, seed=3)
    again = transferability(rows, bootstrap=300, seed=3)
    for r, r2 in zip(first, again, strict=True):
        assert r.ci == r2.ci
        for g in ("other", "non"):
            lo, hi = r.ci[g]
            assert lo < hi
            assert lo <= r.ti[g] <= hi


def test_bootstrap_ci_narrows_with_more_documents():
    def width(n):
        t1 = transferability(_rows_with_docs(n), bootstrap=300, seed=0)[0]
        return t1.ci["non"][1] - t1.ci["non"][0]

    assert width(2000) < width(100)


def test_no_ci_without_records_or_with_bootstrap_zero():
    assert transferability(table(), bootstrap=500)[0].ci == {}
    assert transferability(_rows_with_docs(50), bootstrap=0)[0].ci == {}


def test_a_math_loss_is_undefined_not_a_flipped_sign():
    rows = table()
    rows[1].scores.update(math500=45, aime24=15, headqa=30, coqa=40)  # T1 loses math and loses more elsewhere
    for index in ("v1", "v2"):
        t1 = {r.model: r for r in transferability(rows, index=index)}["T1"]
        assert "the model lost math" in t1.undefined and math.isnan(t1.ti["other"]) and math.isnan(t1.ti["non"])
        assert t1.as_dict()["TI_other"] is None and t1.change["math"] == pytest.approx(-5.0)


def test_group_changes_are_shown_beside_the_ti():
    t1 = {r.model: r for r in transferability(table())}["T1"]
    assert t1.change == pytest.approx({"math": 11.0, "other": 0.0, "non": -5.0})  # mean score change, points
    assert t1.as_dict()["change"] == pytest.approx({"math": 11.0, "other": 0.0, "non": -5.0})
    rows = _rows_with_docs(400)
    t1 = transferability(rows, bootstrap=300, seed=0)[0]
    for g in ("math", "other", "non"):
        lo, hi = t1.change_ci[g]
        assert lo <= t1.change[g] <= hi and lo < hi
        assert t1.domain_ci[g][0] <= t1.domain[g] <= t1.domain_ci[g][1]


def test_a_math_gain_within_noise_is_flagged_unstable():
    def rows(n_docs: int, math_gain: float) -> list[ModelScores]:
        rng = np.random.default_rng(1)
        out = []
        for name, base, shift in (("B", None, 0.0), ("T", "B", 1.0)):
            row = ModelScores(name, base, {})
            for bench, score in BASE.items():
                p = (score + (math_gain if GROUP[bench] == "math" else 3.0) * shift) / 100
                row.docs[bench] = grades((rng.random(n_docs) < p).astype(float), prefix=f"{bench}-")
                row.scores[bench] = row.docs[bench].score()
            out.append(row)
        return out

    noisy = transferability(rows(60, 1.0), sigma="model", bootstrap=400, seed=0)[0]
    assert noisy.undefined is None and "CI" in noisy.unstable and "includes 0" in noisy.unstable
    assert noisy.domain_ci["math"][0] <= 0 <= noisy.domain_ci["math"][1] and noisy.as_dict()["unstable"]
    clear = transferability(rows(2000, 25.0), sigma="model", bootstrap=400, seed=0)[0]
    assert clear.unstable is None and clear.domain_ci["math"][0] > 0


def test_a_ti_row_read_back_from_json_is_the_same_result(shared):
    """TIResult.from_dict inverts as_dict (a study prints its TI table from ti.json, not from a second bootstrap),
    NaN included: undefined rows and missing CIs survive the JSON round trip."""
    from rtransfer.paper import paper_scores
    from rtransfer.transfer import TIResult, transferability

    for r in transferability(paper_scores()):
        row = json.loads(json.dumps(r.as_dict()))
        assert TIResult.from_dict(row).as_dict() == r.as_dict()
