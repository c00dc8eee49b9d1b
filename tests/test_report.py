"""The report: every section present, every number equal to the study's files, a self-contained HTML file, arm
differences that behave as differences, and the finding's rules on hand-made inputs."""

import base64
import csv
import json
import re

import numpy as np
import pytest

from rtransfer.comparisons import QUANTITIES, Difference, Estimate, Resampled
from rtransfer.report.finding import direction, finding, raised_math
from rtransfer.report.tables import fmt, fmt_ci

SECTIONS = [
    "summary",
    "scores",
    "ti",
    "ti-scatter",
    "changes",
    "arms",
    "steps",
    "drift-law",
    "training",
    "latent",
    "tokens",
    "examples",
    "manifest",
]


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    from study_fixture import build_study

    return build_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="session")
def report(study):
    from rtransfer.report.build import write_report

    return write_report(study)


def csv_rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table of a Markdown file as rows of cells (header first, the --- line left out)."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if not all(c and set(c) <= {"-"} for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def check_sections(report: dict) -> None:
    """Every section in report.html and report.md (shared with the study's end-to-end test)."""
    html, md = report["html"].read_text(), report["md"].read_text()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html, sid
        assert f'<a id="{sid}"></a>' in md, sid


def test_every_section_is_present_in_both_formats(report):
    check_sections(report)
    html = report["html"].read_text()
    assert "No checkpoints were evaluated" not in html  # the fixture evaluated one
    assert '<figure id="figure-ti_steps">' in html and '<figure id="figure-training">' in html
    for figure in ("benchmark_changes", "arm_differences", "latent_onpolicy-s0", "tokens_onpolicy-s0"):
        assert f'<figure id="figure-{figure}">' in html, figure
    assert '<figure id="figure-ti_scatter">' in html or "No model has a defined TI" in html


def test_scores_and_ti_tables_are_the_study_files(study, report):
    check_numbers(study, report)


def check_numbers(study, report: dict) -> None:
    """Every number of the scores and TI tables equals scores.json / ti.json, and report.md shows exactly the CSV
    tables' cells (shared with the study's end-to-end test)."""
    scores = json.loads((study / "scores.json").read_text())
    table = {r["model"]: r for r in csv_rows(study / "tables" / "scores.csv")}
    headers = list(next(iter(table.values())))
    for s in scores:
        column = next(h for h in headers if h.split(": ")[-1].lower().replace("-", "_") == s["benchmark"])
        assert table[s["model"]][column] == f"{fmt(s['score'])} {fmt_ci((s['ci_low'], s['ci_high']))}"
    assert len(table) == len({s["model"] for s in scores})
    ti = json.loads((study / "ti.json").read_text())
    rows = {r["model"]: r for r in csv_rows(study / "tables" / "ti.csv")}
    assert set(rows) == {r["model"] for r in ti}
    for r in ti:
        row = rows[r["model"]]
        flag = "undefined" if r.get("error") else "unstable" if r.get("unstable") else ""
        for g in ("other", "non"):
            if flag:  # a TI not to be read is never shown as a number, nor its CI
                assert (row[f"TI_{g}"], row[f"TI_{g} CI"]) == (f"— ({flag})", "")
                continue
            assert row[f"TI_{g}"] == fmt(r[f"TI_{g}"])
            assert row[f"TI_{g} CI"] == (fmt_ci(tuple(r[f"TI_{g}_ci"])) if r.get(f"TI_{g}_ci") else "")
        for g in ("math", "other", "non"):
            assert row[f"Δ{g}"] == fmt(r["change"][g]) and row[f"Δ{g} CI"] == fmt_ci(tuple(r["change_ci"][g]))
        math_index = "DI_math" if r["index"] == "v2" else "dR_math"  # as ti.json names the index of its version
        assert row[math_index] == fmt(r[math_index], 3)
        assert row["flag"] == flag
    # The Markdown report shows exactly the CSV tables' cells.
    md_tables = markdown_tables(report["md"].read_text())
    for name in ("scores", "ti", "benchmark_changes", "arm_differences"):
        with open(study / "tables" / f"{name}.csv", newline="", encoding="utf-8") as f:
            assert list(csv.reader(f)) in md_tables, name


