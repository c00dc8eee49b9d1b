"""`rtransfer study`: configs validated before anything runs, content-keyed stages, the quick lab study end to end,
resumption after SIGKILL with the same final files."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtransfer.drift_law import MEASURES
from rtransfer.probes.drift import DriftPoint, DriftSettings, run_drift
from rtransfer.study.config import load_study
from rtransfer.study.run import run_study
from rtransfer.transfer import TIResult

SHIPPED = ("lab", "qwen3-0.6b", "unireason", "survey", "rehearsal")
SERVED_BY_VLLM = ("qwen3-0.6b", "unireason", "survey")  # their servers are vLLM's, which this machine has not
LAB_MODELS = ("base", "sft-think", "sft-nothink", "onpolicy", "grpo", "opd")


@pytest.fixture(scope="session")
def study_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("study-cache")


@pytest.fixture(scope="session")
def quick_study(tmp_path_factory, study_cache) -> Path:
    """The quick lab study, run once to its end (uninterrupted): the reference for the other tests."""
    out = tmp_path_factory.mktemp("quick") / "study"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RTRANSFER_CACHE", str(study_cache))
        run_study(load_study("lab", quick=True), out)
    return out


def stages(plan: dict) -> dict[str, dict]:
    return {s["stage"]: s for s in plan["stages"]}


# --- configs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_dry_runs_without_the_hub(name, tmp_path, cli):
    code, out, err = cli("study", name, "--out", tmp_path / "s", "--dry-run")
    plan = json.loads(out)  # the plan is printed whether or not it can run here
    if name in SERVED_BY_VLLM:  # what cannot run here is refused, one line for the one cause
        vllm = Path(sys.executable).parent / "vllm"
        assert code == 1 and plan["problems"] == [p.removeprefix("rtransfer: cannot run: ") for p in err.splitlines()]
        assert len(plan["problems"]) == 1 and f"server command '{vllm}' is not an executable file" in err
        assert set(plan["servers"]) == {
            s["stage"] for s in plan["stages"] if s["stage"].split(":")[0] in ("eval", "teacher")
        }
    else:
        assert code == 0 and not plan["problems"], err
    assert all(s["status"] == "new" for s in plan["stages"])
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["plan.json"]  # a dry run writes its plan, nothing else
    names = [s["stage"] for s in plan["stages"]]
    assert names[-2:] == ["ti", "report"]
    if name != "survey":
        assert [n for n in names if n.startswith("train:")] == [f"train:{m}" for m in LAB_MODELS[1:]]
        assert set(plan["training"]) == set(LAB_MODELS[1:])


def test_the_survey_config_is_the_papers_table(shared):
    config = load_study("survey")
    with open(shared / "paper" / "scores.csv") as f:
        paper = list(csv.DictReader(f))
    assert [m.name for m in config.models] == [r["model"] for r in paper]
    for model, row in zip(config.models, paper, strict=True):
        assert (model.base, model.method) == (row["base"], row["method"])
    assert config.eval.suite == "paper" and not config.arms


def test_unireason_trains_every_arm_through_accelerate_with_the_shipped_zero3(tmp_path):
    plan = run_study(load_study("unireason"), tmp_path / "s", dry_run=True)
    for arm in ("sft-think", "sft-nothink", "onpolicy", "grpo", "opd"):
        command = plan["training"][arm]["command"]
        assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]  # this interpreter's accelerate
        assert plan["training"][arm]["processes"] == 8
        config = Path(command[command.index("--config_file") + 1])
        assert config.name == "zero3.yaml" and config.exists()
        # The launcher runs the arm's own training spec, as the study planned it (nothing translated to flags).
        assert command[-3:-1] == ["-m", "rtransfer.jobs"]
        assert command[-1] == str(tmp_path / "s" / "specs" / f"train-{arm}.json")
    written = {n["name"]: n for n in json.loads((tmp_path / "s" / "plan.json").read_text())["nodes"]}
    assert written["train:grpo"]["spec"]["launch"][:2] == ["accelerate", "launch"]


@pytest.mark.parametrize(
    "text, message",
    [
        ('name = "x"\nbogus = 1\n[[arms]]\nname = "a"\nmethod = "sft"\n', "unknown field 'bogus'"),
        ('seeds = "two"\n[[arms]]\nname = "a"\nmethod = "sft"\n', "seeds = 'two' is not a int"),
        ('[[arms]]\nname = "a"\nmethod = "dpo"\n', "method 'dpo'"),
        ('[[arms]]\nname = "a"\nmethod = "grpo"\n[[arms]]\nname = "a"\nmethod = "sft"\n', "unique"),
        ('[[arms]]\nmethod = "sft"\n', "missing name"),
        ('[[models]]\nname = "t"\nmodel = "m"\nbase = "nope"\nmethod = "RL"\n', "base 'nope'"),
        ('[[arms]]\nname = "a"\nmethod = "sft"\n[eval]\neval_every = 7\n', "not a multiple of its save_every"),
        ('[[arms]]\nname = "a"\nmethod = "sft"\nset = ["lr=fast"]\n', "lr = 'fast' is not a float"),
        ('[[arms]]\nname = "a"\nmethod = "sft"\n[eval]\neval_every = 50\ncheckpoints = true\n', "not both"),
        ("[eval]\nlimit = 3\n", "needs arms to train"),
        (
            '[[arms]]\nname = "a"\nmethod = "sft"\nlaunch = ["accelerate", "launch"]\n[eval]\neval_every = 50\n',
            "cannot evaluate checkpoints in training",
        ),
        ('[[arms]]\nname = "a"\nmethod = "sft"\n[eval.servers]\nzzz = ["http://h:1/v1"]\n', "no model named zzz"),
        ('[[arms]]\nname = "a"\nmethod = "sft"\n[ti]\nindex = "v3"\n', "index 'v3'"),
        ('[[arms]]\nname = "a"\nmethod = "sft"\n[ti]\nconfidence = 1.5\n', "confidence 1.5"),
    ],
)
def test_a_bad_config_is_one_line_before_anything_runs(tmp_path, cli, text, message):
    path = tmp_path / "study.toml"
    path.write_text(text)
    code, _, err = cli("study", path, "--out", tmp_path / "s")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s").exists()


def test_a_changed_recipe_reruns_that_arm_and_what_reads_it_only(tmp_path, quick_study):
    config = load_study("lab", quick=True)
    before = stages(run_study(config, quick_study, dry_run=True))
    assert all(s["status"] == "done" for s in before.values())
    grpo = next(a for a in config.arms if a.name == "grpo")
    grpo.set.append("lr=5e-4")
    after = stages(run_study(config, quick_study, dry_run=True))
    stale = {name for name, s in after.items() if s["status"] != "done"}
    assert stale == {"train:grpo", "eval:grpo", "steps:grpo", "probes:grpo", "ti", "report"}
    assert all(after[n]["key"] == before[n]["key"] for n in after if n not in stale)


def test_only_refuses_a_stage_whose_inputs_are_not_done(tmp_path, cli):
    code, _, err = cli("study", "--quick", "--out", tmp_path / "s", "--only", "ti")
    assert code == 2 and "ti reads eval:base, which is not done" in err


# --- the quick study end to end ----------------------------------------------------------------------------------


def test_the_quick_study_writes_every_file_the_report_reads(quick_study):
    manifest = json.loads((quick_study / "manifest.json").read_text())
    assert set(manifest["models"]) == set(LAB_MODELS)
    assert all(s["finished"] for s in manifest["stages"].values()) and len(manifest["stages"]) == 23
    for name, entry in manifest["models"].items():
        run = json.loads((quick_study / entry["run_dir"] / "manifest.json").read_text())
        # Every model answers the prompts the base answers: no-think SFT means the teacher's traces, not the
        # chat template's mode at evaluation.
        assert run["engine_info"]["thinking"] is None, name
        assert run["method"] == (entry["method"] or None), name  # the run dir says how its model was made
        if name != "base":
            assert (quick_study / entry["train_dir"] / "log.jsonl").exists()
            assert {"latent", "tokens"} <= set(entry["probes"])
            assert all((quick_study / p).exists() for p in entry["probes"].values())
            # Every checkpoint the arm saved was evaluated, but the last step's: the final model is that point.
            info = json.loads((quick_study / entry["train_dir"] / "train.json").read_text())
            every, last = info["recipe"]["save_every"], info["steps"]
            assert sorted(map(int, entry["steps"])) == list(range(every, last, every)), name
            for at, rel in entry["steps"].items():
                step = json.loads((quick_study / rel / "manifest.json").read_text())
                assert (step["name"], step["method"]) == (f"{name}@step-{at}", entry["method"])
                assert (quick_study / rel / "scores.json").exists()
    for f in ("scores.json", "ti.json", "report.html", "report.md"):
        assert (quick_study / f).exists(), f


def test_the_quick_studys_report_has_every_section_and_the_studys_numbers(quick_study):
    from test_report import check_numbers, check_sections, check_smoke_banner

    report = {"html": quick_study / "report.html", "md": quick_study / "report.md"}
    check_sections(report)
    check_numbers(quick_study, report)
    check_smoke_banner(report, "lab")


def test_scores_json_is_the_records_and_ti_json_is_rtransfer_ti(quick_study, cli):
    from rtransfer.sources import load_run_dir

    scores = json.loads((quick_study / "scores.json").read_text())
    assert {(r["model"], r["benchmark"]) for r in scores} == {
        (m, b) for m in LAB_MODELS for b in load_run_dir(quick_study / "runs" / m)[0].scores
    }
    for r in scores:
        row, _ = load_run_dir(quick_study / "runs" / r["model"])
        assert r["score"] == row.scores[r["benchmark"]]
        assert r["ci_low"] <= r["score"] <= r["ci_high"]
        assert r["method"] == {"base": "", "sft-think": "sft", "sft-nothink": "sft"}.get(r["arm"], r["arm"])
    runs = [quick_study / "runs" / m for m in LAB_MODELS]
    code, out, err = cli("ti", *runs, "--base", quick_study / "runs" / "base", "--json", "--bootstrap", "200")
    assert code == 0, err
    by_model = {r["model"]: r for r in json.loads(out)}
    ti = json.loads((quick_study / "ti.json").read_text())
    assert [TIResult.from_dict(r).as_dict() for r in ti] == ti  # what `rtransfer study` prints its table from
    for row in json.loads((quick_study / "ti.json").read_text()):
        theirs = by_model[row["model"]]
        for key in ("TI_other", "TI_non", "DI_math", "DI_other", "DI_non", "change", "change_ci", "TI_other_ci"):
            assert row.get(key) == theirs.get(key), (row["model"], key)


def test_a_finished_study_reruns_in_seconds_and_changes_nothing(quick_study, study_cache, monkeypatch, cli):
    monkeypatch.setenv("RTRANSFER_CACHE", str(study_cache))
    files = {f: (quick_study / f).read_bytes() for f in ("scores.json", "ti.json", "report.md")}
    started = time.time()
    code, out, err = cli("study", "--quick", "--out", quick_study)
    assert code == 0, err
    assert time.time() - started < 30
    assert err.count("done earlier, reused") == 23 and "running" not in err
    assert "Transferability Index" in out and "report:" in out
    assert {f: (quick_study / f).read_bytes() for f in files} == files
    steps = {m: e["steps"] for m, e in json.loads((quick_study / "manifest.json").read_text())["models"].items()}
    # The report alone again: training is not run, and its checkpoint evaluations stay in the manifest.
    code, _, err = cli("study", "--quick", "--out", quick_study, "--only", "report")
    assert code == 0 and "train:" not in err, err
    after = {m: e["steps"] for m, e in json.loads((quick_study / "manifest.json").read_text())["models"].items()}
    assert after == steps and all(after[m] for m in LAB_MODELS[1:])


# --- SIGKILL and resume -------------------------------------------------------------------------------------------


def _study(out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rtransfer.cli", "study", "--quick", "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(process: subprocess.Popen, ready, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert process.poll() is None, f"the study ended before the kill point: {process.stderr.read()[-2000:]}"
        assert time.time() < deadline, "the kill point never came"
        time.sleep(0.05)
    family = _descendants(process.pid)
    assert family, "the study runs its stages in worker processes"
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.time() + 30
    while (alive := [pid for pid in family if _alive(pid)]) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive, f"processes of the killed study live on: {alive}"  # idle workers too


def _descendants(pid: int) -> list[int]:
    """Every process under `pid` (Linux /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [c for c, p in parents.items() if p == parent]
        found += children
        todo += children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _started(out: Path, stage: str) -> bool:
    try:
        entry = json.loads((out / "manifest.json").read_text())["stages"].get(stage)
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return entry is not None and entry["finished"] is None


def _records(run: Path) -> dict[str, list]:
    """Each records file's (doc, sample, response, grade) rows, in a fixed order (timestamps differ by design)."""
    out = {}
    for f in sorted((run / "records").glob("*.jsonl")):
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        out[f.name] = sorted((r["doc_id"], r["sample"], r.get("response"), json.dumps(r.get("grade"))) for r in rows)
    return out


def test_a_study_killed_in_training_and_in_evaluation_resumes_to_the_same_files(tmp_path, quick_study, study_cache):
    out = tmp_path / "study"
    env = {**os.environ, "RTRANSFER_CACHE": str(study_cache), "OMP_NUM_THREADS": "2"}
    onpolicy = out / "models" / "onpolicy" / "checkpoints" / "checkpoint-4"
    _kill_when(_study(out, env), lambda: _started(out, "train:onpolicy") and onpolicy.exists())
    records = out / "runs" / "grpo" / "records"
    _kill_when(_study(out, env), lambda: _started(out, "eval:grpo") and any(records.glob("*.jsonl")))
    finished = _study(out, env)
    assert finished.wait(timeout=600) == 0, finished.stderr.read()[-2000:]
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert all(s["finished"] for s in stages.values())
    assert _records(out / "runs" / "grpo")  # the records the kill tests compare are there
    for f in ("scores.json", "ti.json"):
        assert json.loads((out / f).read_text()) == json.loads((quick_study / f).read_text()), f
    for m in LAB_MODELS:
        assert _records(out / "runs" / m) == _records(quick_study / "runs" / m), m
    log = [json.loads(line) for line in (out / "models" / "onpolicy" / "log.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (quick_study / "models/onpolicy/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [r["step"] for r in reference]  # no step logged twice or lost
    assert [r.get("loss") for r in log] == [r.get("loss") for r in reference]


def test_arms_trained_together_are_the_arms_trained_in_turn(tmp_path, quick_study, study_cache, monkeypatch):
    """The lab config trains two arms at once (the quick study above did); in turn, with both cores free, every
    model comes out the same to the bit, and so do the scores: by construction, since every arm trains on its
    recipe's one thread whatever the schedule (another count changes the weights on Intel Xeon CPUs)."""
    monkeypatch.setenv("RTRANSFER_CACHE", str(study_cache))
    assert load_study("lab", quick=True).train_jobs == 2
    out = tmp_path / "in-turn"
    run_study(load_study("lab", quick=True, train_jobs=1), out)
    assert not (out / "logs").exists() and (quick_study / "logs" / "train-grpo.log").exists()
    for m in LAB_MODELS[1:]:
        threads = [
            json.loads((d / "models" / m / "train.json").read_text())["execution"]["threads"]
            for d in (out, quick_study)
        ]
        assert threads == [1, 1], m
        weights = [(d / "models" / m / "model.safetensors").read_bytes() for d in (out, quick_study)]
        assert weights[0] == weights[1], m
    for f in ("scores.json", "ti.json"):
        assert json.loads((out / f).read_text()) == json.loads((quick_study / f).read_text()), f


def test_every_arms_drift_is_measured_at_each_evaluated_point_and_the_law_fitted_on_them(quick_study):
    """probes:<arm> measures the arm's drift at every point of its TI over steps (each evaluated checkpoint and
    the final model), and the compare stage fits the drift law on exactly those points, their changes as
    comparisons.json has them."""
    manifest = json.loads((quick_study / "manifest.json").read_text())
    comparisons = json.loads((quick_study / "comparisons.json").read_text())
    law = json.loads((quick_study / "drift_law.json").read_text())
    for name in LAB_MODELS[1:]:
        drift = json.loads((quick_study / manifest["models"][name]["probes"]["drift"]).read_text())
        steps = [p["step"] for p in drift["points"]]
        assert steps == [p["step"] for p in comparisons["steps"][name]], name
        for p in drift["points"]:
            assert all(p[m] is not None and p[m] >= 0 for m in MEASURES), (name, p)
            assert 0 < p["weights_changed"] <= 1 and p["forward_kl_answers"] == 64
        assert drift["points"][-1]["forward_kl"] > 0
    by_point = {(p["model"], p["step"]): p for p in law["points"]}
    curves = {(m, p["step"]): p["values"] for m, points in comparisons["steps"].items() for p in points}
    assert set(by_point) == set(curves)
    for at, p in by_point.items():
        assert all(p[q] == curves[at][q]["value"] for q in ("Δother", "Δnon")), at
    html = (quick_study / "report.html").read_text()
    assert '<figure id="figure-drift_law">' in html


def test_the_base_against_itself_has_no_drift_by_any_measure(quick_study, study_cache, monkeypatch):
    monkeypatch.setenv("RTRANSFER_CACHE", str(study_cache))
    base = json.loads((quick_study / "plan.json").read_text())["base"]["model"]
    point = DriftPoint(0, base, str(quick_study / "runs" / "base"))
    result = run_drift(DriftSettings(base, base, ["lab_order", "lab_support"], samples=5, points=[point], prompts=8))
    (p,) = result["points"]
    assert p["reverse_kl_answers"] == 2 * 5 and p["forward_kl_answers"] == 8
    assert {m: p[m] for m in MEASURES} == dict.fromkeys(MEASURES, 0.0)
