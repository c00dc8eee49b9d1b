"""The probes: latent PCA shift / CKA and token KL / rank shift, on tiny models (no hub)."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rtransfer.commands import probe as probe_command
from rtransfer.lab.build import QUICK, build_base
from rtransfer.lab.splits import training_items
from rtransfer.lab.tiny import build_tiny_model
from rtransfer.probes.latent import linear_cka, pca_shift, pooled_states
from rtransfer.probes.models import load_engine, rounded_copy
from rtransfer.probes.tokens import answer_ids, score_answer, summarize
from rtransfer.records import Record
from rtransfer.runs import RunDir

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


def _load(path: Path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


def _probe(capsys, *argv) -> list[dict]:
    """`rtransfer probe ...` through the command's own parser (the lead registers it in cli.COMMANDS)."""
    parser = argparse.ArgumentParser()
    probe_command.register(parser.add_subparsers())
    args = parser.parse_args(["probe", *[str(a) for a in argv]])
    assert args.run(args) == 0
    return json.loads(capsys.readouterr().out)


# --- latent --------------------------------------------------------------------------------------------------
def test_masked_pooling_ignores_batching_and_padding_side(tiny_model):
    model, tok = _load(tiny_model)
    alone = pooled_states(model, tok, TEXTS, batch_size=1)
    assert alone.shape == (model.config.num_hidden_layers + 1, len(TEXTS), model.config.hidden_size)
    for side in ("right", "left"):
        batched = pooled_states(model, tok, TEXTS, batch_size=len(TEXTS), padding_side=side)
        np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=1e-4)


def test_paper_pooling_is_the_unmasked_mean_with_pads(tiny_model):
    model, tok = _load(tiny_model)
    texts = [*TEXTS, "the lazy dog " * 80]  # longer than the paper's 128-token truncation
    paper = pooled_states(model, tok, texts, pooling="paper", batch_size=len(texts))
    enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=128)
    assert enc["input_ids"].shape[1] == 128
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states
    expected = torch.stack([h.mean(dim=1) for h in hidden]).double().numpy()
    np.testing.assert_allclose(paper, expected, atol=1e-5)
    # Pads are averaged in: a short text's paper vector differs from its masked mean.
    masked = pooled_states(model, tok, texts, batch_size=len(texts), max_length=128)
    assert not np.allclose(paper[:, 3], masked[:, 3], atol=1e-3)


def test_linear_cka():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0)  # invariant to rotation, scale and offset
    assert linear_cka(x, rng.normal(size=(20, 8))) < 0.9


def test_pca_shift_of_a_constant_offset():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 30, 5)) * np.array([5.0, 2.0, 0.1, 0.1, 0.1])  # PC1 = axis 0, PC2 = axis 1
    result = pca_shift(base, base + np.array([2.0, 0, 0, 0, 0]))
    assert result["d"] == pytest.approx(2.0, rel=0.05)  # the offset lies (nearly) along ±PC1
    assert pca_shift(base, base + np.array([0, 0, 0, 0, 2.0]))["d"] < 0.2  # off the two PCs: hardly seen
    assert pca_shift(base, base)["d"] == 0.0


# --- tokens --------------------------------------------------------------------------------------------------
def test_exact_kl_rank_and_logratio_match_brute_force(tiny_model, other_model):
    base, tok = _load(tiny_model)
    tuned, _ = _load(other_model)
    prompt = tok("Solve for x: 2x + 3 = 7.")["input_ids"]
    answer = tok(" So x = 2. Final Answer: \\boxed{2}")["input_ids"]
    got = score_answer(tuned, base, prompt, answer, chunk=3)  # several chunks, one ragged
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        lt = torch.log_softmax(tuned(ids).logits[0].double(), -1)[len(prompt) - 1 : -1]
        lb = torch.log_softmax(base(ids).logits[0].double(), -1)[len(prompt) - 1 : -1]
    kl = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=lt), torch.distributions.Categorical(logits=lb)
    )
    y = torch.tensor(answer)
    order = torch.argsort(lb, dim=-1, descending=True)
    rank = (order == y[:, None]).float().argmax(-1) + 1
    assert kl.min() > 0.01  # two different random models: a comparison that can fail
    np.testing.assert_allclose(got.kl, kl.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.logratio, (lt - lb)[torch.arange(len(answer)), y].numpy(), atol=1e-4)
    np.testing.assert_array_equal(got.rank, rank.numpy())