def check_comparisons(study) -> None:
    """Every number of the report's comparison tables (group means, per-benchmark changes, arm differences, seed
    spread, TI over steps) is comparisons.json's, as the study's compare stage wrote it; the changes are between the
    scores scores.json holds."""
    from rtransfer.benchmarks.names import display
    from rtransfer.comparisons import Comparisons

    c = Comparisons.from_dict(json.loads((study / "comparisons.json").read_text()))
    means = {r["model"]: r for r in csv_rows(study / "tables" / "group_means.csv")}
    assert set(means) == set(c.group_means)
    for model, by_group in c.group_means.items():
        for g, est in by_group.items():
            assert (means[model][f"{g} mean"], means[model][f"{g} CI"]) == (fmt(est.value), fmt_ci(est.ci))
    scores = {(s["model"], s["benchmark"]): s["score"] for s in json.loads((study / "scores.json").read_text())}
    base_of = {r["model"]: r["base"] for r in json.loads((study / "ti.json").read_text())}
    expected = []
    for model, by_bench in c.changes.items():
        for bench, ch in by_bench.items():
            base = base_of[model]
            assert (ch.base_score, ch.score) == pytest.approx((scores[base, bench], scores[model, bench]))
            expected.append([model, display(bench), fmt(ch.base_score), fmt(ch.score)])
            expected[-1] += [fmt(ch.estimate.value), fmt_ci(ch.estimate.ci)]
    rows = csv_rows(study / "tables" / "benchmark_changes.csv")
    cells = ["model", "benchmark", "base score", "score", "Δ (points)", "Δ CI"]
    assert sorted([r[k] for k in cells] for r in rows) == sorted(expected)
    rows = csv_rows(study / "tables" / "arm_differences.csv")
    assert len(rows) == len(c.differences) > 0
    for r, d in zip(rows, c.differences, strict=True):
        flag = d.flag or ("" if d.defined else "undefined")
        assert (r["arm a"], r["arm b"], r["quantity"]) == (d.a, d.b, d.quantity)
        assert (r["a − b"], r["CI"]) == (
            (f"— ({flag})", "") if flag else (fmt(d.estimate.value), fmt_ci(d.estimate.ci))
        )
    rows = csv_rows(study / "tables" / "seed_spread.csv")
    assert [(r["arm"], r["quantity"], r["mean"], r["sd"]) for r in rows] == [
        (s.arm, s.quantity, fmt(s.mean), fmt(s.sd)) for s in c.spread
    ]
    rows = {(r["model"], int(r["step"])): r for r in csv_rows(study / "tables" / "ti_steps.csv")}
    assert set(rows) == {(m, step) for m, by in c.steps.items() for step in by}
    for (model, step), r in rows.items():
        point = c.steps[model][step]
        for q in QUANTITIES:
            if point.flag and q.startswith("TI"):
                assert (r[q], r[f"{q} CI"]) == (f"— ({point.flag})", "")
            else:
                assert (r[q], r[f"{q} CI"]) == (fmt(point.values[q].value), fmt_ci(point.values[q].ci))


def test_the_comparison_tables_are_the_compare_stages_file(study, report):
    from study_fixture import TI

    check_comparisons(study)
    settings = json.loads((study / "comparisons.json").read_text())["settings"]
    assert settings == TI  # the settings the compare stage was given, recorded beside its numbers
    md = report["md"].read_text()
    assert "TI v2 (% of the math domain index, DI_math)" in md
    assert "95% paired-bootstrap CI over documents (200 replicates, seed 0)" in md  # the study's, not 1000
    # Whether transfer dipped and came back: the words are comparisons.json's dips, every stepped model named once.
    from rtransfer.report.sections import _tight

    c = json.loads((study / "comparisons.json").read_text())
    stepped = [m for m, points in c["steps"].items() if len(points) > 1]
    assert stepped and "Did transfer dip and recover?" in md
    for d in c["dips"]:
        at, back = d["at"], d["recovery"]
        said = f"at step {d['step']}, and {d['verdict']} ("
        assert f"{d['model']}: " in md and f"fell to {fmt(at['value'])} points {_tight(tuple(at['ci']))} {said}" in md
        assert _tight(tuple(back["ci"])) in md
    steady = [m for m in stepped if m not in {d["model"] for d in c["dips"]}]
    assert not steady or f"{', '.join(steady)}: no checkpoint's other or non-reasoning change lay measurably" in md


@pytest.fixture(scope="session")
def v1_study(study, tmp_path_factory):
    from study_fixture import recompare

    return recompare(study, tmp_path_factory.mktemp("v1") / "study", index="v1", confidence=0.9)


