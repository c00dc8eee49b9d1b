"""The probes at scale (docs/real-scale-review.md H): one compute dtype for both models and an honest noise floor,
latent states pooled in hooks, token measures where the head is, placement from the spec, ranks that say why
they are missing. On tiny models and the quick lab base (no hub)."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rtransfer.commands import probe as probe_command
from rtransfer.engines.factory import EngineSpec
from rtransfer.jobs.probe import run as run_probe_job
from rtransfer.lab.build import QUICK, build_base
from rtransfer.lab.tiny import build_tiny_model
from rtransfer.probes import latent as latent_module
from rtransfer.probes.latent import pooled_states
from rtransfer.probes.models import load_engine, load_pair, rounded_copy
from rtransfer.probes.pipeline import LatentSettings, TokenSettings, run_latent, run_tokens
from rtransfer.probes.tokens import _final_hidden, score_answer
from rtransfer.probes.weights import weight_drift
from rtransfer.specs import ModelRef, ProbeSpec

TEXTS = [
    "What is 12 plus 30?",
    "Solve for x: 2x + 3 = 7.",
    "Is this plausible? The quick brown fox jumps over the lazy dog, then over the lazy dog again and again.",
    "Wait",
    "Let me think step by step. Alternatively, the answer is (B).",
]


@pytest.fixture(scope="module")
def other_model(tiny_model, tmp_path_factory) -> Path:
    """Another random model with the SAME tokenizer as tiny_model."""
    tok = AutoTokenizer.from_pretrained(tiny_model)
    return build_tiny_model(tmp_path_factory.mktemp("models") / "other", tokenizer=tok, seed=1)


@pytest.fixture(scope="module")
def bf16_copy(tiny_model, tmp_path_factory) -> Path:
    """tiny_model saved in bfloat16 (config dtype bfloat16): what dtype "auto" loads as bf16."""
    out = tmp_path_factory.mktemp("models") / "tiny-bf16"
    AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).to(torch.bfloat16).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def _load(path: Path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


# --- 1. one compute dtype, an honest floor ---------------------------------------------------------------------
def test_a_pair_loaded_in_different_dtypes_is_widened_losslessly_and_recorded(tiny_model, bf16_copy):
    base, tuned, record = load_pair(str(bf16_copy), str(tiny_model), device="cpu")
    assert record["loaded"] == {"base": "bfloat16", "tuned": "float32"}
    assert record["compute"] == "float32" and record["cast"] == ["base"] and record["requested"] == "auto"
    assert base.model.dtype == tuned.model.dtype == torch.float32
    # The widening is exact: the cast base holds the bf16 values themselves.
    stored = AutoModelForCausalLM.from_pretrained(bf16_copy, dtype=torch.bfloat16)
    for (name, p), q in zip(base.model.named_parameters(), stored.parameters(), strict=True):
        assert torch.equal(p, q.float()), name
    # An explicit dtype loads both in it: nothing to cast.
    _, _, same = load_pair(str(bf16_copy), str(tiny_model), dtype="bf16", device="cpu")
    assert same["loaded"] == {"base": "bfloat16", "tuned": "bfloat16"} and same["cast"] == []


def test_the_floor_is_measured_in_float32_and_float16_and_never_a_claimed_zero_in_bfloat16(tiny_model):
    model, _ = _load(tiny_model)
    twin, note = rounded_copy(model)
    assert "rounded to bfloat16" in note and "float32" in note
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters(), strict=True))
    half = model.to(torch.float16)  # fp16 keeps 3 more mantissa bits than bf16: its rounding is a real change
    twin16, note16 = rounded_copy(half)
    assert twin16 is not None and "float16" in note16
    assert any(not torch.equal(p, q) for p, q in zip(half.parameters(), twin16.parameters(), strict=True))
    none, why = rounded_copy(model.to(torch.bfloat16))
    assert none is None and why.startswith("not measured") and "float32" in why


def test_probes_in_bf16_mark_the_floor_not_measured_and_fp32_measures_it(tiny_model, other_model):
    common = {
        "base": str(tiny_model),
        "tuned": str(other_model),
        "benchmarks": ["lab_arith"],
        "samples": 4,
        "bootstrap": 0,
        "device": "cpu",
    }
    (bf16,) = run_latent(LatentSettings(**common, dtype="bf16"))["rows"]
    floor = bf16["noise_floor"]
    assert floor["measured"] is False and floor["d_null"] is None and floor["cka_null"] is None
    assert floor["note"].startswith("not measured") and floor["d_split"] >= 0  # the texts' spread still is
    (fp32,) = run_latent(LatentSettings(**common, dtype="fp32"))["rows"]
    assert fp32["noise_floor"]["measured"] is True and fp32["noise_floor"]["d_null"] > 0
    tokens = run_tokens(TokenSettings(**common, dtype="bf16", max_new_tokens=4))
    (row,) = tokens["rows"]
    assert row["noise_floor"]["kl_null"] is None and row["noise_floor"]["measured"] is False
    assert tokens["manifest"]["compute"]["compute"] == "bfloat16"


def test_cli_prints_an_unmeasured_floor_as_such(tiny_model, other_model, capsys):
    parser = argparse.ArgumentParser()
    probe_command.register(parser.add_subparsers())
    argv = ["probe", "latent", "--base", tiny_model, "--tuned", other_model, "--benchmarks", "lab_arith"]
    args = parser.parse_args([*map(str, argv), "--samples", "4", "--bootstrap", "0", "--dtype", "bf16"])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("lab_arith"))
    assert "None" not in row and "—" in row  # d_null: not measured, no CI asked for
    assert "computed in bfloat16" in out and "noise floor: not measured" in out


# --- 2. latent states pooled in hooks ----------------------------------------------------------------------------
def _all_states_reference(model, tok, texts) -> np.ndarray:
    """The old way: one text at a time (no padding), output_hidden_states=True, the plain mean over tokens."""
    per_text = []
    for text in texts:
        enc = tok([text], return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states
        per_text.append(torch.stack([h[0].double().mean(dim=0) for h in hidden]))
    return torch.stack(per_text, dim=1).numpy()


@pytest.mark.parametrize("which", ["tiny", "lab-quick"])
def test_hooked_pooling_equals_output_hidden_states(which, tiny_model):
    path = tiny_model if which == "tiny" else build_base(QUICK)
    model, tok = _load(path)
    expected = _all_states_reference(model, tok, TEXTS)
    for side in ("right", "left"):
        got = pooled_states(model, tok, TEXTS, batch_size=len(TEXTS), padding_side=side)
        assert got.shape == expected.shape == (model.config.num_hidden_layers + 1, len(TEXTS), model.config.hidden_size)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # The fallback (all hidden states kept) and the hooks agree batch for batch, both poolings.
    enc = tok(TEXTS, return_tensors="pt", padding=True, truncation=True, max_length=128)
    for pooling in ("mean", "paper"):
        hooked = latent_module._pooled_layers(model, enc["input_ids"], enc["attention_mask"], pooling, {})
        kept = latent_module._pooled_all_states(model, enc["input_ids"], enc["attention_mask"], pooling, {})
        np.testing.assert_allclose(torch.stack(hooked).numpy(), torch.stack(kept).numpy(), rtol=1e-5, atol=1e-6)


def test_hooked_pooling_keeps_no_layer_states_and_leaves_no_hook(tiny_model):
    model, tok = _load(tiny_model)
    seen = {}

    def spy(_module, _args, kwargs):
        seen.update(kwargs)

    handle = model.base_model.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        pooled_states(model, tok, TEXTS[:2])
    finally:
        handle.remove()
    assert seen["use_cache"] is False and not seen.get("output_hidden_states")
    layers = model.base_model.layers
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in [*layers, model.base_model.norm])


# --- 3. token measures on the model's device ----------------------------------------------------------------------
def test_token_measures_match_a_cpu_brute_force_and_the_backbone_runs_without_cache(tiny_model, other_model):
    base = load_engine(str(tiny_model), dtype="fp32", device_map="cpu").model
    tuned, tok = _load(other_model)
    prompt = tok("Solve for x: 2x + 3 = 7.")["input_ids"]
    answer = tok(" So x = 2. Final Answer: \\boxed{2} and that is all.")["input_ids"]
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        lt = torch.log_softmax(tuned(ids).logits[0].double(), -1)[len(prompt) - 1 : -1]
        lb = torch.log_softmax(base(ids).logits[0].double(), -1)[len(prompt) - 1 : -1]
    y = torch.tensor(answer)
    kl = (lt.exp() * (lt - lb)).sum(-1)
    rank = (lb > lb[torch.arange(len(answer)), y][:, None]).sum(-1) + 1
    assert kl.min() > 0.01 and rank.max() > 1  # two different random models: a comparison that can fail
    for chunk in (1, 4, 256):
        got = score_answer(tuned, base, prompt, answer, chunk=chunk)
        np.testing.assert_allclose(got.kl, kl.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got.logratio, (lt - lb)[torch.arange(len(answer)), y].numpy(), atol=1e-4)
        np.testing.assert_array_equal(got.rank, rank.numpy())
    seen = {}
    handle = base.base_model.register_forward_pre_hook(lambda _m, _a, kw: seen.update(kw), with_kwargs=True)
    try:
        _final_hidden(base, prompt + answer, len(prompt) - 1)
    finally:
        handle.remove()
    assert seen["use_cache"] is False


# --- 4. placement from the spec ------------------------------------------------------------------------------------
def test_the_probe_job_loads_both_models_with_the_specs_device_map(tiny_model, other_model, tmp_path, monkeypatch):
    from rtransfer.engines.hf import HFEngine

    calls = []
    real_load = HFEngine.load.__func__

    def spy(cls, model, **kwargs):
        calls.append((model, kwargs))
        return real_load(cls, model, **kwargs)

    monkeypatch.setattr(HFEngine, "load", classmethod(spy))
    arm = ModelRef("arm", str(other_model), "arm", base="base", arm="arm", method="sft", seed=0)
    spec = ProbeSpec(
        model=arm,
        engine=EngineSpec(str(other_model), dtype="float32", device_map="cpu"),
        base_engine=EngineSpec(str(tiny_model), dtype="float32", device_map="cpu"),
        benchmarks=("lab_arith",),
        answers=str(tmp_path / "no-answers"),
        settings={"samples": 3, "bootstrap": 0, "noise_floor": False, "latent": True, "tokens": False},
        out=str(tmp_path / "probe"),
    )
    run_probe_job(spec)
    result = json.loads((tmp_path / "probe" / "latent.json").read_text())
    compute = result["manifest"]["compute"]
    assert [(m, k["device_map"], k["dtype"]) for m, k in calls] == [
        (str(tiny_model), "cpu", "float32"),
        (str(other_model), "cpu", "float32"),
    ]
    assert compute["placement"] == {"base": "cpu", "tuned": "cpu"}
    assert compute["compute"] == "float32" and result["manifest"]["settings"]["device_map"] == "cpu"
    assert result["rows"][0]["d"] > 0


# --- H4. ranks: computed where asked, and said why when not --------------------------------------------------------
def test_weight_ranks_above_the_limit_say_so_and_mixed_storage_is_named(tiny_model, bf16_copy, tmp_path):
    model, _ = _load(tiny_model)
    name = "model.layers.0.mlp.up_proj.weight"
    weight = dict(model.named_parameters())[name]
    torch.manual_seed(0)
    with torch.no_grad():  # a rank-3 update
        weight.add_(0.05 * torch.randn(weight.shape[0], 3) @ torch.randn(3, weight.shape[1]))
    model.save_pretrained(tmp_path / "rank3")
    result = weight_drift(str(tiny_model), str(tmp_path / "rank3"), device="cpu")
    entry = next(t for t in result["tensors"] if t["name"] == name)
    assert entry["rank"] == 3 and result["ranks_skipped"] == 0 and result["dtype_note"] is None
    limited = weight_drift(str(tiny_model), str(tmp_path / "rank3"), rank_limit=entry["n"] - 1)
    skipped = next(t for t in limited["tensors"] if t["name"] == name)
    assert skipped["rank"] is None and f"{entry['n']} elements" in skipped["rank_note"]
    big = [t for t in limited["tensors"] if len(t["shape"]) == 2 and t["n"] >= entry["n"]]
    assert limited["ranks_skipped"] == len(big) >= 1 and limited["rank_limit"] == entry["n"] - 1
    mixed = weight_drift(str(tiny_model), str(bf16_copy))
    assert mixed["stored_dtypes"] == {"base": ["float32"], "tuned": ["bfloat16"]} and "bf16" in mixed["dtype_note"]
    assert mixed["total"]["unchanged_bf16_share"] == 1.0 > mixed["total"]["unchanged_share"]
