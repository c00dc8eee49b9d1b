"""The final save of a sharded model (train/gather.py), on CPU.

FSDP2 is the stand-in for every "partitioned parameters at save time" case: two real processes over gloo, the tiny
model `fully_shard`-ed per decoder layer and at the root, as accelerate's FSDP2 does. This file is also the
workers' script: `torchrun --nproc_per_node 2 tests/test_sharded_save.py TINY OUT` runs `_worker` in each process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rtransfer.train.gather import base_dtype, full_state_dict, save_pretrained_full

BATCH = (2, 16)  # rows, tokens
LR = 1e-3


def _batch(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, BATCH, generator=torch.Generator().manual_seed(1))


def _load(path, **kwargs):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def _step(model, input_ids: torch.Tensor) -> None:
    """One AdamW step on the mean token loss of `input_ids` (no padding: every token counts)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    model(input_ids=input_ids, labels=input_ids).loss.backward()
    optimizer.step()


def _worker(tiny: str, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    assert world == 2, world
    out = Path(out)
    mesh = init_device_mesh("cpu", (world,))
    model = _load(tiny, dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)

    facts = {
        "params": {
            name: {
                "dtensor": isinstance(p, DTensor),
                "placements": str(p.placements),
                "shape": list(p.shape),
                "local_shape": list(p.to_local().shape),
                "local_sum": p.to_local().sum().item(),
            }
            for name, p in model.named_parameters()
        },
        "tied": model.lm_head.weight is model.model.embed_tokens.weight,
    }
    # The bug class: transformers' own save of the sharded model.
    try:
        model.save_pretrained(out / "naive")
        facts["naive"] = None
    except Exception as err:
        facts["naive"] = f"{type(err).__name__}: {err}"
    dist.barrier()

    state = full_state_dict(model)
    facts["gathered"] = None if state is None else len(state)
    if state is not None:
        save_pretrained_full(model, state, out / "initial", torch.float32)
        save_pretrained_full(model, state, out / "initial-bf16", torch.bfloat16)

    # The same rows on both ranks: FSDP2's gradient average (g + g) / 2 is then g exactly, so the sharded step
    # must match one process's step bit for bit, and any difference is the gather's.
    _step(model, _batch(model.config.vocab_size))
    # With the accelerator a Trainer holds on a CPU-only machine (use_cpu): it reports MULTI_CPU, not FSDP.
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    facts["distributed_type"] = str(accelerator.distributed_type)
    state = full_state_dict(model, accelerator)
    if state is not None:
        save_pretrained_full(model, state, out / "stepped", torch.float32)
    (out / f"facts-{rank}.json").write_text(json.dumps(facts))
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def sharded(tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sharded")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, __file__, str(tiny_model), str(out)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return out


def _facts(sharded: Path, rank: int) -> dict:
    return json.loads((sharded / f"facts-{rank}.json").read_text())


def _loaded(path: Path):
    model, info = _load(path, output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}, info  # no missing, unexpected or mismatched keys
    return model


def _assert_same_weights(model, reference) -> None:
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name


def test_fully_shard_splits_every_parameter_between_the_two_ranks(sharded):
    zero, one = _facts(sharded, 0), _facts(sharded, 1)
    assert zero["tied"] and one["tied"]
    assert zero["params"].keys() == one["params"].keys() and len(zero["params"]) == 24  # lm_head is the embedding
    for name, p in zero["params"].items():
        q = one["params"][name]
        assert p["dtensor"] and p["placements"] == "(Shard(dim=0),)", name
        assert p["local_shape"][0] + q["local_shape"][0] == p["shape"][0], name  # each rank holds half the rows
        assert p["local_shape"][0] < p["shape"][0], name
    # Different halves: the random-init matrices' shards differ between ranks.
    assert (
        zero["params"]["model.embed_tokens.weight"]["local_sum"]
        != one["params"]["model.embed_tokens.weight"]["local_sum"]
    )
    assert (zero["gathered"], one["gathered"]) == (25, None)  # full dict on rank 0 only (both tied names)
    assert zero["distributed_type"] == one["distributed_type"] == "DistributedType.MULTI_CPU"


def test_gathered_save_equals_the_unsharded_model(sharded, tiny_model):
    from safetensors import safe_open

    saved = _loaded(sharded / "initial")
    _assert_same_weights(saved, _load(tiny_model, dtype=torch.float32))
    assert saved.lm_head.weight.data_ptr() == saved.model.embed_tokens.weight.data_ptr()
    with safe_open(sharded / "initial" / "model.safetensors", "pt") as f:
        # The tied lm_head is written once, under the embedding's name, as save_pretrained does.
        assert "lm_head.weight" not in f.keys()  # noqa: SIM118 (safe_open has no __contains__)
        assert f.get_tensor("model.embed_tokens.weight").shape == (saved.config.vocab_size, 64)
    assert json.loads((sharded / "initial" / "config.json").read_text())["architectures"] == ["Qwen3ForCausalLM"]
    assert (sharded / "initial" / "generation_config.json").exists()


def test_gathered_save_in_bf16_holds_the_rounded_weights(sharded, tiny_model):
    saved = _loaded(sharded / "initial-bf16")
    assert saved.dtype == torch.bfloat16
    assert json.loads((sharded / "initial-bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    _assert_same_weights(saved, _load(tiny_model, dtype=torch.float32).to(torch.bfloat16))


def test_gathered_save_after_a_sharded_step_equals_the_same_step_in_one_process(sharded, tiny_model):
    reference = _load(tiny_model, dtype=torch.float32)
    _step(reference, _batch(reference.config.vocab_size))
    saved = _loaded(sharded / "stepped")
    base = _load(tiny_model, dtype=torch.float32).state_dict()
    for name, tensor in saved.state_dict().items():
        for half, before in zip(tensor.chunk(2), base[name].chunk(2), strict=True):  # rank 0's rows, rank 1's rows
            assert not torch.equal(half, before), name  # the step moved both ranks' shards
    _assert_same_weights(saved, reference)  # exactly: see _worker


def test_save_pretrained_of_the_sharded_model_writes_no_weights(sharded):
    from transformers import AutoModelForCausalLM

    assert _facts(sharded, 0)["naive"] == (
        "RuntimeError: Attempted to access the data pointer on an invalid python storage."
    )
    assert _facts(sharded, 1)["naive"] is None  # rank 1 writes nothing, so it does not fail
    assert sorted(p.name for p in (sharded / "naive").iterdir()) == ["config.json", "generation_config.json"]
    with pytest.raises(OSError, match=r"no file named model\.safetensors"):
        AutoModelForCausalLM.from_pretrained(sharded / "naive")


def _file_dtypes(path: Path) -> set[str]:
    """The dtypes written in a model directory's safetensors file."""
    from safetensors import safe_open

    with safe_open(path / "model.safetensors", "pt") as f:
        return {f.get_slice(name).get_dtype() for name in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_an_arm_is_saved_in_its_base_dtype(tiny_model, tmp_path, dtype):
    base = tmp_path / "base"
    _load(tiny_model, dtype=torch.float32).to(dtype).save_pretrained(base)
    assert base_dtype(str(base)) == dtype
    model = _load(base, dtype=torch.float32)  # training loads fp32 whatever the base (train/outputs.load_model)
    state = full_state_dict(model)  # one process: the model's own state dict
    assert state["lm_head.weight"] is state["model.embed_tokens.weight"]
    save_pretrained_full(model, state, tmp_path / "arm", base_dtype(str(base)))
    assert _file_dtypes(tmp_path / "arm") == {"BF16" if dtype == torch.bfloat16 else "F32"}
    assert json.loads((tmp_path / "arm" / "config.json").read_text())["dtype"] == str(dtype).removeprefix("torch.")
    arm = _loaded(tmp_path / "arm")
    assert arm.dtype == dtype
    _assert_same_weights(arm, _load(base))  # fp32 → base dtype of weights that came from it: exact
    assert model.dtype == torch.float32  # the live model is left as it was


def test_base_dtype_reads_the_config_only(tmp_path, monkeypatch):
    import huggingface_hub.constants

    def config(folder: Path, **fields) -> str:
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"model_type": "qwen3", **fields}))
        return str(folder)

    assert base_dtype(config(tmp_path / "old", torch_dtype="bfloat16")) == torch.bfloat16  # transformers 4 name
    assert base_dtype(config(tmp_path / "new", dtype="float16", torch_dtype="float32")) == torch.float16
    assert base_dtype(config(tmp_path / "none")) == torch.float32
    # A hub id: the cached config when there is one, float32 without an error (and no download) when not.
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert base_dtype("Qwen/Qwen3-0.6B-Base") == torch.float32
    repo = cache / "models--Qwen--Qwen3-0.6B-Base"
    config(repo / "snapshots" / "abc123", torch_dtype="bfloat16")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    assert base_dtype("Qwen/Qwen3-0.6B-Base") == torch.bfloat16
    assert base_dtype("lab:quick") == torch.float32  # neither a folder nor a hub id


@pytest.mark.filterwarnings("ignore:Port .* is already in use")  # the launcher's port check, not ours
def test_fsdp2_config_launches_fsdp2_with_sharded_checkpoints(monkeypatch):
    from importlib.resources import files

    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    path = str(files("rtransfer") / "data" / "accelerate" / "fsdp2.yaml")
    config = load_config_from_file(path)
    assert (config.distributed_type, config.num_processes, config.mixed_precision) == (DistributedType.FSDP, 8, "bf16")
    parser = launch_command_parser()
    # `accelerate launch` copies fsdp_config keys onto its arguments and silently keeps unknown ones: check names.
    assert set(config.fsdp_config) <= {action.dest for action in parser._actions}
    # What `accelerate launch --config_file fsdp2.yaml` hands each process (its environment), and the plugin the
    # Trainer's Accelerator builds from it.
    args, _, _ = _validate_launch_command(parser.parse_args(["--config_file", path, "train.py"]))
    for name, value in prepare_multi_gpu_env(args).items():
        monkeypatch.setenv(name, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.state_dict_type.name == "SHARDED_STATE_DICT"
    assert plugin.auto_wrap_policy is transformer_auto_wrap_policy and plugin.transformer_cls_names_to_wrap is None
    assert plugin.cpu_ram_efficient_loading and plugin.reshard_after_forward and not plugin.activation_checkpointing


if __name__ == "__main__":
    _worker(*sys.argv[1:])