def test_summary_definitions():
    from rtransfer.probes.tokens import AnswerScores

    a = AnswerScores(
        [5, 6, 7, 5], np.array([0.1, 0.3, 0.0, 0.0]), np.array([1.0, -3.0, 0.0, 0.0]), np.array([1, 2, 5, 9])
    )
    s = summarize([a], decode=str)
    assert s["kl_exact"] == pytest.approx(0.1)
    assert s["kl_sampled"] == pytest.approx(0.5)
    assert s["mean_rank_shift"] == pytest.approx((0 + 1 + 4 + 8) / 4)
    assert (s["unshifted"], s["marginal"], s["shifted"]) == (0.25, 0.25, 0.5)
    assert s["top_shifted_tokens"] == [["7", 1], ["5", 1]]


# --- CLI, end to end ---------------------------------------------------------------------------------------------
def test_cli_identical_models_show_no_drift(tiny_model, capsys):
    common = ["--base", tiny_model, "--tuned", tiny_model, "--benchmarks", "lab_arith", "--samples", "4", "--json"]
    [lat] = _probe(capsys, "latent", *common)
    assert lat["benchmark"] == "lab_arith" and lat["d"] == 0.0
    assert len(lat["cka"]) == len(lat["layers"]) == 3 and lat["cka"] == pytest.approx([1.0] * 3)
    [tokens] = _probe(capsys, "tokens", *common, "--max-new-tokens", "12", "--batch-size", "1")
    assert tokens["kl_exact"] == pytest.approx(0.0, abs=1e-6) and tokens["kl_sampled"] == pytest.approx(0.0, abs=1e-6)
    assert tokens["mean_rank_shift"] == 0.0 and tokens["unshifted"] == 1.0 and tokens["top_shifted_tokens"] == []


def test_cli_two_models_with_files_and_responses(tiny_model, other_model, tmp_path, capsys):
    out = tmp_path / "probe"
    common = ["--base", tiny_model, "--tuned", other_model, "--benchmarks", "lab_arith", "--samples", "4", "--json"]
    [lat] = _probe(capsys, "latent", *common, "--out", out, "--pooling", "paper")
    assert lat["d"] > 10 * lat["noise_floor"]["d_null"] and min(lat["cka"]) < 0.99
    assert (out / "latent_lab_arith.png").stat().st_size > 1000
    saved = json.loads((out / "latent.json").read_text())
    assert saved["rows"][0]["d"] == lat["d"] and saved["manifest"]["models"]["tuned"]["fingerprint"]
    # Answers from a run directory's records instead of generating.
    run = RunDir(tmp_path / "run")
    with run.writer("lab_arith") as w:
        for i in range(3):
            w.write(Record(f"lab_arith/{i}", 0, [{"role": "user", "content": "What is 2 + 2?"}], "The answer is 4."))
    [tokens] = _probe(capsys, "tokens", *common, "--responses", run.path, "--out", out)
    assert tokens["answers"] == 3 and tokens["answers_from"] == str(run.path)
    assert tokens["kl_exact"] > 100 * tokens["noise_floor"]["kl_null"] > 0
    assert tokens["shifted"] > 0 and tokens["top_shifted_tokens"]
    assert json.loads((out / "tokens.json").read_text())["rows"][0]["benchmark"] == "lab_arith"


# --- the lab: a few fine-tuning steps on math, measured above the noise floor ------------------------------------
def test_math_fine_tuning_drifts_above_the_noise_floor(tmp_path):
    """The lab's (quick) base against a copy fine-tuned on the lab's math train split."""
    lab_base = build_base(QUICK)
    torch.manual_seed(0)
    model, tok = _load(lab_base)
    base, _ = _load(lab_base)
    pairs = [(i.prompt, i.house) for name in ("lab_arith", "lab_lineq") for i in training_items(name, 48)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(24):
        batch = pairs[(step * 4) % len(pairs) :][:4]
        texts = [
            tok.apply_chat_template(
                [{"role": "user", "content": p}, {"role": "assistant", "content": a}], tokenize=False
            )
            for p, a in batch
        ]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()

    texts = [i.prompt for i in training_items("lab_format", 12, seed=5)]  # a non-math group: transfer
    base_states = pooled_states(base, tok, texts)
    twin, _ = rounded_copy(base)
    latent = pca_shift(base_states, pooled_states(model, tok, texts))
    null = pca_shift(base_states, pooled_states(twin, tok, texts))
    assert latent["d"] > 10 * null["d"] > 0

    engine = load_engine(str(lab_base), dtype="fp32")
    items = [answer_ids(engine, engine.render([{"role": "user", "content": p}]), a) for p, a in pairs[-4:]]
    tuned_kl = summarize([score_answer(model, base, p, a) for p, a in items], str)["kl_exact"]
    null_kl = summarize([score_answer(twin, base, p, a) for p, a in items], str)["kl_exact"]
    assert tuned_kl > 10 * null_kl > 0


# --- uncertainty, weights, forward KL (probes v2) ----------------------------------------------------------------
def perturbed_copy(source: Path, out: Path, scale: float, seed: int = 0, **save) -> Path:
    """`source` with Gaussian noise of `scale` added to every weight, saved as a model directory."""
    model, tok = _load(source)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    model.save_pretrained(out, **save)
    tok.save_pretrained(out)
    return out


def test_bootstrap_of_d_refits_the_pca_and_matches_a_plain_refit():
    from rtransfer.probes.latent import _layer_points, d_replicates

    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 30, 16))
    tuned = base + 0.3 * rng.normal(size=base.shape) + 0.1
    draws = np.random.default_rng(4)
    plain = []
    for _ in range(40):  # scikit-learn's PCA refit on each replicate's texts: the definition
        idx = draws.integers(0, 30, 30)
        pb, pt = _layer_points(base[:, idx], tuned[:, idx])
        plain.append(np.linalg.norm(pt.mean(axis=0) - pb.mean(axis=0)))
    np.testing.assert_allclose(d_replicates(base, tuned, 40, seed=4), plain, rtol=1e-9, atol=1e-12)