def test_a_v1_study_is_reported_as_v1_at_its_confidence(study, v1_study):
    from rtransfer.report.build import write_report

    report = write_report(v1_study)
    check_sections(report)
    check_numbers(v1_study, report)
    check_comparisons(v1_study)
    ti = json.loads((v1_study / "ti.json").read_text())
    assert {r["index"] for r in ti} == {"v1"} and all(r["dR_math"] is not None for r in ti)
    with open(v1_study / "tables" / "ti.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert "dR_math" in header and "dR_math CI" in header and not [h for h in header if h.startswith("DI_")]
    assert all(r["dR_math"] not in ("", "—") for r in csv_rows(v1_study / "tables" / "ti.csv"))
    md = report["md"].read_text()
    assert "TI v1 (% of the math group's mean relative gain, dR_math)" in md and "TI v2" not in md
    assert "DI_math" not in md and "σ pooled" not in md  # v1 divides relative gains: no σ
    assert "90% paired-bootstrap CI over documents (200 replicates, seed 0)" in md and "95% paired" not in md
    # The same documents drawn (seed 0) at another confidence: each group change is the same number, its 90% CI
    # inside the 95% one of the default study.
    v2 = {r["model"]: r for r in json.loads((study / "ti.json").read_text())}
    for r in ti:
        for g in ("math", "other", "non"):
            assert r["change"][g] == v2[r["model"]]["change"][g]
            (lo, hi), (lo95, hi95) = r["change_ci"][g], v2[r["model"]]["change_ci"][g]
            assert lo95 <= lo <= hi <= hi95


def test_a_study_in_the_old_manifest_format_fails_in_one_line(cli, study, tmp_path):
    manifest = json.loads((study / "manifest.json").read_text())
    for entry in manifest["models"].values():
        del entry["role"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = cli("report", tmp_path)
    assert code == 2 and err.count("\n") == 1 and "older rtransfer" in err


def test_html_is_self_contained(report):
    html = report["html"].read_text()
    assert "<script" not in html.lower() and "<link" not in html.lower() and "url(" not in html
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attr.startswith(("data:image/png;base64,", "#")), attr[:60]
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == html.count("<img") >= 6
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    md = report["md"].read_text()
    for ref in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (report["md"].parent / ref).read_bytes()[:4] == b"\x89PNG"


def check_smoke_banner(report: dict, study_name: str) -> None:
    """A study on the quick lab base says at the top of both files that it is a smoke test, and its finding does
    not compare it with the paper (shared with the study's end-to-end test)."""
    from html import escape

    from rtransfer.report.build import SMOKE_BANNER
    from rtransfer.report.finding import PAPER, SMOKE

    html, md = report["html"].read_text(), report["md"].read_text()
    title = f"rtransfer report: study {study_name} (smoke test)"
    assert html.index(f'<p class="banner" id="banner">{escape(SMOKE_BANNER)}</p>') < html.index(f"<h1>{title}</h1>")
    assert md.startswith(f"> **{SMOKE_BANNER}**\n\n# {title}\n")
    assert SMOKE in md and PAPER not in md and "reproduce" not in md


def test_a_study_on_the_quick_lab_base_is_a_smoke_test_by_its_manifest(study, report):
    from rtransfer.report.finding import SMOKE

    assert "quick" not in study.name  # told by the manifest's base, not by the folder's name
    check_smoke_banner(report, "fixture")
    assert report["finding"][-1] == SMOKE


def test_a_study_on_another_base_is_compared_with_the_paper(study):
    from rtransfer.report.collect import load_study
    from rtransfer.report.finding import PAPER, SMOKE
    from rtransfer.report.sections import Results

    data = load_study(study)
    data.manifest["config"].update(base="lab", quick=False)
    finding = Results(data).finding
    assert not data.smoke and finding[-1].startswith(PAPER) and SMOKE not in finding
    data.manifest["config"]["quick"] = True  # a study that ran as --quick on any base
    assert data.smoke and Results(data).finding[-1] == SMOKE


def test_text_is_escaped_in_html():
    from rtransfer.report.document import Code, Section
    from rtransfer.report.html import render_html

    html = render_html("t", [Section("examples", "Examples", [Code("<b>x</b> & <script>alert(1)</script>")])])
    assert "<script>" not in html and "&lt;script&gt;" in html


def study_rows(study):
    """The study's rows as its compare stage reads them (per-document grades from the run dirs)."""
    from rtransfer.jobs.compare import load_rows
    from rtransfer.specs import model_from_json

    manifest = json.loads((study / "manifest.json").read_text())
    models = [model_from_json(e) for e in manifest["models"].values()]
    return load_rows(models, manifest["models"], study)[0]


def test_an_arm_against_itself_is_exactly_zero_and_swapping_negates(study):
    from rtransfer.report.collect import load_study

    res = Resampled(study_rows(study), 300, 0)
    arms = load_study(study).arms()
    for q in QUANTITIES:
        for models in arms.values():
            same = res.difference(models, models, q)
            if np.isfinite(same.value):
                assert same.value == 0.0 and same.ci == (0.0, 0.0)
        ab = res.difference(arms["onpolicy"], arms["sft-nothink"], q)
        ba = res.difference(arms["sft-nothink"], arms["onpolicy"], q)
        if np.isfinite(ab.value):
            assert ba.value == pytest.approx(-ab.value)
            assert ba.ci == pytest.approx((-ab.ci[1], -ab.ci[0]), abs=1e-9)


def test_seed_spread_and_steps_are_reported(study, report):
    rows = csv_rows(study / "tables" / "seed_spread.csv")
    assert {r["arm"] for r in rows} == {"onpolicy"} and {r["quantity"] for r in rows} == set(QUANTITIES)
    steps = csv_rows(study / "tables" / "ti_steps.csv")
    assert {(r["model"], r["step"]) for r in steps} == {("onpolicy-s0", "2"), ("onpolicy-s0", "4")}


def test_the_command_writes_a_run_report_and_fails_in_one_line(cli, study, tmp_path):
    runs = [study / "runs" / name for name in ("base", "grpo", "sft-nothink")]
    code, _, err = cli("report", *runs, "--base", runs[0], "--out", tmp_path / "rep")
    assert code == 0, err
    html = (tmp_path / "rep" / "report.html").read_text()
    assert all(f'<section id="{sid}">' in html for sid in SECTIONS)
    assert "No checkpoints were evaluated" in html and "No training logs" in html
    assert "95% paired-bootstrap CI over documents (1000 replicates, seed 0)" in html  # the default [ti] settings
    ti = csv_rows(tmp_path / "rep" / "tables" / "ti.csv")
    assert {r["model"] for r in ti} == {"grpo", "sft-nothink"}
    code, _, err = cli("report", *runs)
    assert code == 2 and err.count("\n") == 1 and "--out" in err
    code, _, err = cli("report", tmp_path / "nothing")
    assert code == 2 and "no manifest.json" in err


# --- the finding's rules, on hand-made ti.json rows ------------------------------------------------------------


def row(model, method, math, other, non, ti=None, unstable=False):
    """A ti.json row: (value, low, high) per group change; ti = (TI_other, TI_non) when defined."""
    out = {"model": model, "base": "base", "method": method}
    out["change"] = {g: v[0] for g, v in zip(("math", "other", "non"), (math, other, non), strict=True)}
    out["change_ci"] = {g: list(v[1:]) for g, v in zip(("math", "other", "non"), (math, other, non), strict=True)}
    if ti:
        out |= {"TI_other": ti[0], "TI_non": ti[1], "TI_other_ci": [ti[0] - 5, ti[0] + 5]}
        out |= {"TI_non_ci": [ti[1] - 5, ti[1] + 5]}
    else:
        out |= {"TI_other": None, "TI_non": None, "error": "DI_math is zero"}
    if unstable:
        out["unstable"] = "DI_math's CI includes 0"
    return out


def diffs(a, b, values: dict[str, tuple[float, float, float]]) -> list[Difference]:
    return [Difference(a, b, q, Estimate(v, (lo, hi))) for q, (v, lo, hi) in values.items()]


ARMS = {"sft": ["sft"], "grpo": ["grpo"]}
METHODS = {"sft": "sft", "grpo": "grpo"}


def test_rule_a_change_counts_when_its_ci_excludes_zero():
    assert direction(2.0, [0.5, 3.0]) == "up" and direction(-2.0, [-3.0, -0.1]) == "down"
    assert direction(1.0, [-0.5, 2.0]) == "flat" and direction(1.0, [0.0, 2.0]) == "flat"
    assert direction(1.0, None) == "unknown"
    assert raised_math(row("m", "grpo", (3, 1, 5), (0, -1, 1), (0, -1, 1), ti=(50, 20)))
    assert not raised_math(row("m", "grpo", (3, -1, 5), (0, -1, 1), (0, -1, 1)))


def test_finding_math_raised_and_on_policy_better():
    rows = [
        row("sft", "sft", (5, 2, 8), (-4, -6, -2), (-6, -9, -3), ti=(-30, -60)),
        row("grpo", "grpo", (4, 1, 7), (2, 0.5, 3.5), (0, -1, 1), ti=(60, 10)),
    ]
    d = diffs("grpo", "sft", {"TI_other": (90, 40, 140), "TI_non": (70, 10, 130), "Δother": (6, 3, 9)})
    d += diffs("grpo", "sft", {"Δnon": (6, 2, 10), "Δmath": (-1, -4, 2)})
    lines = finding(rows, ARMS, METHODS, d)
    assert lines[0] == "Raised math beyond noise (Δmath CI above 0): sft, grpo."
    assert "sft raised math (+5.0 points [2.0, 8.0]); other reasoning lost" in lines[1]
    assert "TI_other -30.0 [-35.0, -25.0]" in lines[1]
    assert lines[-1].startswith("On-policy arms transfer better than off-policy SFT here")
    assert "by the TI" in lines[-1] and "grpo − sft = +90.0 [40.0, 140.0]: grpo ahead" in lines[-1]


def test_finding_cannot_tell_when_the_difference_ci_includes_zero():
    rows = [
        row("sft", "sft", (5, 2, 8), (1, -1, 3), (0, -1, 1), ti=(20, 0)),
        row("grpo", "grpo", (4, 1, 7), (2, 0.5, 3.5), (0, -1, 1), ti=(40, 5)),
    ]
    d = diffs("grpo", "sft", {"TI_other": (20, -30, 70), "TI_non": (5, -40, 50), "Δother": (1, -1, 3)})
    d += diffs("grpo", "sft", {"Δnon": (0, -1, 1), "Δmath": (-1, -4, 2)})
    last = finding(rows, ARMS, METHODS, d)[-1]
    assert last.startswith("Whether on-policy arms transfer better than off-policy SFT: the data cannot tell.")
    assert "cannot tell (the CI includes 0)" in last


def test_finding_without_a_math_gain_compares_group_changes():
    rows = [
        row("sft", "sft", (-3, -6, -1), (-4, -6, -2), (-6, -9, -3)),
        row("grpo", "grpo", (1, -1, 3), (0, -1, 1), (0, -1, 1), ti=(300, 200), unstable=True),
    ]
    d = diffs("grpo", "sft", {"TI_other": (np.nan, None, None), "TI_non": (np.nan, None, None)})
    d += diffs("grpo", "sft", {"Δother": (4, 2, 6), "Δnon": (6, 3, 9), "Δmath": (4, 1, 7)})
    lines = finding(rows, ARMS, METHODS, d)
    assert lines[0].startswith("No model raised math beyond noise")
    assert "sft lowered math" in lines[1] and "TI undefined" in lines[1]
    assert "TI unstable" in lines[2] and "300" not in lines[2]  # an unstable TI is not read
    assert "by group changes" in lines[-1] and lines[-1].startswith("On-policy arms transfer better")


def test_finding_without_an_off_policy_arm_says_so():
    rows = [row("grpo", "grpo", (4, 1, 7), (2, 0.5, 3.5), (0, -1, 1), ti=(40, 5))]
    last = finding(rows, {"grpo": ["grpo"]}, {"grpo": "grpo"}, [])[-1]
    assert last == "On- vs off-policy: not compared, the study has no off-policy SFT arm."


GRID_ARMS = {"sft": ["sft"], "grpo": ["grpo"], "opd": ["opd"]}
GRID_METHODS = {"sft": "sft", "grpo": "grpo", "opd": "opd"}


def grid_rows():
    return [
        row("sft", "sft", (5, 2, 8), (-4, -6, -2), (-6, -9, -3), ti=(-30, -60)),
        row("grpo", "grpo", (4, 1, 7), (2, 0.5, 3.5), (0, -1, 1), ti=(60, 10)),
        row("opd", "opd", (6, 3, 9), (1, -0.5, 2.5), (0, -1, 1), ti=(50, 5)),
    ]


def test_the_grid_says_transfer_follows_on_policy_data_when_distillation_beats_sft_and_matches_rl():
    real, flat = (40, 10, 70), (5, -20, 30)
    d = diffs("grpo", "sft", {"TI_other": real, "TI_non": real})
    d += diffs("opd", "sft", {"TI_other": real, "TI_non": (30, 5, 55)})
    d += diffs("opd", "grpo", {"TI_other": flat, "TI_non": (-2, -25, 21)})  # held as opd − grpo: read as grpo − opd
    *_, on_off, last = finding(grid_rows(), GRID_ARMS, GRID_METHODS, d)
    # rule 4 (and so the paper's verdict) is on the paper's on-policy arms only: distillation enters the grid
    assert on_off.startswith("On-policy arms transfer better than off-policy SFT here") and "opd" not in on_off
    assert last.startswith("The grid: the transfer follows on-policy data here, not the reward.")
    assert "opd vs sft, by the TI: other reasoning TI opd − sft = +40.0 [10.0, 70.0]: opd ahead" in last
    assert "grpo vs opd, by the TI: other reasoning TI grpo − opd = -5.0 [-30.0, 20.0]: cannot tell" in last


def test_the_grid_cannot_tell_when_a_factor_is_mixed_and_is_absent_without_a_cell():
    d = diffs("opd", "sft", {"TI_other": (40, 10, 70), "TI_non": (-30, -55, -5)})  # ahead on one, behind on the other
    d += diffs("grpo", "opd", {"TI_other": (1, -20, 22), "TI_non": (1, -20, 22)})
    last = finding(grid_rows(), GRID_ARMS, GRID_METHODS, d)[-1]
    assert last.startswith("The grid: which the transfer follows, on-policy data or the reward, the data cannot tell.")
    rows = [r for r in grid_rows() if r["model"] != "grpo"]
    arms = {"sft": ["sft"], "opd": ["opd"]}
    last = finding(rows, arms, GRID_METHODS, diffs("opd", "sft", {"TI_other": (40, 10, 70), "TI_non": (1, -5, 7)}))[-1]
    assert last == "The grid: not complete, the study has no on-policy arm trained on a reward."
    assert not finding(grid_rows()[:2], ARMS, METHODS, [])[-1].startswith("The grid")  # no distillation arm


def test_against_the_paper_reproduces_contradicts_or_says_what_is_missing():
    from rtransfer.report.finding import against_the_paper

    raised = [
        row("sft", "sft", (5, 2, 8), (-4, -6, -2), (-6, -9, -3), ti=(-30, -60)),
        row("grpo", "grpo", (4, 1, 7), (2, 0.5, 3.5), (0, -1, 1), ti=(60, 10)),
    ]
    assert against_the_paper(raised, ARMS, "better").endswith("This study reproduces both.")
    assert against_the_paper(raised, ARMS, "worse").endswith("contradicts it: here on-policy arms transfer worse.")
    assert against_the_paper(raised, ARMS, "unclear").endswith(
        "does not reproduce it: on-policy arms are not shown to transfer better."
    )
    lost = [row("sft", "sft", (-3, -6, -1), (-4, -6, -2), (-6, -9, -3)), raised[1]]
    text = against_the_paper(lost, ARMS, "better")
    assert text.endswith("does not reproduce it: not every arm raised math (sft did not).")
    assert "GRPO 82.3 / 52.2" in text  # the paper's own TIs, quoted


def test_a_dip_and_its_way_back_are_said_with_their_cis_and_a_ci_near_zero_shows_its_side():
    from rtransfer.comparisons import Dip, Settings
    from rtransfer.report.sections import dip_words

    def est(value, low, high):
        return Estimate(value, (low, high))

    back = Dip("a", "Δother", 5, est(-4.0, -6.0, -2.0), 10, est(-0.5, -2.0, 1.0), est(3.5, 1.5, 5.5))
    near = Dip("b", "Δnon", 25, est(-0.5, -1.2, -0.01), 100, est(-0.2, -0.9, 0.6), est(0.3, -0.1, 0.9))
    text = dip_words([back, near], ["a", "b", "c"], True, Settings())
    assert text.startswith("Did transfer dip and recover? a: other reasoning fell to -4.0 points [-6.0, -2.0] at")
    assert "and recovered (+3.5 points [1.5, 5.5] from there to step 10, ending at -0.5 [-2.0, 1.0])" in text
    assert "b: non-reasoning fell to -0.5 points [-1.20, -0.01] at step 25, and did not recover (+0.3 points" in text
    assert "c: no checkpoint's other or non-reasoning change lay measurably below 0" in text
    assert "pointwise, 95%" in text
    unmeasured = dip_words([], ["c"], False, Settings(bootstrap=0))
    assert unmeasured.startswith("Whether transfer dipped during training cannot be told")


def test_the_verdict_table_opens_the_report_and_is_ti_json_by_rule_1(study, report):
    """arm × group: gained / lost when the change's CI excludes 0, else no measurable change, with ti.json's
    figures; the first table a reader meets."""
    words = {"math": "math", "other": "other reasoning", "non": "non-reasoning"}
    ti = json.loads((study / "ti.json").read_text())
    rows = csv_rows(study / "tables" / "verdicts.csv")
    assert [r["model"] for r in rows] == [t["model"] for t in ti]
    for r, t in zip(rows, ti, strict=True):
        for g, column in words.items():
            value, (low, high) = t["change"][g], t["change_ci"][g]
            said = "gained" if low > 0 else "lost" if high < 0 else "no measurable change"
            number = fmt(value) if fmt(value).startswith("-") or fmt(value) == "0.0" else "+" + fmt(value)
            assert r[column] == f"{said} ({number} points {fmt_ci((low, high))})", (t["model"], g)
    md = report["md"].read_text()
    assert md.index("Each tuned model's change per group") < min(md.index(t) for t in ("Scores (0–100)", "TI v2"))


# --- the report opens with the answer ----------------------------------------------------------------------------


def details_spans(html: str) -> list[str]:
    """Every collapsed <details> element of a page, whole (they are not nested)."""
    return re.findall(r"<details>.*?</details>", html, flags=re.S)


def test_the_headline_figure_is_ti_json_and_scores_json(study, report):
    """tables/headline.csv holds what the headline figure draws: each tuned model's group change and its CI exactly
    as ti.json holds them, each change the mean over the group's benchmarks of the score differences scores.json
    holds, the TIs as ti.json's; the verdict table quotes the same CIs."""
    from rtransfer.benchmarks.names import group_of

    ti = json.loads((study / "ti.json").read_text())
    scores = {(s["model"], s["benchmark"]): s["score"] for s in json.loads((study / "scores.json").read_text())}
    drawn = {(r["model"], r["quantity"]): r for r in csv_rows(study / "tables" / "headline.csv")}
    assert len(drawn) == 5 * len(ti)
    verdicts = {r["model"]: r for r in csv_rows(study / "tables" / "verdicts.csv")}
    words = {"math": "math", "other": "other reasoning", "non": "non-reasoning"}
    moved = 0
    for t in ti:
        for g in ("math", "other", "non"):
            r = drawn[t["model"], f"Δ{g}"]
            value, low, high = float(r["value"]), float(r["CI low"]), float(r["CI high"])
            assert (value, [low, high]) == (t["change"][g], t["change_ci"][g]), (t["model"], g)
            gains = [
                scores[t["model"], b] - scores[t["base"], b]
                for (m, b) in scores
                if m == t["model"] and group_of(b) == g and (t["base"], b) in scores
            ]
            assert gains and value == pytest.approx(float(np.mean(gains)), abs=1e-9), (t["model"], g)
            assert f"points {fmt_ci((low, high))})" in verdicts[t["model"]][words[g]]
            moved += value != 0
        for q in ("TI_other", "TI_non"):
            r = drawn[t["model"], q]
            assert r["value"] == ("" if t[q] is None else repr(t[q]))
            if t.get(f"{q}_ci") and t[q] is not None:
                assert [float(r["CI low"]), float(r["CI high"])] == t[f"{q}_ci"]
            expected = "no (undefined)" if t[q] is None else "hollow (unstable)" if t.get("unstable") else "yes"
            assert r["drawn"] == expected
    assert moved  # the fixture's numbers are not all 0: the comparison above can fail
    html = report["html"].read_text()
    png = base64.b64encode((study / "figures" / "headline.png").read_bytes()).decode("ascii")
    figure = html.index('<figure id="figure-headline">')
    assert html.index(png) > figure
    assert html.index('<table id="table-verdicts">') < figure < html.index("<details>")
    assert figure < html.index('<section id="scores">')


def test_the_short_finding_is_open_and_the_long_material_collapsed(study, report):
    """Under the headline: the finding in two or three sentences, open; the full finding, the arm-vs-arm table, the
    per-benchmark panels (score changes, latent, tokens) and the examples each in a <details> with a one-line
    summary; the verdict table, the headline and the latent summary never collapsed."""
    from html import escape

    from rtransfer.report.finding import VERDICT_WORDS

    html, md = report["html"].read_text(), report["md"].read_text()
    finding = report["finding"]
    short = f"{finding[0]} {VERDICT_WORDS['unclear']}"  # the fixture's arms cannot be told apart
    top = html.index('<section id="summary">')
    assert html.index(f"<p>{escape(short)}</p>", top) < html.index("<details>", top) < html.index("<h2>Scores")
    spans = details_spans(html)
    collapsed = "".join(spans)
    c = json.loads((study / "comparisons.json").read_text())
    inside = [
        escape(finding[1]),  # a model's sentence of the full finding
        '<table id="table-arm_differences">',
        '<figure id="figure-arm_differences">',
        '<table id="table-seed_spread">',
        '<figure id="figure-benchmark_changes">',
        '<figure id="figure-latent_onpolicy-s0">',
        '<table id="table-latent">',
        '<figure id="figure-tokens_onpolicy-s0">',
    ]
    for part in inside:
        assert part in collapsed and html.count(part) == 1, part
    for part in ('<table id="table-verdicts">', '<figure id="figure-headline">', '<figure id="figure-latent_summary">'):
        assert part in html and part not in collapsed, part
    summaries = [re.match(r"<details><summary>([^<\n]+)</summary>", s).group(1) for s in spans]
    assert f"The finding in full: {len(finding)} sentences, each with its numbers" in summaries
    assert f"The full arm-vs-arm table: {len(c['differences'])} paired differences" in " ".join(summaries)
    assert md.count("<details><summary>") == html.count("<details>") == len(spans) >= 6


def test_the_latent_summary_is_the_probes_group_means_and_comes_before_the_panels(study, report):
    probe = json.loads((study / "probes" / "onpolicy-s0" / "latent.json").read_text())
    rows = csv_rows(study / "tables" / "latent_summary.csv")
    assert [(r["model"], r["group"]) for r in rows] == [("onpolicy-s0", g["group"]) for g in probe["groups"]]
    floors = {r["benchmark"]: r["noise_floor"] for r in probe["rows"]}
    for r, g in zip(rows, probe["groups"], strict=True):
        assert (float(r["d"]), [float(r["d CI low"]), float(r["d CI high"])]) == (g["d"], g["d_ci"])
        assert r["benchmarks"].split() == g["benchmarks"]
        expected = np.mean([floors[b]["d_null"] for b in g["benchmarks"]])
        assert float(r["noise floor d"]) == pytest.approx(expected) and float(r["noise floor d"]) > 0
        assert float(r["split-half d"]) == pytest.approx(np.mean([floors[b]["d_split"] for b in g["benchmarks"]]))
    html = report["html"].read_text()
    assert html.index('<figure id="figure-latent_summary">') < html.index('<figure id="figure-latent_onpolicy-s0">')


def test_a_groups_latent_floor_is_the_mean_over_its_benchmarks_or_not_measured():
    from rtransfer.report.evidence import latent_groups

    def bench(name, d_null, d_split):
        return {"benchmark": name, "d": 1.0, "noise_floor": {"d_null": d_null, "d_split": d_split}}

    result = {
        "rows": [bench("a", 0.1, 0.5), bench("b", 0.3, 0.7), bench("c", None, 0.2)],
        "groups": [
            {"group": "math", "benchmarks": ["a", "b"], "d": 2.0, "d_ci": [1.0, 3.0]},
            {"group": "non", "benchmarks": ["c"], "d": 4.0},
        ],
    }
    math, non = latent_groups("m", result)
    assert (math["d"], math["d_ci"], math["floor"], math["split"]) == (2.0, [1.0, 3.0], pytest.approx(0.2), 0.6)
    assert (non["d_ci"], non["floor"], non["split"]) == (None, None, 0.2)  # bf16: no floor, never a 0


def test_a_study_compared_with_the_paper_says_so_in_its_short_finding(study):
    from rtransfer.report.collect import load_study
    from rtransfer.report.finding import PAPER, PAPER_SHORT
    from rtransfer.report.sections import Results

    data = load_study(study)
    data.manifest["config"].update(base="lab", quick=False)
    results = Results(data)
    conclusion = results.finding[-1].removeprefix(PAPER + " ")
    assert conclusion.startswith("This study does not reproduce it: not every arm raised math")
    assert results.short == [results.finding[0], results.short[1], f"{PAPER_SHORT} {conclusion}"]
    assert results.short[1] == "Whether on-policy arms transfer better than off-policy SFT: the data cannot tell."


def test_collapsed_blocks_render_in_both_formats_and_their_tables_are_written(tmp_path):
    from rtransfer.report.document import Details, Section, Table, Text
    from rtransfer.report.html import render_html
    from rtransfer.report.markdown import render_markdown

    table = Table("inner", ["a"], [["1"]])
    section = Section("s", "S", [Text("open"), Details("more <here>", [table, Text("closed")])])
    assert section.tables() == [table]
    html = render_html("t", [section])
    assert '<p>open</p>\n<details><summary>more &lt;here&gt;</summary>\n<table id="table-inner">' in html
    assert "<p>closed</p>\n</details>" in html
    md = render_markdown("t", [section])
    assert "<details><summary>more &lt;here&gt;</summary>\n\n| a |\n|---|\n| 1 |\n" in md
    assert md.rstrip().endswith("closed\n\n</details>")
