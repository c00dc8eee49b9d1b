"""Every training method in 2 real processes (gloo on the CPU) through the shipped accelerate config, as users
launch them on GPUs: one log line per step, a valid train.json that says how the run was executed, a final model
equal to the last checkpoint, and a run killed after a checkpoint that resumes to the uninterrupted run's weights.

`accelerate launch --cpu` starts ONE process whatever --num_processes says, so these use the shipped ddp.yaml
(2 processes over gloo on a CPU-only machine) and assert the world size each run recorded.
"""

import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
from safetensors.torch import load_file

DDP = str(files("rtransfer") / "data" / "accelerate" / "ddp.yaml")
STEPS = {
    "sft": ["batch_size=4", "max_queries=64"],
    "onpolicy": ["batch_size=16", "rollouts=4", "max_completion_length=48"],
    "grpo": ["batch_size=16", "rollouts=4", "max_completion_length=48"],
    "opd": ["batch_size=8", "max_completion_length=48"],  # the quick base's teacher model, built by the main process
}
COMMON = ["max_steps=4", "save_every=2", "log_every=1"]


def launch_command(method: str, out: Path) -> list[str]:
    sets = [a for s in [*COMMON, *STEPS[method]] for a in ("--set", s)]
    return [
        *(sys.executable, "-m", "accelerate.commands.launch", "--config_file", DDP, "--num_processes", "2"),
        *("-m", "rtransfer.cli", "train", method, "--model", "lab:quick", "--out", str(out), *sets),
    ]


def environment(**extra: str) -> dict[str, str]:
    # One torch thread per process (2 processes on 2 cores); the lab base comes from this test's cache.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


# Loaded by every Python process of a launch through PYTHONPATH: once checkpoint-N is written by all processes,
# the main process SIGKILLs its process group (the launcher then stops the other rank), as a failing node would,
# at a known point instead of a timed one (a lab step takes 0.1 s).
KILLER = """
import os, signal
step = int(os.environ["KILL_AFTER_CHECKPOINT"])
from transformers import trainer as _trainer
_save = _trainer.Trainer._save_checkpoint
def _save_then_die(self, *args, **kwargs):
    _save(self, *args, **kwargs)
    self.accelerator.wait_for_everyone()
    if self.state.global_step == step and self.is_world_process_zero():
        os.killpg(os.getpgid(0), signal.SIGKILL)
_trainer.Trainer._save_checkpoint = _save_then_die
"""


def run(method: str, out: Path) -> None:
    done = subprocess.run(launch_command(method, out), env=environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def train_info(out: Path) -> dict:
    return json.loads((out / "train.json").read_text())


def tensors(path: Path) -> dict:
    return load_file(str(path / "model.safetensors"))


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].equal(b[k]) for k in a)


@pytest.fixture(scope="module")
def lab_quick():
    from rtransfer.lab.build import resolve_model

    return resolve_model("lab:quick")  # built once, before two processes would race to build it


@pytest.mark.parametrize("method", ["sft", "onpolicy", "grpo", "opd"])
def test_two_processes_write_one_run_and_resume_after_a_kill(tmp_path, monkeypatch, lab_quick, method):
    full = tmp_path / "full"
    run(method, full)
    info = train_info(full)
    assert info["execution"]["processes"] == 2 and info["execution"]["backend"] == "gloo"  # really 2 processes
    assert info["finished"] and info["steps"] == 4 and info["saved_dtype"] == "float32"
    log = [json.loads(line) for line in (full / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4]  # each step once, not once per process
    final = tensors(full)
    assert same_weights(final, tensors(full / "checkpoints" / "checkpoint-4"))
    assert not same_weights(final, tensors(Path(lab_quick)))
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(full)  # loads: every weight present

    killed = tmp_path / "killed"
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(KILLER)
    env = environment(KILL_AFTER_CHECKPOINT="2", PYTHONPATH=str(tmp_path / "hook"))
    process = subprocess.run(launch_command(method, killed), env=env, start_new_session=True, capture_output=True)
    assert process.returncode != 0 and b"Signal 9 (SIGKILL)" in process.stderr, process.stderr[-3000:]
    assert not train_info(killed)["finished"] and not (killed / "model.safetensors").exists()
    assert [p.name for p in (killed / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]
    run(method, killed)
    assert train_info(killed)["resumed_from_step"] == 2
    assert same_weights(tensors(killed), final)
    resumed_log = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in resumed_log] == [1, 2, 3, 4]


BARRIER = """
import os, sys, time
from pathlib import Path
from rtransfer.train import ranks
flag = Path(sys.argv[1])
if ranks.is_main():
    time.sleep(2)  # the other process reaches the barrier long before
    flag.write_text("written")
ranks.wait_for_everyone()
assert flag.exists(), "passed the barrier before the main process wrote"
ranks.wait_for_everyone()  # a second barrier holds too (the first one starts the process group)
"""


def test_the_barrier_holds_every_process_until_the_main_one_arrives(tmp_path):
    """What the lab teacher and the lab base build rely on: the other processes read what the main one wrote.
    (accelerate's PartialState.wait_for_everyone returned at once on a CPU launch before any trainer existed.)"""
    script = tmp_path / "barrier.py"
    script.write_text(BARRIER)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", DDP, "--num_processes", "2"]
    done = subprocess.run([*launch, str(script), str(tmp_path / "flag")], env=environment(), capture_output=True)
    assert done.returncode == 0, done.stderr[-3000:]