def test_identical_models_give_zero_with_zero_width_cis(tiny_model, capsys):
    common = ["--base", tiny_model, "--tuned", tiny_model, "--suite", "lab", "--samples", "6", "--json"]
    latent = _probe(capsys, "latent", *common, "--bootstrap", "50")
    assert all(r["d"] == 0.0 and r["d_ci"] == [0.0, 0.0] for r in latent)
    tokens = _probe(capsys, "tokens", *common, "--max-new-tokens", "6", "--bootstrap", "50", "--direction", "both")
    for r in tokens:
        for figures in (r, r["forward"]):
            for f in ("kl_exact", "kl_sampled", "mean_rank_shift", "shifted"):
                lo, hi = figures[f"{f}_ci"]
                assert figures[f] == pytest.approx(0.0, abs=1e-6) and lo == pytest.approx(hi, abs=1e-6)


def test_a_perturbed_copy_has_cis_that_exclude_zero_and_group_summaries(tiny_model, tmp_path):
    from rtransfer.probes.pipeline import LatentSettings, TokenSettings, run_latent, run_tokens

    tuned = perturbed_copy(tiny_model, tmp_path / "perturbed", 0.02)
    common = {
        "base": str(tiny_model),
        "tuned": str(tuned),
        "benchmarks": ["lab_arith", "lab_lineq", "lab_story"],
        "samples": 12,
        "bootstrap": 200,
        "noise_floor": False,
    }
    latent = run_latent(LatentSettings(**common))
    for r in latent["rows"]:
        assert 0 < r["d_ci"][0] <= r["d"] <= r["d_ci"][1]
    math = next(g for g in latent["groups"] if g["group"] == "math")
    assert math["benchmarks"] == ["lab_arith", "lab_lineq"]
    assert math["d"] == pytest.approx(np.mean([r["d"] for r in latent["rows"][:2]])) and math["d_ci"][0] > 0
    assert [g["group"] for g in latent["groups"]] == ["math", "non"]
    tokens = run_tokens(TokenSettings(**common, max_new_tokens=8, direction="both"))
    for r in tokens["rows"]:
        assert r["kl_exact_ci"][0] > 0 and r["forward"]["kl_exact_ci"][0] > 0
    assert {(g["direction"], g["group"]) for g in tokens["groups"]} == {
        (d, g) for d in ("reverse", "forward") for g in ("math", "non")
    }


def test_cis_shrink_as_texts_are_added_on_the_lab(tmp_path):
    from rtransfer.probes.pipeline import LatentSettings, TokenSettings, run_latent, run_tokens

    base = build_base(QUICK)
    tuned = perturbed_copy(base, tmp_path / "tuned", 0.01)

    def widths(n: int) -> tuple[float, float]:
        common = {
            "base": str(base),
            "tuned": str(tuned),
            "benchmarks": ["lab_format"],
            "samples": n,
            "bootstrap": 200,
            "noise_floor": False,
        }
        (lat,) = run_latent(LatentSettings(**common))["rows"]
        (tok,) = run_tokens(TokenSettings(**common, max_new_tokens=8, batch_size=32))["rows"]
        return lat["d_ci"][1] - lat["d_ci"][0], tok["kl_exact_ci"][1] - tok["kl_exact_ci"][0]

    (d32, kl32), (d128, kl128) = widths(32), widths(128)
    assert d128 < d32 and kl128 < kl32


