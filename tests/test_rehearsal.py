"""The rehearsal study end to end (rtransfer/data/studies/rehearsal.toml): the unireason study's shape on the quick
lab model. Teacher stages and every evaluation go through `transformers serve` servers the study starts and stops,
every arm trains in 2 processes through the shipped accelerate config, then probes, TI and report. Then the keys:
a rerun reuses everything, a changed save_every reruns nothing, a changed learning rate moves the old arm aside.

The study runs as a user runs it, in a child process (`rtransfer study rehearsal`), so that what it leaves behind
(servers, launched processes) can be checked from outside.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rtransfer.engines.factory import EngineSpec
from rtransfer.evaluate import evaluate_spec
from rtransfer.runs import RunDir
from rtransfer.study.config import config_path

ARMS = ("sft-think", "sft-nothink", "onpolicy", "grpo", "opd")
TEACHERS = ("think", "nothink")


def study(config: str | Path, out: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "RTRANSFER_CACHE": str(cache)}
    command = [sys.executable, "-m", "rtransfer.cli", "study", str(config), "--out", str(out), *extra]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rehearsal-cache")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, cache) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("rehearsal") / "study"
    return out, study("rehearsal", out, cache)


def server_pids(log: Path) -> list[int]:
    """The server and watchdog pids a started server's log names (engines/serve.py writes them first)."""
    return [int(p) for p in re.findall(r"server pid (\d+) .*watchdog pid (\d+)", log.read_text())[0]]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")  # a zombie is gone


def test_every_stage_ran_through_started_servers_and_launched_arms(rehearsal):
    out, done = rehearsal
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(entry["finished"] for entry in manifest["stages"].values())
    # a server per model and teacher, each started, answering, then stopped: no process left behind
    logs = {p.name for p in (out / "logs").glob("serve-*.log")}
    assert logs == {f"serve-{m}.log" for m in ("base", *ARMS, *TEACHERS)}
    for log in (out / "logs").glob("serve-*.log"):
        assert not any(alive(pid) for pid in server_pids(log)), log.name
    assert done.stderr.count("server stopped") == len(logs)
    # the teacher stages made the SFT arms' traces
    for teacher in TEACHERS:
        rows = [json.loads(line) for line in (out / "traces" / f"{teacher}.jsonl").read_text().splitlines()]
        assert rows and all(r["completion"] and r["query_id"] for r in rows)
    planned = {n["name"]: n["spec"] for n in json.loads((out / "plan.json").read_text())["nodes"]}
    spec = planned["train:sft-think"]
    assert spec["data"] == str(out / "traces" / "think.jsonl") and "teacher:think" in spec["after"]
    # every arm trained in 2 processes from the very spec the plan holds, each step logged once
    for arm in ARMS:
        assert json.loads((out / "specs" / f"train-{arm}.json").read_text()) == planned[f"train:{arm}"]
        info = json.loads((out / "models" / arm / "train.json").read_text())
        assert info["execution"]["processes"] == 2 and info["finished"], arm
        assert info["seen"]["steps"] == 2 and info["seen"]["queries"] > 0, arm  # counted over both processes
        steps = [json.loads(line)["step"] for line in (out / "models" / arm / "log.jsonl").read_text().splitlines()]
        assert steps == sorted(set(steps)) and steps[-1] == 2, arm
    grpo = json.loads((out / "models" / "grpo" / "train.json").read_text())["seen"]
    assert grpo["sequences"] == 2 * 2 * 8  # steps × processes × batch_size completions
    # every model evaluated through its server, then probed, compared and reported
    for model in ("base", *ARMS):
        manifest = RunDir(out / "runs" / model).manifest()
        assert manifest["engine"] == "openai" and manifest["engine_info"]["servers"], model
        assert (out / "runs" / model / "scores.json").exists()
    assert all((out / "probes" / arm / "latent.json").exists() for arm in ARMS)
    html = (out / "report.html").read_text()
    assert all(arm in html for arm in ARMS) and (out / "ti.json").exists()


def test_scores_through_the_server_equal_the_in_process_engines(rehearsal, tmp_path):
    """The base, evaluated through `transformers serve` by the study, and in process with the same greedy settings:
    the same answer to every document."""
    out, _ = rehearsal
    served = RunDir(out / "runs" / "base")
    spec = EngineSpec(served.manifest()["model"], dtype="float32", batch_size=8)
    local = RunDir(tmp_path / "local")
    evaluate_spec(spec, local.path, "lab", limit=6)
    for benchmark in served.benchmarks():
        theirs = {(r.doc_id, r.sample): r for r in served.records(benchmark)}
        ours = {(r.doc_id, r.sample): r for r in local.records(benchmark)}
        assert theirs.keys() == ours.keys(), benchmark
        for key, record in ours.items():
            assert theirs[key].response == record.response, (benchmark, key)
            assert theirs[key].grade == record.grade


def test_a_rerun_reuses_every_node_and_starts_no_server(rehearsal, cache):
    out, _ = rehearsal
    before = {p.name: p.stat().st_size for p in (out / "logs").glob("serve-*.log")}
    done = study("rehearsal", out, cache)
    lines = [line for line in done.stderr.splitlines() if line.startswith("study: [")]
    assert lines and all(line.endswith("done earlier, reused") for line in lines), lines
    assert {p.name: p.stat().st_size for p in (out / "logs").glob("serve-*.log")} == before


def changed(tmp_path: Path, arm: str, setting: str) -> Path:
    """The rehearsal config with one more recipe override for one arm."""
    text = config_path("rehearsal").read_text()
    head, sep, tail = text.partition(f'name = "{arm}"')
    tail = tail.replace('set = ["', f'set = ["{setting}", "', 1)
    path = tmp_path / "rehearsal.toml"
    path.write_text(head + sep + tail)
    return path


def test_a_changed_save_cadence_reruns_nothing(rehearsal, cache, tmp_path):
    out, _ = rehearsal
    done = study(changed(tmp_path, "grpo", "save_every=2"), out, cache)
    lines = [line for line in done.stderr.splitlines() if line.startswith("study: [")]
    assert all(line.endswith("done earlier, reused") for line in lines), lines
    assert not (out / "stale").exists()


def test_a_changed_learning_rate_moves_the_old_arm_aside_and_trains_it_again(rehearsal, cache, tmp_path):
    out, _ = rehearsal
    old = json.loads((out / "manifest.json").read_text())["stages"]["train:grpo"]["key"]
    old_weights = (out / "models" / "grpo" / "model.safetensors").read_bytes()
    study(changed(tmp_path, "grpo", "lr=5e-4"), out, cache, "--only", "train")
    aside = out / "stale" / f"train-grpo-{old}" / "grpo"
    assert (aside / "model.safetensors").read_bytes() == old_weights  # the old arm kept whole
    info = json.loads((out / "models" / "grpo" / "train.json").read_text())
    assert info["recipe"]["lr"] == 5e-4 and info["finished"]
    assert sorted(p.name for p in (out / "stale").iterdir()) == [f"train-grpo-{old}"]  # nothing else moved
