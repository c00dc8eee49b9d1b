"""The in-process transformers engine on a tiny local Qwen3 model."""

from types import SimpleNamespace

import pytest
import torch

from rtransfer.engines.base import SamplingParams
from rtransfer.engines.hf import HFEngine, ModelLoadError

PROMPTS = [[{"role": "user", "content": f"What is {i} plus {i * 7}? Think {'hard ' * i}"}] for i in range(7)]


@pytest.fixture(scope="module")
def engine(tiny_model):
    return HFEngine(str(tiny_model), batch_size=3, device="cpu")


def test_log_likelihood_shares_the_context_and_matches_full_sequences(engine):
    requests = [
        (
            [{"role": "user", "content": "Question: Which of the following is a bone?\nAnswer:"}],
            [" femur", " the quick brown fox", " no"],
        ),
        ([{"role": "user", "content": "Is this plausible?"}], [" yes", " no"]),
    ]
    got = engine.loglikelihood(requests)
    for (context, continuations), scores in zip(requests, got, strict=True):
        text = engine.render(context)
        context_ids = engine.encode(text)
        for continuation, value in zip(continuations, scores, strict=True):
            ids = engine.encode(text + continuation.removeprefix(" "))  # chat mode drops the delimiter
            with torch.no_grad():
                logprobs = torch.log_softmax(engine.model(torch.tensor([ids])).logits[0].float(), -1)
            expected = sum(logprobs[j - 1, ids[j]].item() for j in range(len(context_ids), len(ids)))
            assert value == pytest.approx(expected, abs=1e-4)
    assert got[0][0] != pytest.approx(got[0][1])


class _OlderCacheNaming(torch.nn.Module):
    """A model as transformers before the `cache` rename (5.17, say) shows it: the KV cache is `past_key_values`
    in forward() and in its output."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, input_ids, attention_mask=None, use_cache=None, past_key_values=None):
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache, cache=past_key_values)
        return SimpleNamespace(logits=out.logits, past_key_values=out.cache)


def test_log_likelihood_works_with_the_older_cache_naming(engine, monkeypatch):
    requests = [([{"role": "user", "content": "Is this plausible?"}], [" yes", " no", " maybe not"])]
    expected = engine.loglikelihood(requests)
    monkeypatch.setattr(engine, "model", _OlderCacheNaming(engine.model))
    assert engine.loglikelihood(requests) == expected


def test_greedy_generation_does_not_depend_on_batching(engine):
    params = SamplingParams(max_new_tokens=12)
    first = engine.generate(PROMPTS, params, seeds=[0] * len(PROMPTS))
    engine.batch_size = 1
    try:
        single = engine.generate(PROMPTS[::-1], params, seeds=[0] * len(PROMPTS))[::-1]
    finally:
        engine.batch_size = 3
    assert [g.text for g in first] == [g.text for g in single]
    assert len({g.text for g in first}) > 1  # the random model does say different things
    assert all(g.tokens == 12 and g.finish_reason == "length" and g.seed is None for g in first)


def test_sampling_is_reproducible_from_seeds(engine):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=10)
    a = engine.generate(PROMPTS, params, seeds=list(range(7)))
    b = engine.generate(PROMPTS, params, seeds=list(range(7)))
    c = engine.generate(PROMPTS, params, seeds=list(range(100, 107)))
    assert [g.text for g in a] == [g.text for g in b]
    assert [g.text for g in a] != [g.text for g in c]
    assert all(g.seed is not None for g in a)


def test_stop_strings_cut_the_text(engine):
    free = engine.generate(PROMPTS[:3], SamplingParams(max_new_tokens=16), [0] * 3)
    stop = next(g.text[3:5] for g in free if len(g.text) >= 5)
    cut = engine.generate(PROMPTS[:3], SamplingParams(max_new_tokens=16, stop=(stop,)), [0] * 3)
    for full, short in zip(free, cut, strict=True):
        if stop in full.text:
            assert short.text == full.text[: full.text.index(stop)] and short.finish_reason == "stop"


def test_chat_template_thinking_switch_and_base_mode(tiny_model):
    messages = [{"role": "user", "content": "hi"}]
    off = HFEngine(str(tiny_model), thinking=False, device="cpu")
    assert off.render(messages).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    default = HFEngine(str(tiny_model), device="cpu")
    assert default.render(messages).endswith("<|im_start|>assistant\n")
    base = HFEngine(str(tiny_model), chat=False, device="cpu")
    assert base.render([*messages, {"role": "assistant", "content": "hello"}]) == "hi\n\nhello"
    assert base.describe()["chat_template"] is None and default.describe()["chat_template"]


def test_missing_model_is_a_one_line_error(tmp_path, cli, shared):
    with pytest.raises(ModelLoadError, match="does not exist"):
        HFEngine(str(tmp_path / "nope"))
    code, _, err = cli(
        "eval",
        "--model",
        tmp_path / "nope",
        "--benchmarks",
        "math500",
        "--data-dir",
        shared / "benchmarks",
        "--out",
        tmp_path / "run",
    )
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err


def test_chat_mode_drops_the_target_delimiter_base_mode_keeps_it(tiny_model):
    context = [{"role": "user", "content": "Is this plausible?"}]
    chat = HFEngine(str(tiny_model), device="cpu")
    assert chat.loglikelihood([(context, [" yes"])]) == chat.loglikelihood([(context, ["yes"])])
    base = HFEngine(str(tiny_model), chat=False, device="cpu")
    assert base.loglikelihood([(context, [" yes"])]) != base.loglikelihood([(context, ["yes"])])
