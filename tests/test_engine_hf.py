"""The in-process transformers engine on a tiny local Qwen3 model."""

import json
from types import SimpleNamespace

import pytest
import torch

from rtransfer.engines.base import SamplingParams
from rtransfer.engines.hf import HFEngine, ModelLoadError

PROMPTS = [[{"role": "user", "content": f"What is {i} plus {i * 7}? Think {'hard ' * i}"}] for i in range(7)]


@pytest.fixture(scope="module")
def engine(tiny_model):
    return HFEngine.load(str(tiny_model), batch_size=3, device="cpu")


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

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None, past_key_values=None):
        out = self.inner(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            cache=past_key_values,
        )
        return SimpleNamespace(logits=out.logits, past_key_values=out.cache)


def test_decoding_works_with_the_older_cache_naming(engine, monkeypatch):
    batch = [engine.encode(engine.render(p)) for p in PROMPTS[:3]]
    expected = engine.generate_ids(batch, SamplingParams(max_new_tokens=6))
    older = _OlderCacheNaming(engine.model)
    older.config, older.generation_config = engine.model.config, engine.model.generation_config
    monkeypatch.setattr(engine, "model", older)
    assert engine.generate_ids(batch, SamplingParams(max_new_tokens=6)) == expected


def _ends_early(engine):
    """An end-of-turn token the random model says partway through some answers but not others, so that rows of
    one batch finish at different steps (the untrained model never says its real one)."""
    free = engine.generate_ids([engine.encode(engine.render(p)) for p in PROMPTS], SamplingParams(max_new_tokens=12))
    counts = {}
    for ids, _ in free:
        for t in set(ids[1:-1]):
            counts[t] = counts.get(t, 0) + 1
    return next(t for t, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n < len(PROMPTS))


def test_fast_decoding_is_transformers_generate_with_finished_rows_dropped(engine, monkeypatch):
    """The loop in decode.py against model.generate() on the same batches: greedy, with rows ending at different
    steps (an end-of-turn token and a stop string), and sampled: each row from its own seeded generator, as
    generate() samples a prompt alone after torch.manual_seed(its seed)."""
    assert engine.fast_decode
    stop_token = _ends_early(engine)
    monkeypatch.setattr(engine.model.generation_config, "eos_token_id", [engine.tokenizer.eos_token_id, stop_token])
    monkeypatch.setattr(engine, "eos_ids", {engine.tokenizer.eos_token_id, stop_token})
    batch = [engine.encode(engine.render(p)) for p in PROMPTS]
    greedy = SamplingParams(max_new_tokens=12)
    fast = engine.generate_ids(batch, greedy)
    assert fast == engine._generate_ids_hf(batch, greedy)
    assert {ended for _, ended in fast} == {True, False} and len({len(ids) for ids, _ in fast}) > 1
    text = engine.tokenizer.decode(fast[0][0])
    stopped = SamplingParams(max_new_tokens=12, stop=(text[2:4],))
    assert engine._generate_batch(batch, stopped, None) == [
        _as_generation(engine, ids, ended, stopped) for ids, ended in engine._generate_ids_hf(batch, stopped)
    ]
    sampled = SamplingParams(temperature=0.8, top_p=0.9, top_k=20, max_new_tokens=10)
    seeds = [7, 8, 9, 10, 11, 12, 13]
    fast = engine.generate_ids(batch, sampled, seeds)
    assert fast == engine._generate_ids_hf(batch, sampled, seeds)
    assert {ended for _, ended in fast} == {True, False}  # rows dropped partway: the others' draws go on the same


def _as_generation(engine, ids, ended, params):
    from rtransfer.engines.base import Generation, cut_at_stop

    text, cut = cut_at_stop(engine.tokenizer.decode(ids, skip_special_tokens=True), params.stop)
    return Generation(text=text, tokens=len(ids), finish_reason="stop" if ended or cut else "length")


