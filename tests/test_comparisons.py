"""The comparisons a study computes once (rtransfer.comparisons): with its own [ti] settings, from the same document
draws as its TI table, written to comparisons.json and read back unchanged; one percentile interval for every CI.

The rows are per-document grades of a base and four tuned models on the lab's six benchmarks (two per group), drawn
once from a fixed generator: an on-policy arm with two seeds and an off-policy arm that gains math, a survey-style
RL model, and a checkpoint of one arm.
"""

import json
from dataclasses import replace

import numpy as np
import pytest

from rtransfer.comparisons import (
    QUANTITIES,
    Arm,
    Comparisons,
    Settings,
    arm_of,
    arm_pairs,
    arms_of,
    compare,
    ti_table,
)
from rtransfer.errors import DataError
from rtransfer.specs import ModelRef
from rtransfer.train.methods import policy_of
from rtransfer.transfer import DocGrades, ModelScores, percentile_interval

BENCHMARKS = ("lab_arith", "lab_lineq", "lab_order", "lab_trace", "lab_format", "lab_story")
DOCS = 60
# Chance of a correct answer per benchmark (math, math, other, other, non, non).
SKILL = {
    "base": (0.30, 0.35, 0.50, 0.45, 0.60, 0.55),
    "on-s0": (0.55, 0.60, 0.58, 0.50, 0.62, 0.57),
    "on-s1": (0.50, 0.58, 0.55, 0.52, 0.61, 0.56),
    "off": (0.60, 0.62, 0.45, 0.40, 0.50, 0.45),
    "on-s0@5": (0.40, 0.45, 0.52, 0.46, 0.60, 0.55),
    "dip": (0.40, 0.45, 0.20, 0.20, 0.25, 0.25),  # a checkpoint that lost most of its other and non-reasoning
}


def grades(model: str, seed: int) -> ModelScores:
    rng = np.random.default_rng(seed)
    docs = {}
    for bench, p in zip(BENCHMARKS, SKILL[model], strict=True):
        values = (rng.random(DOCS) < p).astype(float)
        docs[bench] = DocGrades([f"{bench}-{i}" for i in range(DOCS)], values, np.ones(DOCS))
    return ModelScores(model, None, {b: d.score() for b, d in docs.items()}, docs=docs)


@pytest.fixture(scope="module")
def rows() -> list[ModelScores]:
    out = []
    for i, (model, base, method) in enumerate(
        (("base", None, ""), ("on-s0", "base", "grpo"), ("on-s1", "base", "grpo"), ("off", "base", "sft"))
    ):
        row = grades(model, i)
        row.base, row.method = base, method
        out.append(row)
    return out


ARMS = {"on": Arm(["on-s0", "on-s1"], "grpo", "on"), "off": Arm(["off"], "sft", "off")}


def compared(rows, **settings) -> tuple[Comparisons, dict[str, dict]]:
    s = Settings(**({"bootstrap": 300} | settings))
    ti = [r.as_dict() for r in ti_table(rows, s)]
    return compare(rows, ti, ARMS, s), {r["model"]: r for r in ti}


def test_percentile_interval_drops_nans_and_is_none_without_a_finite_value():
    values = np.array([np.nan, *range(101), np.inf])
    assert percentile_interval(values, 0.9) == pytest.approx((5.0, 95.0))  # (1 − 0.9) / 2 is not exactly 0.05
    assert percentile_interval(list(range(101)), 0.5) == (25.0, 75.0)  # any sequence
    assert percentile_interval(np.array([np.nan, np.nan]), 0.95) is None
    assert percentile_interval(np.array([]), 0.95) is None


def test_the_default_settings_are_the_studys_defaults():
    from rtransfer.study.config import StudyConfig

    assert StudyConfig().ti == Settings()  # a report of plain run dirs computes as a default study
    with pytest.raises(DataError, match="unknown settings bootstraps"):
        Settings.from_dict({"bootstraps": 10})
    with pytest.raises(DataError, match="index 'v3'"):
        Settings.from_dict({"index": "v3"})