def test_forward_and_reverse_kl_match_brute_force(tiny_model, other_model):
    from rtransfer.probes.pipeline import TokenSettings, run_tokens
    from rtransfer.probes.tokens import greedy_answers

    settings = TokenSettings(
        base=str(tiny_model),
        tuned=str(other_model),
        benchmarks=["lab_arith"],
        samples=3,
        max_new_tokens=6,
        bootstrap=0,
        noise_floor=False,
        direction="both",
    )
    (row,) = run_tokens(settings)["rows"]
    base_engine, tuned_engine = load_engine(str(tiny_model)), load_engine(str(other_model))
    from rtransfer.benchmarks.registry import get_task

    task = get_task("lab_arith")
    rendered = [tuned_engine.render(task.prompt(d)) for d in task.load(None)[:3]]

    def brute(p_model, q_model, writer) -> float:  # mean over answers of the mean per-position KL(p‖q)
        per_answer = []
        for text, answer in zip(rendered, greedy_answers(writer, rendered, 6), strict=True):
            prompt = tuned_engine.encode(text)
            ids = torch.tensor([prompt + answer])
            with torch.no_grad():
                lp = torch.log_softmax(p_model(ids).logits[0].double(), -1)[len(prompt) - 1 : -1]
                lq = torch.log_softmax(q_model(ids).logits[0].double(), -1)[len(prompt) - 1 : -1]
            per_answer.append(float((lp.exp() * (lp - lq)).sum(-1).mean()))
        return float(np.mean(per_answer))

    tuned, base = tuned_engine.model, base_engine.model
    assert row["kl_exact"] == pytest.approx(brute(tuned, base, tuned_engine), abs=1e-5)
    assert row["forward"]["kl_exact"] == pytest.approx(brute(base, tuned, base_engine), abs=1e-5)
    assert row["forward"]["answers_from"] == "base model, greedy" and row["forward"]["kl_exact"] > 0.01


def test_weight_probe_on_constructed_pairs(tiny_model, tmp_path, capsys):
    from rtransfer.probes.weights import weight_drift

    same = weight_drift(str(tiny_model), str(tiny_model))
    assert same["total"]["unchanged_share"] == 1.0 and same["total"]["relative_norm"] == 0.0
    assert all(t["rank"] == 0 for t in same["tensors"] if len(t["shape"]) == 2)

    model, tok = _load(tiny_model)
    name = "model.layers.1.mlp.down_proj.weight"
    weight = dict(model.named_parameters())[name]
    torch.manual_seed(0)
    with torch.no_grad():  # a rank-1 update of one matrix, everything else untouched
        weight.add_(0.05 * torch.outer(torch.randn(weight.shape[0]), torch.randn(weight.shape[1])))
    model.save_pretrained(tmp_path / "rank1", max_shard_size="100KB")  # sharded: streamed across files
    tok.save_pretrained(tmp_path / "rank1")
    assert (tmp_path / "rank1" / "model.safetensors.index.json").exists()
    result = weight_drift(str(tiny_model), str(tmp_path / "rank1"))
    changed = {t["name"]: t for t in result["tensors"] if t["unchanged"] < t["n"]}
    assert list(changed) == [name] and changed[name]["rank"] == 1
    assert changed[name]["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    layer1 = next(layer for layer in result["layers"] if layer["layer"] == "1")
    assert layer1["relative_norm"] > 0 and all(
        layer["relative_norm"] == 0 for layer in result["layers"] if layer["layer"] != "1"
    )

    tiny = perturbed_copy(tiny_model, tmp_path / "tiny-noise", 1e-7)  # below bf16's resolution
    cli = _probe(capsys, "weights", "--base", tiny_model, "--tuned", tiny, "--json")
    assert cli["total"]["unchanged_share"] < 0.5 and cli["total"]["unchanged_bf16_share"] > 0.99


def test_plot_latent_draws_the_papers_panel_with_the_reports_drawing(tmp_path):
    from rtransfer.probes.latent import plot_latent

    layers = [{"base": [0.0, 1.0], "tuned": [0.5, 1.2]}, {"base": [1.0, 0.0], "tuned": [1.4, 0.1]}]
    result = {"layers": layers, "centroid_base": [0.5, 0.5], "centroid_tuned": [0.95, 0.65], "d": 0.45}
    plot_latent(result, str(tmp_path / "panel.png"), title="lab_arith")
    assert (tmp_path / "panel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_probe_forward_pass_turns_onednn_off_and_back_without_a_warning():
    """oneDNN off for the probes' passes (probes.models.forward_mode), and nothing printed for it: torch's flags()
    would also set allow_tf32, which on Intel CPUs warns about Intel GPUs at every probe."""
    import warnings

    import torch

    from rtransfer.probes.models import forward_mode

    before = torch.backends.mkldnn.enabled
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with forward_mode():
            assert not torch.backends.mkldnn.enabled and torch.is_inference_mode_enabled()
    assert torch.backends.mkldnn.enabled == before