def test_a_generation_config_asking_for_more_goes_to_generate(tiny_model, tmp_path):
    import shutil

    model = tmp_path / "penalised"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**config, "repetition_penalty": 1.3}))
    penalised = HFEngine.load(str(model), device="cpu", batch_size=3)
    assert not penalised.fast_decode
    plain = HFEngine.load(str(tiny_model), device="cpu", batch_size=3)
    params = SamplingParams(max_new_tokens=12)
    assert [g.text for g in penalised.generate(PROMPTS, params, [0] * 7)] != [
        g.text for g in plain.generate(PROMPTS, params, [0] * 7)
    ]


def test_batches_respect_both_the_prompt_count_and_the_token_budget(engine, monkeypatch):
    lengths = [50, 40, 30, 30, 10, 5, 5, 5]
    monkeypatch.setattr(engine, "batch_tokens", 90)
    assert list(engine._batches(list(range(8)), lengths)) == [[0], [1, 2], [3, 4, 5], [6, 7]]
    params = SamplingParams(max_new_tokens=8)
    wide = engine.generate(PROMPTS, params, [0] * 7)
    monkeypatch.setattr(engine, "batch_tokens", 1)  # one prompt per batch
    assert [g.text for g in engine.generate(PROMPTS, params, [0] * 7)] == [g.text for g in wide]


def test_log_likelihood_does_not_depend_on_batching(engine, monkeypatch):
    requests = [(p, [" yes", " no, not at all", " 42"][: 2 + i % 2]) for i, p in enumerate(PROMPTS)]
    together = engine.loglikelihood(requests)
    monkeypatch.setattr(engine, "batch_size", 1)
    alone = engine.loglikelihood(requests)
    for a, b in zip(together, alone, strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_greedy_generation_does_not_depend_on_batching(engine, monkeypatch):
    params = SamplingParams(max_new_tokens=12)
    monkeypatch.setattr(engine, "parallel_batches", 1)
    first = engine.generate(PROMPTS, params, seeds=[0] * len(PROMPTS))
    monkeypatch.setattr(engine, "parallel_batches", 3)  # three batches decoding at once, on threads
    assert [g.text for g in engine.generate(PROMPTS, params, seeds=[0] * len(PROMPTS))] == [g.text for g in first]
    monkeypatch.setattr(engine, "parallel_batches", 1)
    monkeypatch.setattr(engine, "batch_size", 1)
    single = engine.generate(PROMPTS[::-1], params, seeds=[0] * len(PROMPTS))[::-1]
    assert [g.text for g in first] == [g.text for g in single]
    assert len({g.text for g in first}) > 1  # the random model does say different things
    assert all(g.tokens == 12 and g.finish_reason == "length" and g.seed is None for g in first)


def test_sampling_is_reproducible_from_seeds(engine, monkeypatch):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=10)
    monkeypatch.setattr(engine, "parallel_batches", 1)
    a = engine.generate(PROMPTS, params, seeds=list(range(7)))
    b = engine.generate(PROMPTS, params, seeds=list(range(7)))
    c = engine.generate(PROMPTS, params, seeds=list(range(100, 107)))
    assert [g.text for g in a] == [g.text for g in b]
    assert [g.text for g in a] != [g.text for g in c]
    assert [g.seed for g in a] == list(range(7))
    # Each row draws from its own generator, so batches decoding at once on threads draw the same.
    monkeypatch.setattr(engine, "parallel_batches", 3)
    assert [(g.text, g.seed) for g in engine.generate(PROMPTS, params, seeds=list(range(7)))] == [
        (g.text, g.seed) for g in a
    ]