def test_the_resampling_draws_the_ti_tables_documents_at_the_studys_confidence(rows):
    from rtransfer.comparisons import Resampled

    for index, confidence in (("v2", 0.95), ("v1", 0.8)):
        _, ti = compared(rows, index=index, confidence=confidence, seed=3)
        res = Resampled(rows, 300, 3, confidence, index=index)
        for model in ("on-s0", "on-s1", "off"):
            for g in ("math", "other", "non"):  # the same replicates as transferability's: the same CIs
                assert res.estimate(res.values[model][f"Δ{g}"]).ci == tuple(ti[model]["change_ci"][g])
    narrow, _ = compared(rows, confidence=0.8, seed=3)
    wide, _ = compared(rows, confidence=0.95, seed=3)
    for n, w in zip(narrow.differences, wide.differences, strict=True):
        assert n.estimate.value == w.estimate.value or not n.defined
        if n.estimate.ci:
            assert w.estimate.ci[0] <= n.estimate.ci[0] <= n.estimate.ci[1] <= w.estimate.ci[1]


def test_arm_differences_use_the_studys_index(rows):
    for index in ("v1", "v2"):
        c, ti = compared(rows, index=index)
        assert c.settings.index == index
        by = {(d.a, d.b, d.quantity): d for d in c.differences}
        for g in ("other", "non"):
            on = np.mean([ti[m][f"TI_{g}"] for m in ("on-s0", "on-s1")])
            assert by["on", "off", f"TI_{g}"].estimate.value == pytest.approx(on - ti["off"][f"TI_{g}"])
        for g in ("math", "other", "non"):
            on = np.mean([ti[m]["change"][g] for m in ("on-s0", "on-s1")])
            assert by["on", "off", f"Δ{g}"].estimate.value == pytest.approx(on - ti["off"]["change"][g])
    v1, _ = compared(rows, index="v1")
    v2, _ = compared(rows, index="v2")
    assert v1.differences[3].estimate.value != v2.differences[3].estimate.value  # TI_other: another index


def test_comparisons_json_reads_back_unchanged(rows):
    checkpoint = grades("on-s0@5", 9)
    checkpoint.base, checkpoint.method = "base", "grpo"
    final = {r.model: r for r in rows}["on-s0"]
    s = Settings(index="v1", bootstrap=200, confidence=0.9, seed=5)
    ti = [r.as_dict() for r in ti_table(rows, s)]
    c = compare(rows, ti, ARMS, s, steps={"on-s0": {5: checkpoint, 10: final}}, notes=["a note"])
    text = json.dumps(c.as_dict(), allow_nan=False)  # NaN is written as null: valid JSON
    again = Comparisons.from_dict(json.loads(text))
    assert again.as_dict() == c.as_dict()
    data = json.loads(text)
    assert data["settings"] == {"index": "v1", "sigma": "pooled", "bootstrap": 200, "confidence": 0.9, "seed": 5}
    assert data["arms"]["on"] == {"models": ["on-s0", "on-s1"], "method": "grpo", "policy": "on"}
    points = data["steps"]["on-s0"]
    assert [p["step"] for p in points] == [5, 10] and all(set(p["values"]) == set(QUANTITIES) for p in points)
    spread = {s["quantity"]: s for s in data["spread"]}  # the TI table's rows: the tuned models, in order
    assert spread["Δmath"]["values"] == [ti[0]["change"]["math"], ti[1]["change"]["math"]]
    with pytest.raises(DataError, match="version"):
        Comparisons.from_dict({**data, "version": 0})


def test_without_documents_or_replicates_nothing_carries_a_ci(rows):
    c, _ = compared(rows, bootstrap=0)
    assert not c.resampled
    assert all(d.estimate.ci is None for d in c.differences)
    assert all(ch.estimate.ci is None for by in c.changes.values() for ch in by.values())


def test_on_policy_arms_are_compared_with_off_policy_ones_first():
    policies = {"sft": "off", "a": None, "grpo": "on", "onpolicy": "on"}
    assert arm_pairs(list(policies), policies) == [
        ("grpo", "sft"),
        ("onpolicy", "sft"),
        ("sft", "a"),
        ("a", "grpo"),
        ("a", "onpolicy"),
        ("grpo", "onpolicy"),
    ]


def test_arms_and_their_policies_come_from_the_models_and_the_method_registry():
    models = [
        ModelRef("base", "b", "base"),
        ModelRef("grpo-s0", "m/grpo-s0", "arm", "base", "grpo", "grpo", 0),
        ModelRef("grpo-s1", "m/grpo-s1", "arm", "base", "grpo", "grpo", 1),
        ModelRef("sft", "m/sft", "arm", "base", "sft", "sft", 0, "no-think"),
        ModelRef("Open-RS", "hub/rs", "survey", "base", method="RL"),
        ModelRef("Qwen3-think", "hub/q", "reference", chat_thinking=True),
    ]
    arms = arms_of(models, policy_of)
    assert {a: (arm.models, arm.method, arm.policy) for a, arm in arms.items()} == {
        "grpo": (["grpo-s0", "grpo-s1"], "grpo", "on"),
        "sft": (["sft"], "sft", "off"),
        "Open-RS": (["Open-RS"], "RL", "on"),  # a survey's RL is on-policy; its arm is itself
    }
    assert [arm_of(m) for m in models] == ["base", "grpo", "grpo", "sft", "Open-RS", "Qwen3-think"]


