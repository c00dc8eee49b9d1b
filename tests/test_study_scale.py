"""The real study's plan without a GPU or the hub: keys that never lose work (how a run executes is not keyed; data
is keyed by content), teacher stages, servers the study starts, launchers resolved from this interpreter, and dry
runs that refuse what cannot run with one line each."""

import json
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path

import pytest

from rtransfer.engines.serve import VLLM
from rtransfer.errors import RtransferError
from rtransfer.specs import EvalSpec, StepEvalSpec, TeacherSpec, TrainSpec, from_json
from rtransfer.study import plan as plan_module
from rtransfer.study.config import StudyConfigError, load_study
from rtransfer.study.execute import _on_devices, launch_command
from rtransfer.study.launch import launch_processes, resolved_launcher
from rtransfer.study.plan import StudyError, plan
from rtransfer.study.run import dry_run_summary, model_bytes


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "study.toml"
    path.write_text('name = "t"\nbase = "lab:quick"\n' + text)
    return str(path)


def trains(config, out: Path) -> dict[str, TrainSpec]:
    return {n.spec.model.name: n.spec for n in plan(config, out, dry_run=True).nodes if isinstance(n.spec, TrainSpec)}


def arm_key(tmp_path: Path, *settings: str, launch: str = "", data: str = "") -> str:
    sets = json.dumps(["max_steps=4", *settings])
    extra = (f"launch = {launch}\n" if launch else "") + (f'data = "{data}"\n' if data else "")
    config = load_study(write_config(tmp_path, f'[[arms]]\nname = "g"\nmethod = "grpo"\nset = {sets}\n{extra}'))
    return trains(config, tmp_path / "s")["g"].key()


# --- keys that never lose work -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        "save_every=7",
        "keep_checkpoints=5",
        "log_every=3",
        "vllm_mode=server",
        "vllm_server_base_url=http://node2:8000",
        "vllm_gpu_memory_utilization=0.5",
        "gradient_checkpointing=true",
    ],
)
def test_how_an_arm_runs_is_not_in_its_key(tmp_path, setting):
    assert arm_key(tmp_path, setting) == arm_key(tmp_path)


@pytest.mark.parametrize("setting", ["lr=5e-4", "seed=3", "rollouts=4", "max_queries=16", "temperature=0.7"])
def test_what_defines_the_weights_is_in_the_key(tmp_path, setting):
    assert arm_key(tmp_path, setting) != arm_key(tmp_path)


def test_a_launcher_is_keyed_by_its_process_count_only(tmp_path):
    """batch_size is per process, so the count sets the global batch; the launcher's other flags, its config file
    and an environment prefix only say how the processes start."""
    two = '["accelerate", "launch", "--config_file", "{ddp}", "--num_processes", "2"]'
    two_env = '["CUDA_VISIBLE_DEVICES=0,1", "accelerate", "launch", "--num_processes=2", "--main_process_port", "0"]'
    four = '["accelerate", "launch", "--config_file", "{ddp}", "--num_processes", "4"]'
    assert arm_key(tmp_path, launch=two) == arm_key(tmp_path, launch=two_env)
    assert arm_key(tmp_path, launch=two) != arm_key(tmp_path, launch=four)
    assert arm_key(tmp_path, launch='["torchrun", "--nproc_per_node", "1"]') == arm_key(tmp_path)


def test_local_data_is_keyed_by_its_content_not_its_path(tmp_path):
    rows = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in rows))
    b.write_text(a.read_text())
    assert arm_key(tmp_path, data=str(a)) == arm_key(tmp_path, data=str(b))
    b.write_text(a.read_text().replace("What is 0", "What is zero"))
    assert arm_key(tmp_path, data=str(a)) != arm_key(tmp_path, data=str(b))


def test_hub_data_is_keyed_by_its_revision_where_known(tmp_path, monkeypatch):
    revisions = {"org/queries": "a" * 40}
    monkeypatch.setattr(plan_module, "hub_revision", lambda name, kind="dataset": revisions.get(name))
    first = arm_key(tmp_path, data="org/queries")
    revisions["org/queries"] = "b" * 40
    assert arm_key(tmp_path, data="org/queries") != first
    spec = trains(
        load_study(write_config(tmp_path, '[[arms]]\nname = "g"\nmethod = "grpo"\ndata = "org/queries"\n')), tmp_path
    )
    assert spec["g"].data_identity == {"hub": "org/queries", "revision": "b" * 40, "column": None}


def test_a_missing_local_data_file_is_refused_before_anything_runs(tmp_path):
    config = load_study(write_config(tmp_path, '[[arms]]\nname = "s"\nmethod = "sft"\ndata = "traces/none.jsonl"\n'))
    with pytest.raises(StudyError, match=r"training data traces/none.jsonl does not exist") as info:
        plan(config, tmp_path / "s", dry_run=True)
    assert "\n" not in str(info.value)