def test_parallel_batches_share_the_threads_and_give_them_back(engine, monkeypatch):
    """While batches decode at once, each gets its share of torch's threads; the count is restored when the call
    ends, and when its consumer stops early (a runner interrupted between two batches)."""
    seen = []
    generate_ids = engine.generate_ids

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return generate_ids(*args, **kwargs)

    monkeypatch.setattr(engine, "generate_ids", spy)
    monkeypatch.setattr(engine, "parallel_batches", 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        stream = engine.generate_stream(PROMPTS, SamplingParams(max_new_tokens=4), [0] * len(PROMPTS))
        next(stream)
        stream.close()
        assert torch.get_num_threads() == 4
        assert len(engine.generate(PROMPTS, SamplingParams(max_new_tokens=4), [0] * len(PROMPTS))) == len(PROMPTS)
        assert torch.get_num_threads() == 4 and set(seen) == {2}
        seen.clear()  # generate() (the fallback) draws from the global RNG: one batch at a time, every thread
        monkeypatch.setattr(engine, "fast_decode", False)
        engine.generate(PROMPTS, SamplingParams(max_new_tokens=4), [0] * len(PROMPTS))
        assert set(seen) == {4}
    finally:
        torch.set_num_threads(threads)


def test_stop_strings_cut_the_text(engine):
    free = engine.generate(PROMPTS[:3], SamplingParams(max_new_tokens=16), [0] * 3)
    stop = next(g.text[3:5] for g in free if len(g.text) >= 5)
    cut = engine.generate(PROMPTS[:3], SamplingParams(max_new_tokens=16, stop=(stop,)), [0] * 3)
    for full, short in zip(free, cut, strict=True):
        if stop in full.text:
            assert short.text == full.text[: full.text.index(stop)] and short.finish_reason == "stop"


def test_chat_template_thinking_switch_and_base_mode(tiny_model):
    messages = [{"role": "user", "content": "hi"}]
    off = HFEngine.load(str(tiny_model), thinking=False, device="cpu")
    assert off.render(messages).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    default = HFEngine.load(str(tiny_model), device="cpu")
    assert default.render(messages).endswith("<|im_start|>assistant\n")
    base = HFEngine.load(str(tiny_model), chat=False, device="cpu")
    assert base.render([*messages, {"role": "assistant", "content": "hello"}]) == "hi\n\nhello"
    assert base.describe()["chat_template"] is None and default.describe()["chat_template"]


def test_an_engine_over_a_model_in_memory_is_the_loaded_one(engine):
    """__init__ takes a model and tokenizer already loaded (on-policy training's policy); `load` reads them."""
    again = HFEngine(engine.model, engine.tokenizer, batch_size=3)
    params = SamplingParams(temperature=1.0, max_new_tokens=8)
    assert again.describe() == engine.describe()  # named by the model's own name_or_path: its directory
    assert again.generate(PROMPTS, params, list(range(7))) == engine.generate(PROMPTS, params, list(range(7)))
    with pytest.raises(ModelLoadError, match="parallel_batches must be 1 or more"):
        HFEngine(engine.model, engine.tokenizer, parallel_batches=0)


def test_missing_model_is_a_one_line_error(tmp_path, cli, shared):
    with pytest.raises(ModelLoadError, match="does not exist"):
        HFEngine.load(str(tmp_path / "nope"))
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
    chat = HFEngine.load(str(tiny_model), device="cpu")
    assert chat.loglikelihood([(context, [" yes"])]) == chat.loglikelihood([(context, ["yes"])])
    base = HFEngine.load(str(tiny_model), chat=False, device="cpu")
    assert base.loglikelihood([(context, [" yes"])]) != base.loglikelihood([(context, ["yes"])])


def test_a_failing_batch_stops_the_parallel_batches_with_its_own_error():
    """An error in one batch reaches the caller as itself (no lost traceback in a worker thread), after the other
    batches in flight end, and torch's thread count is given back."""
    from rtransfer.engines.hf import concurrently, shared_threads

    def work(item):
        if item == 3:
            raise ValueError("batch 3 is bad")
        return [item]

    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    seen = []
    try:
        with pytest.raises(ValueError, match="batch 3 is bad"), shared_threads(2):
            for value in concurrently(work, range(8), 2):
                assert torch.get_num_threads() == 2
                seen.append(value)
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(threads)
    assert set(seen) <= {0, 1, 2, 4} and {0, 1} <= set(seen)
    # Without an error every element of every result arrives once, whatever order the batches end in.
    assert sorted(concurrently(lambda i: [i, -i], range(8), 3)) == sorted(x for i in range(8) for x in (i, -i))