def checkpoint_of(skill: str, seed: int) -> ModelScores:
    row = grades(skill, seed)
    row.base, row.method = "base", "grpo"
    return row


def test_a_dip_in_transfer_and_its_way_back_are_measured_paired(rows):
    final = {r.model: r for r in rows}["on-s0"]
    s = Settings(bootstrap=300)
    ti = [r.as_dict() for r in ti_table(rows, s)]
    c = compare(rows, ti, ARMS, s, steps={"on-s0": {5: checkpoint_of("dip", 11), 10: final}})
    assert [(d.model, d.quantity, d.step, d.last_step) for d in c.dips] == [
        ("on-s0", "Δother", 5, 10),
        ("on-s0", "Δnon", 5, 10),
    ]
    for d in c.dips:
        assert d.at == c.steps["on-s0"][5].values[d.quantity] and d.at.ci[1] < 0  # measurably below 0 there
        assert d.last == c.steps["on-s0"][10].values[d.quantity]
        assert d.recovery.value == pytest.approx(d.last.value - d.at.value)
        assert d.recovery.ci[0] > 0 and d.last.ci[1] >= 0 and d.verdict == "recovered"
    assert Comparisons.from_dict(json.loads(json.dumps(c.as_dict()))).dips == c.dips


def first(row: ModelScores, n: int) -> ModelScores:
    """`row` as an evaluation with --limit n would have scored it: the first n documents of each benchmark."""
    docs = {b: DocGrades(d.ids[:n], d.values[:n], d.weights[:n]) for b, d in row.docs.items()}
    return replace(row, docs=docs, scores={b: d.score() for b, d in docs.items()})


def test_checkpoints_on_fewer_documents_measure_every_point_on_those_and_the_report_says_so(rows):
    from rtransfer.report.sections import fewer_documents

    by_model = {r.model: r for r in rows}
    s = Settings(bootstrap=200)
    ti = [r.as_dict() for r in ti_table(rows, s)]
    c = compare(rows, ti, ARMS, s, steps={"on-s0": {5: first(checkpoint_of("dip", 11), 20), 10: by_model["on-s0"]}})
    assert c.documents == dict.fromkeys(BENCHMARKS, DOCS) and c.step_documents == dict.fromkeys(BENCHMARKS, 20)
    # The final point is the final model against its base on those 20 documents, not on all 60 (the TI table's).
    final, base = first(by_model["on-s0"], 20), first(by_model["base"], 20)
    want = 100 * np.mean([final.docs[b].values.mean() - base.docs[b].values.mean() for b in ("lab_order", "lab_trace")])
    assert c.steps["on-s0"][10].values["Δother"].value == pytest.approx(want)
    table = {r["model"]: r for r in ti}["on-s0"]["change"]["other"]
    assert c.steps["on-s0"][10].values["Δother"].value != pytest.approx(table)
    assert Comparisons.from_dict(json.loads(json.dumps(c.as_dict()))).step_documents == c.step_documents
    assert "first 20 documents of 6 benchmarks" in fewer_documents(c.step_documents, c.documents)
    assert fewer_documents(c.documents, c.documents) == ""


def test_no_dip_without_a_measurable_loss_and_no_recovery_without_a_measurable_way_back(rows):
    final = {r.model: r for r in rows}["on-s0"]
    s = Settings(bootstrap=300)
    ti = [r.as_dict() for r in ti_table(rows, s)]
    near = compare(rows, ti, ARMS, s, steps={"on-s0": {5: checkpoint_of("on-s0@5", 9), 10: final}})
    assert near.dips == []
    stuck = checkpoint_of("dip", 11)
    down = compare(rows, ti, ARMS, s, steps={"on-s0": {5: stuck, 10: replace(stuck, model="on-s0")}})
    assert {d.quantity: d.verdict for d in down.dips} == {"Δother": "did not recover", "Δnon": "did not recover"}
    assert compare(rows, ti, ARMS, Settings(bootstrap=0), steps={"on-s0": {5: stuck, 10: final}}).dips == []