def test_a_field_added_at_its_default_keeps_every_key(tmp_path):
    """Upgrading rtransfer adds fields to specs; at their defaults they leave the keys as they were (no rerun)."""

    @dataclass(frozen=True)
    class Later(TrainSpec):
        new_knob: int = 0

    spec = trains(load_study("lab", quick=True), tmp_path)["grpo"]
    later = Later(**{f.name: getattr(spec, f.name) for f in fields(spec)})
    assert later.key() == spec.key()
    assert replace(later, new_knob=1).key() != spec.key()


def test_a_resumed_run_accepts_a_changed_save_cadence(tmp_path):
    from rtransfer.train.config import load_recipe
    from rtransfer.train.outputs import RunMismatchError, TrainDir

    out = TrainDir(tmp_path / "arm")
    assert out.start(load_recipe("sft", None, ["save_every=2"]), "base", {"hash": "x"}) == 0
    assert out.start(load_recipe("sft", None, ["save_every=5", "log_every=1"]), "base", {"hash": "x"}) == 0
    with pytest.raises(RunMismatchError):
        out.start(load_recipe("sft", None, ["lr=0.5"]), "base", {"hash": "x"})


# --- launchers ---------------------------------------------------------------------------------------------------


def test_launchers_run_with_this_interpreter_not_from_path():
    assert resolved_launcher(["accelerate", "launch", "--num_processes", "2"]) == [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
    ]
    assert resolved_launcher(["CUDA_VISIBLE_DEVICES=4,5", "torchrun", "--nproc_per_node=2"]) == [
        "env",
        "CUDA_VISIBLE_DEVICES=4,5",
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
    ]
    assert resolved_launcher(["accelerate", "launch", "--config_file", "{zero3}"])[-1].endswith("zero3.yaml")
    with pytest.raises(RtransferError, match="followed by `launch`"):
        resolved_launcher(["accelerate", "--num_processes", "2"])


@pytest.mark.parametrize(
    ("launch", "processes"),
    [
        ([], 1),
        (["accelerate", "launch", "--config_file", "{zero3}", "--num_processes", "8"], 8),
        (["accelerate", "launch", "--config_file", "{ddp}"], 8),  # the shipped ddp.yaml says 8
        (["torchrun", "--nnodes", "2", "--nproc-per-node", "4"], 8),
        (["accelerate", "launch", "--num_machines=2", "--num_processes=8"], 16),
    ],
)
def test_the_process_count_is_read_from_the_launcher(launch, processes):
    assert launch_processes(launch) == processes


# --- the teacher stage ---------------------------------------------------------------------------------------------

TEACHER = """
[[teachers]]
name = "think"
model = "lab:quick"
thinking = "on"
max_queries = 16
[[arms]]
name = "sft"
method = "sft"
data = "teacher:think"
"""


def test_an_sft_arm_trains_on_its_teachers_traces_keyed_by_the_teacher(tmp_path):
    config = load_study(write_config(tmp_path, TEACHER))
    planned = plan(config, tmp_path / "s", dry_run=True)
    teacher = next(n.spec for n in planned.nodes if isinstance(n.spec, TeacherSpec))
    arm = trains(config, tmp_path / "s")["sft"]
    assert teacher.out == str(tmp_path / "s" / "traces" / "think.jsonl") and arm.data == teacher.out
    assert arm.data_identity == {"teacher": teacher.key()} and arm.after == {"teacher:think": teacher.key()}
    assert teacher.max_new_tokens == 1024  # the lab SFT recipe's max_length
    assert teacher.engine.thinking is True and teacher.engine.engine == "hf"
    names = [n.name for n in planned.nodes]
    assert names.index("teacher:think") < names.index("train:sft")
    changed = load_study(write_config(tmp_path, TEACHER.replace("max_queries = 16", "max_queries = 17")))
    assert trains(changed, tmp_path / "s")["sft"].key() != arm.key()  # other traces, another arm


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TEACHER.replace('data = "teacher:think"', 'data = "teacher:other"'), "names no \\[\\[teachers\\]\\] entry"),
        (TEACHER.replace('method = "sft"', 'method = "grpo"'), "SFT data, not grpo queries"),
        (TEACHER.replace('thinking = "on"', 'thinking = "maybe"'), "thinking 'maybe'"),
        (TEACHER.replace("max_queries = 16", "samples = 4"), "at temperature 0 are one answer"),
    ],
)
def test_bad_teachers_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(StudyConfigError, match=message) as info:
        load_study(write_config(tmp_path, text))
    assert "\n" not in str(info.value)


# --- servers the study starts ----------------------------------------------------------------------------------


SERVED = TEACHER + '[eval]\nsuite = "lab_arith"\n[eval.serve]\ncommand = ["vllm"]\nparallel = 2\ndevices = ["0", "1"]\n'


def test_every_model_and_teacher_is_evaluated_through_a_started_server(tmp_path):
    planned = plan(load_study(write_config(tmp_path, SERVED)), tmp_path / "s", dry_run=True)
    served = [n.spec for n in planned.nodes if isinstance(n.spec, EvalSpec | TeacherSpec)]
    assert {s.model.name for s in served} == {"think", "base", "sft"}
    for spec in served:
        assert spec.serve.command == VLLM and spec.engine.engine == "openai" and spec.serve.dtype == "bfloat16"
        assert spec.logs == str(tmp_path / "s" / "logs")
    # the device group is where a server runs, not what it answers: not in the key
    spec = served[-1]
    assert _on_devices(spec, "1").serve.devices == "1" and _on_devices(spec, "1").key() == spec.key()


