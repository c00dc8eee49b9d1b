"""Transfer monitoring as users run it: TRL's own trainers in a script of theirs, with TransferCallback, the metrics
read back from TensorBoard's files; and `rtransfer watch` on a folder that receives checkpoints while it watches."""

import json
from pathlib import Path

import pytest

from rtransfer.lab.build import resolve_model
from rtransfer.train.data import load_queries

LIMIT = 6  # documents per lab benchmark: seconds per evaluation on the quick lab model
NAMES = ("Δmath", "Δother", "Δnon", "TI_other", "TI_non")


@pytest.fixture(scope="module")
def base() -> str:
    return resolve_model("lab:quick")


def user_script(model: str, out: Path, method: str = "sft", steps: int = 4, monitor: bool = True, **transfer):
    """What a user writes: TRL's trainer on their data, reporting to TensorBoard, with the callback added (with
    `transfer`'s settings) unless not `monitor`. Returns the trainer after training."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

    from rtransfer.integrations.trl import TransferCallback

    queries = load_queries("lab", limit=16)
    common = {
        "output_dir": str(out),
        "max_steps": steps,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "report_to": ["tensorboard"],
        "save_strategy": "no",
        "use_cpu": True,
        "seed": 0,
        "disable_tqdm": True,
    }
    tokenizer = AutoTokenizer.from_pretrained(model)
    if method == "sft":
        rows = [{"prompt": q.prompt, "completion": f" The answer is {q.answer}."} for q in queries]
        args = SFTConfig(per_device_train_batch_size=4, **common)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    else:

        def reward(completions, answer, **_):
            return [float(str(a) in c) for c, a in zip(completions, answer, strict=True)]

        rows = [{"prompt": q.prompt, "answer": q.answer} for q in queries]
        args = GRPOConfig(per_device_train_batch_size=8, num_generations=4, max_completion_length=16, **common)
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
    if monitor:
        settings = {"base": model, "suite": "lab", "limit": LIMIT, "bootstrap": 200} | transfer
        trainer.add_callback(TransferCallback(trainer, **settings))
    trainer.train()
    return trainer


def tensorboard_scalars(out: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, dict[int, float]] = {}
    for events in out.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            tag_name = tag.removeprefix("train/")
            scalars.setdefault(tag_name, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return scalars


def rtransfer_ti(cli, capsys, base_dir: Path, step_dir: Path) -> dict:
    capsys.readouterr()  # what training printed
    code, out, _ = cli("ti", str(base_dir), str(step_dir), "--base", str(base_dir), "--json", "--bootstrap", "200")
    assert code in (0, 1)  # 1: the TI is undefined (no math gain after a few steps); the row is printed all the same
    (row,) = json.loads(out)
    return row


def expected(row: dict) -> dict[str, float]:
    """rtransfer ti's JSON row as the callback's metric names."""
    values = {f"Δ{g}": row["change"][g] for g in ("math", "other", "non")}
    values |= {f"Δ{g}_low": row["change_ci"][g][0] for g in ("math", "other", "non")}
    values |= {f"TI_{g}": row[f"TI_{g}"] for g in ("other", "non") if row[f"TI_{g}"] is not None}
    return values


@pytest.mark.parametrize("method", ["sft", "grpo"])
def test_a_trl_script_logs_the_transfer_that_rtransfer_ti_computes_to_tensorboard(tmp_path, base, cli, capsys, method):
    trainer = user_script(base, tmp_path / "run", method, every=2)
    scalars = tensorboard_scalars(tmp_path / "run")
    history = {row["step"]: row for row in trainer.state.log_history if "transfer/Δmath" in row}
    monitor = tmp_path / "run" / "transfer"
    (base_dir,) = monitor.glob("base-*")
    for step in (2, 4):
        want = expected(rtransfer_ti(cli, capsys, base_dir, monitor / f"step-{step}"))
        assert {"Δmath", "Δother", "Δnon"} <= set(want)
        for name, value in want.items():  # TensorBoard keeps float32
            assert scalars[f"transfer/{name}"][step] == pytest.approx(value, rel=1e-6, abs=1e-6), (name, step)
            assert history[step][f"transfer/{name}"] == value  # the trainer's own log history, exactly
    lines = (monitor / "transfer.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4]
    assert scalars["loss"] and set(scalars["loss"]) >= {1, 2, 3, 4}  # the trainer's own logs go on as before


def test_the_callback_leaves_training_as_it_was(tmp_path, base):
    with_it = user_script(base, tmp_path / "with", every=1)
    without = user_script(base, tmp_path / "without", monitor=False)
    for a, b in zip(with_it.model.parameters(), without.model.parameters(), strict=True):
        assert a.detach().equal(b.detach())
    assert len((tmp_path / "with" / "transfer" / "transfer.jsonl").read_text().splitlines()) == 4


def test_forgetting_is_said_once_and_can_stop_training(tmp_path, base, capfd):
    # Every change's CI lies below 1000 points: an alert for other and non-reasoning at the first point.
    trainer = user_script(base, tmp_path / "run", every=2, threshold=1000.0, stop_on_forgetting=True)
    err = capfd.readouterr().err
    assert err.count("rtransfer: forgetting: other:") == 1 and err.count("rtransfer: forgetting: non:") == 1
    assert trainer.state.global_step == 2 and (tmp_path / "run" / "checkpoint-2" / "model.safetensors").exists()
    points = [json.loads(line) for line in (tmp_path / "run" / "transfer" / "transfer.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points] == [2] and len(points[0]["alerts"]) == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"suite": "lab_arith,no_such_benchmark"}, "no_such_benchmark"),
        ({"base": "tiny"}, "another tokenizer than the trained model"),
    ],
)
def test_bad_input_is_one_line_and_training_goes_on(tmp_path, base, tiny_model, capfd, settings, message):
    settings = {k: str(tiny_model) if v == "tiny" else v for k, v in settings.items()}
    trainer = user_script(base, tmp_path / "run", every=2, **settings)
    lines = [line for line in capfd.readouterr().err.splitlines() if "TransferCallback is off" in line]
    assert len(lines) == 1 and message in lines[0]
    assert trainer.state.global_step == 4


def test_watch_measures_each_checkpoint_as_it_appears_and_a_restart_repeats_nothing(tmp_path, base, cli, capsys):
    """A run's folder receives checkpoints while `rtransfer watch` looks at it; the watcher is killed after the
    first and started again once the second is there: each step is measured once, with the callback's metrics."""
    import os
    import shutil
    import signal
    import subprocess
    import sys

    trained = user_script(base, tmp_path / "trained", steps=2, monitor=False)
    run = tmp_path / "run"
    run.mkdir()
    command = [sys.executable, "-m", "rtransfer.cli", "watch", str(run), "--base", base, "--limit", str(LIMIT)]
    command += ["--bootstrap", "200", "--interval", "0.5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def checkpoint(step: int, model) -> None:  # written elsewhere, then moved in whole, as a trainer's rename would
        model.save_pretrained(tmp_path / f"tmp-{step}")
        trained.processing_class.save_pretrained(tmp_path / f"tmp-{step}")
        shutil.move(tmp_path / f"tmp-{step}", run / f"global_step_{step}")

    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        checkpoint(2, trained.model)
        line = watcher.stdout.readline()  # blocks until the watcher has measured it
        assert line.startswith("step 2: Δmath"), line
    finally:
        watcher.send_signal(signal.SIGKILL)
        watcher.wait()
    measured = (run / "transfer" / "step-2" / "scores.json").stat().st_mtime_ns
    checkpoint(5, trained.model)
    again = subprocess.run([*command, "--once"], capture_output=True, text=True, env=env, check=True)
    assert [line.split(":")[0] for line in again.stdout.splitlines()] == ["step 5"]
    assert (run / "transfer" / "step-2" / "scores.json").stat().st_mtime_ns == measured
    points = [json.loads(line) for line in (run / "transfer" / "transfer.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points] == [2, 5]
    assert (run / "transfer" / "transfer.png").read_bytes().startswith(b"\x89PNG")
    # The monitor folder as a report: the last step against the base, and the TI over the measured steps.
    code, _, err = cli("report", run / "transfer")
    assert code == 0, err
    html = (run / "transfer" / "report" / "report.html").read_text()
    assert code == 0 and "TI over training steps" in html and "No checkpoints were evaluated" not in html
    steps = (run / "transfer" / "report" / "tables" / "ti_steps.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in steps[1:]] == ["2", "5"]
    (base_dir,) = (run / "transfer").glob("base-*")
    want = expected(rtransfer_ti(cli, capsys, base_dir, run / "transfer" / "step-5"))
    assert {k: v for k, v in points[1]["metrics"].items() if k.removeprefix("transfer/") in want} == {
        f"transfer/{k}": v for k, v in want.items()
    }


# A user's script, launched in 2 processes (gloo) through the shipped accelerate config.
DDP_SCRIPT = """
import json, sys
from pathlib import Path
from datasets import Dataset
from transformers import AutoTokenizer
from trl import SFTConfig, SFTTrainer
from rtransfer.integrations.trl import TransferCallback
from rtransfer.train.data import load_queries

base, out, settings = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
rows = [{"prompt": q.prompt, "completion": f" The answer is {q.answer}."} for q in load_queries("lab", limit=16)]
args = SFTConfig(output_dir=str(out), max_steps=4, per_device_train_batch_size=2, learning_rate=1e-3, logging_steps=1,
                 report_to=["tensorboard"], save_strategy="no", seed=0, disable_tqdm=True, use_cpu=True)
tokenizer = AutoTokenizer.from_pretrained(base)
trainer = SFTTrainer(model=base, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
trainer.add_callback(TransferCallback(trainer, base=base, suite="lab", limit=6, every=2, bootstrap=200, **settings))
trainer.train()
done = {"world_size": args.world_size, "step": trainer.state.global_step}
(out / f"world-{args.process_index}.json").write_text(json.dumps(done))
trainer.accelerator.end_training()  # ends the process group, as a launched script should (docs/monitoring.md)
"""


@pytest.mark.parametrize("stop", [False, True])
def test_under_two_processes_the_main_one_measures_and_every_logger_gets_it(tmp_path, base, stop):
    """The main process measures; every process logs at the measured steps and, with stop_on_forgetting, stops
    where the main one found forgetting (a threshold every change lies under), so no collective waits forever."""
    import os
    import subprocess
    import sys
    from importlib.resources import files

    script, out = tmp_path / "train.py", tmp_path / "run"
    script.write_text(DDP_SCRIPT)
    ddp = str(files("rtransfer") / "data" / "accelerate" / "ddp.yaml")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", ddp, "--num_processes", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    settings = json.dumps({"threshold": 1000.0, "stop_on_forgetting": True} if stop else {})
    done = subprocess.run(
        [*command, str(script), base, str(out), settings], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ends = [json.loads((out / f"world-{r}.json").read_text()) for r in (0, 1)]
    steps = [2] if stop else [2, 4]
    assert ends == [{"world_size": 2, "step": steps[-1]}] * 2
    assert done.stderr.count("rtransfer: transfer at step") == len(steps)  # the main process measured, once each
    lines = (out / "transfer" / "transfer.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == steps
    scalars = tensorboard_scalars(out)
    assert set(scalars["transfer/Δmath"]) == set(steps) and set(scalars["loss"]) == set(range(1, steps[-1] + 1))


def test_watch_reads_a_checkpoint_once_it_is_whole(tmp_path):
    """A TRL checkpoint once trainer_state.json is there; another once its files are unchanged between two looks
    (or at once for a finished run); verl's actor/huggingface and a bare step folder; other folders never."""
    from rtransfer.commands.watch import whole_checkpoints

    def model_at(folder: Path) -> Path:
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        return folder

    trl = model_at(tmp_path / "checkpoint-10")
    verl = model_at(tmp_path / "global_step_20" / "actor" / "huggingface")
    plain = model_at(tmp_path / "step-30")
    model_at(tmp_path / "final")
    (tmp_path / "checkpoint-40").mkdir()  # no model in it yet
    seen: dict = {}
    assert whole_checkpoints(tmp_path, seen) == []
    (trl / "trainer_state.json").write_text("{}")
    assert whole_checkpoints(tmp_path, seen) == [(10, trl), (20, verl), (30, plain)]  # unchanged since the last look
    (plain / "model.safetensors").write_text("still being written")
    assert whole_checkpoints(tmp_path, seen) == [(10, trl), (20, verl)]
    assert whole_checkpoints(tmp_path, {}, finished=True) == [(10, trl), (20, verl), (30, plain)]
