"""What the real-scale path decides before and after training, checked in one process: the trainer's config exists
before the model loads (DeepSpeed's zero.Init needs it), a bf16 base gives a bf16 arm, SFT drops and counts traces
longer than max_length, padding-free batches need flash attention, and --eval-every is refused under a launcher."""

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from rtransfer.train.config import RecipeError, load_recipe
from rtransfer.train.data import Trace, load_queries
from rtransfer.train.outputs import TrainDir


@pytest.fixture
def bf16_base(tiny_model, tmp_path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "bf16-base"
    AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def traces(n: int, words: int = 3) -> list[Trace]:
    return [Trace(str(i), f"What is {i} + {i}?", " ".join(["so"] * words) + f" \\boxed{{{2 * i}}}") for i in range(n)]


@pytest.mark.parametrize("method", ["sft", "onpolicy", "grpo"])
def test_the_trainers_config_exists_before_the_model_loads(monkeypatch, tiny_model, tmp_path, method):
    import trl
    from transformers import AutoModelForCausalLM

    events = []
    config = trl.SFTConfig if method == "sft" else trl.GRPOConfig
    post_init, load = config.__post_init__, AutoModelForCausalLM.from_pretrained.__func__

    def record_config(self):
        events.append("config")
        post_init(self)

    def record_load(cls, *args, **kwargs):
        events.append("model")
        return load(cls, *args, **kwargs)

    monkeypatch.setattr(config, "__post_init__", record_config)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(record_load))
    recipe = load_recipe(method, overrides=["max_steps=1", "batch_size=4", "rollouts=2"][: 1 if method == "sft" else 3])
    target = TrainDir(tmp_path / "t")
    if method == "sft":
        from rtransfer.train.sft import sft_trainer

        sft_trainer(str(tiny_model), traces(4), recipe, target)
    else:
        from rtransfer.train.grpo import grpo_trainer
        from rtransfer.train.onpolicy import onpolicy_trainer

        builder = onpolicy_trainer if method == "onpolicy" else grpo_trainer
        builder(str(tiny_model), load_queries("lab", limit=4), recipe, target)
    assert events[:2] == ["config", "model"]


def test_a_bf16_base_gives_a_bf16_arm(bf16_base, tmp_path):
    from transformers import AutoModelForCausalLM

    from rtransfer.train.sft import train_sft

    recipe = load_recipe("sft", overrides=["max_steps=2", "save_every=2", "batch_size=2"])
    out = train_sft(str(bf16_base), traces(4), recipe, tmp_path / "arm")
    info = json.loads((out / "train.json").read_text())
    assert info["execution"]["model_dtype"] == "float32"  # the CPU trains in fp32 ...
    assert info["saved_dtype"] == "bfloat16"  # ... and the arm is written in its base's dtype
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.bfloat16"}  # noqa: SIM118 (not a dict)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert str(model.dtype) == "torch.bfloat16"


def test_sft_drops_and_counts_traces_longer_than_max_length(tiny_model, tmp_path):
    from rtransfer.train.outputs import load_model
    from rtransfer.train.sft import sft_rows, train_sft

    recipe = load_recipe("sft", overrides=["max_steps=1", "batch_size=2", "max_length=64"])
    _, tokenizer = load_model(str(tiny_model), recipe)
    data = traces(3) + traces(2, words=200)  # the last two cannot fit 64 tokens
    rows, dropped = sft_rows(tokenizer, data, recipe)
    assert dropped == 2 and [r["completion"] for r in rows] == [t.completion for t in data[:3]]
    out = train_sft(str(tiny_model), data, recipe, tmp_path / "arm")
    info = json.loads((out / "train.json").read_text())
    assert info["dropped_too_long"] == 2 and info["trained_traces"] == 3


def test_padding_free_needs_flash_attention():
    with pytest.raises(RecipeError, match="padding_free needs a flash-attention attn_implementation"):
        load_recipe("sft", overrides=["padding_free=true"])
    recipe = load_recipe("sft", overrides=["padding_free=true", "attn_implementation=flash_attention_2"])
    assert recipe.padding_free


def test_eval_every_is_refused_under_a_launcher(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = cli("train", "grpo", "--model", "lab", "--out", str(tmp_path / "d"), "--eval-every", "50")
    assert code == 2 and err.count("\n") == 1
    assert "--eval-every evaluates inside the training process, which 2 processes cannot share" in err


def test_onpolicy_trains_one_pass_per_generation():
    with pytest.raises(RecipeError, match=r"steps_per_generation \(1\) must equal grad_accum \(2\)"):
        load_recipe("onpolicy", overrides=["grad_accum=2"])


def test_models_load_without_the_hubs_kernels_unless_the_user_asks(tiny_model, monkeypatch):
    """transformers 5 swaps layers for kernels downloaded from the hub, by default: on a GPU node without the hub
    that crashed every training run and the engine's loading (measured on an H200). rtransfer loads the torch
    layers unless USE_HUB_KERNELS (transformers' own switch) is set."""
    from rtransfer.engines.hf import HFEngine
    from rtransfer.train.outputs import load_model

    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    recipe = load_recipe("sft")
    model, _ = load_model(str(tiny_model), recipe)
    model.train()  # transformers kernelizes again when the mode changes
    assert model.use_kernels is False
    assert HFEngine.load(str(tiny_model), device="cpu").model.use_kernels is False
    monkeypatch.setenv("USE_HUB_KERNELS", "1")
    assert load_model(str(tiny_model), recipe)[0].use_kernels is True