def test_a_dry_run_lists_what_cannot_run_one_line_per_cause(tmp_path):
    """No vllm in this environment: every served node is named under one line."""
    planned = plan(load_study(write_config(tmp_path, SERVED)), tmp_path / "s", dry_run=True)
    from rtransfer.study.ledger import Ledger

    summary = dry_run_summary(planned.nodes, Ledger.read(tmp_path / "none.json"), tmp_path / "s")
    assert summary["problems"] == [
        f"teacher:think, eval:base, eval:sft: server command '{Path(sys.executable).parent / 'vllm'}' is not an "
        "executable file"
    ]


def test_a_model_too_large_for_this_machine_in_process_is_refused():
    assert model_bytes("Qwen/Qwen3-14B-Base", "bfloat16") == 28_000_000_000
    assert model_bytes("Qwen/Qwen2.5-Math-7B", "float32") == 28_000_000_000
    assert model_bytes("my-model", "auto") is None


def test_the_shipped_real_configs_plan_teachers_servers_and_launches(tmp_path):
    for name in ("qwen3-0.6b", "unireason"):
        planned = plan(load_study(name), tmp_path / name, dry_run=True)
        kinds = {n.name.split(":")[0] for n in planned.nodes}
        assert {"teacher", "train", "eval", "probes", "ti", "report"} <= kinds
        sft = [n.spec for n in planned.nodes if isinstance(n.spec, TrainSpec) and n.spec.method == "sft"]
        assert sft and all(set(s.after) <= {"teacher:think", "teacher:nothink"} and s.after for s in sft)
        assert all(n.spec.serve is not None for n in planned.nodes if isinstance(n.spec, EvalSpec | TeacherSpec))
    unireason = plan(load_study("unireason"), tmp_path / "u", dry_run=True)
    for node in unireason.nodes:
        if isinstance(node.spec, TrainSpec):
            assert node.spec.processes == 8
            assert launch_command(node, tmp_path / "u")[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert not [n for n in unireason.nodes if isinstance(n.spec, StepEvalSpec)]


def test_survey_ids_of_the_authors_are_confirmed():
    text = (Path(__file__).parents[1] / "src/rtransfer/data/studies/survey.toml").read_text()
    unireason = [line for line in text.splitlines() if "ReasoningTransferability/UniReason" in line]
    assert len(unireason) == 3 and not any("check the hub" in line for line in unireason)


def test_served_and_teacher_specs_read_back_as_themselves(tmp_path):
    planned = plan(load_study(write_config(tmp_path, SERVED)), tmp_path / "s", dry_run=True)
    for node in planned.nodes:
        again = from_json(json.loads(json.dumps(node.spec.to_json())))
        assert again == node.spec and again.key() == node.key


def test_the_dry_run_states_each_arms_data_budget(tmp_path):
    from rtransfer.study.ledger import Ledger

    planned = plan(load_study("qwen3-0.6b"), tmp_path / "s", dry_run=True)
    training = dry_run_summary(planned.nodes, Ledger.read(tmp_path / "none.json"), tmp_path / "s")["training"]
    assert {arm: t["budget"]["queries"] for arm, t in training.items()} == dict.fromkeys(training, 1280)
    grpo = training["grpo"]["budget"]
    assert grpo["query draws"] == grpo["prompts per step"] * grpo["steps"]


def test_arms_train_in_child_processes_on_a_gpu_machine(monkeypatch, tmp_path):
    """Each arm then starts with the GPU's memory free (review A3); on a CPU, in turn in this process."""
    from rtransfer.study import execute

    node = next(n for n in plan(load_study("lab", quick=True), tmp_path, dry_run=True).nodes if n.kind == "train")
    assert execute._slots(node, 1, ()) == []
    monkeypatch.setattr(execute, "gpu_machine", lambda: True)
    assert execute._slots(node, 1, ()) == [None]


def test_checkpoint_evaluations_start_a_server_per_checkpoint(tmp_path):
    text = SERVED.replace('data = "teacher:think"', 'data = "teacher:think"\nset = ["save_every=2"]')
    config = load_study(
        write_config(tmp_path, text.replace('suite = "lab_arith"', 'suite = "lab_arith"\neval_every = 2'))
    )
    planned = plan(config, tmp_path / "s", dry_run=True)
    steps = next(n.spec for n in planned.nodes if isinstance(n.spec, StepEvalSpec))
    assert steps.template.serve is not None
    from rtransfer.study.ledger import Ledger

    summary = dry_run_summary(planned.nodes, Ledger.read(tmp_path / "none.json"), tmp_path / "s")
    assert "CHECKPOINT" in summary["servers"]["steps:sft"]
