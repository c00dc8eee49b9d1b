"""The engines at scale (review G1, G2, G4, G5) on the tiny local Qwen3 model: a cache on another GPU than the rows
to keep, the KV budget and out-of-memory splitting, the context clamp, and one stop set for both engines.

This machine has no GPU, so "another GPU" is emulated where the crash happens (see OnFirstGPU)."""

import json
import shutil

import pytest
import torch

from rtransfer.engines import hf as hf_module
from rtransfer.engines.base import SamplingParams, stop_token_ids
from rtransfer.engines.decode import BLOCK, growing_cache, select_rows
from rtransfer.engines.hf import EngineMemoryError, HFEngine, kv_bytes_per_token, split_on_oom
from rtransfer.engines.openai import OpenAIEngine, RetryPolicy
from serving import LoopbackServer, TransformersServe

PROMPTS = [[{"role": "user", "content": f"What is {i} plus {i * 7}? Think {'hard ' * i}"}] for i in range(6)]
FAST = RetryPolicy(max_attempts=2, backoff=0.02, max_backoff=0.1)
CUDA_MESSAGE = "indices should be either on cpu or on the same device as the indexed tensor"


@pytest.fixture(scope="module")
def engine(tiny_model):
    return HFEngine.load(str(tiny_model), batch_size=4, parallel_batches=1, device="cpu")


def ids(engine, prompts):
    return [engine.encode(engine.render(p)) for p in prompts]


# --- G1: a model split over devices -------------------------------------------------------------------------


class OnFirstGPU(torch.Tensor):
    """An index tensor standing for one on cuda:0 (where a split model's hook returns the logits, and so the rows to
    keep) in front of tensors on cuda:1 (plain tensors here: a layer's KV buffers). Indexing another device's tensor
    with it raises CUDA's error; `.to(device)` moves it there (a plain tensor)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.to:
            with torch._C.DisableTorchFunctionSubclass():
                return torch.Tensor.to(*args, **kwargs).as_subclass(torch.Tensor)
        if func is torch.Tensor.__getitem__ and not isinstance(args[0], cls):
            raise RuntimeError(f"{CUDA_MESSAGE} (device = cuda:1)")
        return super().__torch_function__(func, types, args, kwargs)


def _prefilled_cache(engine, batch):
    input_ids, mask = engine._padded(batch)
    cache = growing_cache(engine.model, limit=input_ids.shape[1] + 8)
    with torch.inference_mode():
        engine.model(input_ids=input_ids, attention_mask=mask, use_cache=True, cache=cache)
    return cache


def test_rows_to_keep_from_the_first_gpu_select_a_layer_cache_on_another(engine):
    """Reproduces G1: the decode loop drops finished rows with indices on the logits' device while each layer's
    buffers sit on its own GPU; indexing them with the indices as they came raised CUDA's "indices should be either
    on cpu or on the same device" (old GrowingLayer.batch_select_indices). The layer and `select_rows` now move the
    indices to the buffers' device and keep exactly the chosen rows."""
    batch = ids(engine, PROMPTS[:3])
    keep = torch.tensor([0, 2])
    expected = [
        (layer.keys[keep].clone(), layer.values[keep].clone()) for layer in _prefilled_cache(engine, batch).layers
    ]

    cache = _prefilled_cache(engine, batch)
    cache.layers[0].batch_select_indices(keep.as_subclass(OnFirstGPU))  # the old code raised here
    select_rows_cache = _prefilled_cache(engine, batch)
    select_rows(select_rows_cache, keep.as_subclass(OnFirstGPU))
    assert torch.equal(cache.layers[0].keys, expected[0][0]) and torch.equal(cache.layers[0].values, expected[0][1])
    for layer, (k, v) in zip(select_rows_cache.layers, expected, strict=True):
        assert type(layer.keys) is torch.Tensor and torch.equal(layer.keys, k) and torch.equal(layer.values, v)
    with pytest.raises(RuntimeError, match=CUDA_MESSAGE):  # the emulation does raise on a foreign index
        torch.zeros(3)[keep.as_subclass(OnFirstGPU)]


def test_log_likelihood_slices_the_hidden_states_with_cpu_indices(engine, monkeypatch):
    """G1, scoring: logits_to_keep goes to the model on the CPU, the one device every tensor accepts indices from
    (a split model slices its final hidden states on its last GPU, not on engine.device, its first). On this
    CPU-only machine both were the CPU, so this checks where the indices are, not the crash itself."""
    seen = []
    forward = engine.model.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["logits_to_keep"].device)
        return forward(*args, **kwargs)

    requests = [([{"role": "user", "content": "Is this plausible?"}], [" yes", " no"])]
    expected = engine.loglikelihood(requests)
    monkeypatch.setattr(engine.model, "forward", spy)
    assert engine.loglikelihood(requests) == expected and seen == [torch.device("cpu")]


# --- G2: the KV budget, splitting on out-of-memory, block growth ----------------------------------------------


def test_kv_bytes_per_token_from_the_config():
    from transformers import Qwen3Config

    qwen3_06b = Qwen3Config(num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128)
    assert kv_bytes_per_token(qwen3_06b, torch.bfloat16) == 112 * 1024  # the review's 112 KiB per token
    tiny = Qwen3Config(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    assert kv_bytes_per_token(tiny, torch.float32) == 2 * 2 * 2 * 16 * 4


def test_batches_are_admitted_within_the_kv_budget(engine, monkeypatch):
    assert engine.kv_budget is None  # on a CPU: no limit, batches as before
    lengths = [10] * 8
    assert list(engine._batches(list(range(8)), lengths, new_tokens=6)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    monkeypatch.setattr(engine, "kv_budget", 3 * (10 + 6) * engine.kv_bytes)  # three rows' KV, not four
    assert list(engine._batches(list(range(8)), lengths, new_tokens=6)) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert list(engine._batches(list(range(8)), lengths)) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # scoring: no KV
    # max_new_tokens past the context is charged only up to the context
    monkeypatch.setattr(engine, "context", 16)
    assert list(engine._batches(list(range(8)), lengths, new_tokens=10_000)) == [[0, 1, 2], [3, 4, 5], [6, 7]]


@pytest.mark.parametrize("temperature, seeds", [(0.0, [0] * 4), (0.9, [1, 2, 3, 4])], ids=["greedy", "sampled"])
def test_a_batch_out_of_memory_is_split_and_gives_the_same_answers(engine, monkeypatch, temperature, seeds):
    """G2: a batch that raises torch.OutOfMemoryError is run again as two halves; rows are independent, so the
    answers equal an unsplit run's."""
    params = SamplingParams(temperature, max_new_tokens=8)
    expected = engine.generate(PROMPTS[:4], params, seeds)
    sizes, real = [], hf_module.decode

    def flaky(model, input_ids, *args, **kwargs):
        sizes.append(input_ids.shape[0])
        if len(sizes) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(model, input_ids, *args, **kwargs)

    monkeypatch.setattr(hf_module, "decode", flaky)
    assert engine.generate(PROMPTS[:4], params, seeds) == expected
    assert sizes == [4, 2, 2]


def test_log_likelihood_out_of_memory_is_split_too(engine, monkeypatch):
    requests = [([{"role": "user", "content": f"Is {i} plausible?"}], [" yes", " no"]) for i in range(4)]
    expected = engine.loglikelihood(requests)
    sizes, real = [], engine._score_packed

    def flaky(items):
        sizes.append(len(items))
        if len(sizes) == 1:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
        return real(items)

    monkeypatch.setattr(engine, "_score_packed", flaky)
    got = engine.loglikelihood(requests)
    assert sizes == [4, 2, 2]
    assert [v for row in got for v in row] == pytest.approx([v for row in expected for v in row], abs=1e-5)


def test_one_prompt_out_of_memory_is_a_one_line_error_and_other_errors_pass():
    def oom(batch):
        raise torch.OutOfMemoryError("CUDA out of memory.\nmore lines")

    with pytest.raises(EngineMemoryError, match=r"^out of memory on a single prompt: CUDA out of memory\.$"):
        split_on_oom(oom, [1, 2, 3])

    def bug(batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        split_on_oom(bug, [1, 2])


def test_the_kv_buffer_grows_by_a_block_and_never_past_the_batch_budget(engine):
    batch = ids(engine, PROMPTS[:2])
    width = max(map(len, batch))
    bounded, unbounded = _prefilled_cache(engine, batch), growing_cache(engine.model)
    input_ids, mask = engine._padded(batch)
    with torch.inference_mode():
        engine.model(input_ids=input_ids, attention_mask=mask, use_cache=True, cache=unbounded)
    assert bounded.layers[0].key_buffer.shape[-2] == width + 8  # prompt + max_new_tokens, not 1.5 × the prompt
    assert unbounded.layers[0].key_buffer.shape[-2] == width + BLOCK


# --- G4: the context clamp ------------------------------------------------------------------------------------


def test_max_new_tokens_is_clamped_to_each_prompts_context(engine, monkeypatch):
    """G4: each prompt generates at most the model's context less its own length; the clamp is in the
    Generation's extra (the record's extra); a prompt filling the context gets an empty "length" answer. Clamped
    answers are the unclamped ones cut at each row's own limit, in one batch (decode) and through generate()."""
    params = SamplingParams(max_new_tokens=10)
    prompts = PROMPTS[:4]
    lengths = [len(x) for x in ids(engine, prompts)]
    monkeypatch.setattr(engine.model.generation_config, "eos_token_id", None)  # no early ends: full lengths
    monkeypatch.setattr(engine, "eos_ids", set())
    full = engine.generate(prompts, params, [0] * 4)
    context = max(lengths) + 3  # the longest prompt has 3 tokens left, the shortest more
    monkeypatch.setattr(engine, "context", context)
    for fast in (True, False):
        monkeypatch.setattr(engine, "fast_decode", fast)
        got = engine.generate(prompts, params, [0] * 4)
        for g, f, n in zip(got, full, lengths, strict=True):
            room = min(10, context - n)
            assert g.tokens == room and g.finish_reason == "length"
            assert f.text.startswith(g.text)
            assert g.extra == ({"max_new_tokens_clamped": room, "context": context} if room < 10 else {})
    monkeypatch.setattr(engine, "context", min(lengths))
    over = engine.generate(prompts, params, [0] * 4)
    assert [(g.text, g.tokens, g.finish_reason) for g in over] == [("", 0, "length")] * 4
    assert all(g.extra == {"max_new_tokens_clamped": 0, "context": min(lengths)} for g in over)


class VLLMShaped(LoopbackServer):
    """vLLM's shapes for what the engine needs here: GET /v1/models with max_model_len, a 400 "maximum context
    length" refusal of a request whose prompt + max_tokens exceed it (prompt tokens counted as vLLM does: the
    rendered chat template, or the text with BOS), and otherwise "x" × max_tokens. Keeps the POST bodies."""

    def __init__(self, model: str, tokenizer, max_model_len: int | None):
        super().__init__()
        self.model, self.tokenizer, self.max_model_len, self.bodies = model, tokenizer, max_model_len, []

    def handle(self, method, path, raw):
        if method == "GET" and path.endswith("/models"):
            entry = {"id": self.model, "object": "model", "max_model_len": self.max_model_len}
            return 200, {}, json.dumps({"object": "list", "data": [entry]}).encode()
        body = json.loads(raw)
        self.bodies.append(body)
        if "messages" in body:
            text = self.tokenizer.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
            prompt = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            prompt = len(self.tokenizer(body["prompt"])["input_ids"])
        n = body["max_tokens"]
        if self.max_model_len is not None and prompt + n > self.max_model_len:
            message = (
                f"'max_tokens' is too large: {n}. This model's maximum context length is {self.max_model_len} "
                f"tokens and your request has {prompt} input tokens ({n} > {self.max_model_len} - {prompt})."
            )
            return 400, {}, json.dumps({"error": {"message": message, "type": "BadRequestError"}}).encode()
        choice = {"index": 0, "finish_reason": "length"}
        answer = "x" * n
        choice.update({"message": {"role": "assistant", "content": answer}} if "messages" in body else {"text": answer})
        usage = {"prompt_tokens": prompt, "completion_tokens": n}
        return 200, {}, json.dumps({"choices": [choice], "usage": usage}).encode()


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "base"])
def test_the_openai_engine_learns_the_servers_context_and_clamps(tiny_model, chat):
    """G4 through a vLLM-shaped server: the first request past the context is refused (HTTP 400, which stopped the
    run), the engine learns max_model_len from GET /v1/models and sends it again clamped; every answer is within the
    context, clamps are in `extra`, and a prompt that fills the context gets an empty "length" answer unasked."""
    hf = HFEngine.load(str(tiny_model), device="cpu", chat=chat)
    lengths = [len(x) for x in ids(hf, PROMPTS)]
    server = VLLMShaped(str(tiny_model), hf.tokenizer, max_model_len=max(lengths) + 2)
    try:
        remote = OpenAIEngine(str(tiny_model), server.url, chat=chat, retry=FAST, concurrency=1)
        assert remote.describe()["context"] is None  # not known before a refusal
        gens = remote.generate(PROMPTS, SamplingParams(max_new_tokens=5), [0] * len(PROMPTS))
        assert remote.context == server.max_model_len
        for g, n in zip(gens, lengths, strict=True):
            room = min(5, server.max_model_len - n)
            assert g.tokens == room and g.text == "x" * room
            assert g.extra == ({"max_new_tokens_clamped": room, "context": server.max_model_len} if room < 5 else {})
        server.max_model_len, server.bodies = min(lengths), []
        remote = OpenAIEngine(str(tiny_model), server.url, chat=chat, retry=FAST, context=min(lengths))
        over = remote.generate(PROMPTS, SamplingParams(max_new_tokens=5), [0] * len(PROMPTS))
        assert [(g.text, g.finish_reason) for g in over] == [("", "length")] * len(PROMPTS)
        assert server.bodies == []  # a known context: no request for a prompt that fills it
    finally:
        server.close()


# --- G5: one stop set ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen3_base_like(tiny_model, tmp_path_factory):
    """The tiny model with Qwen3-*-Base's disagreement (QwenLM/Qwen3#1422): the generation config's eos is
    <|endoftext|> (0), the tokenizer's is <|im_end|> (2), the chat template's end of turn."""
    out = tmp_path_factory.mktemp("models") / "base-like"
    shutil.copytree(tiny_model, out)
    config = json.loads((out / "generation_config.json").read_text())
    (out / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": 0}))
    return out


def test_both_engines_describe_and_use_the_same_stop_set(qwen3_base_like):
    local = HFEngine.load(str(qwen3_base_like), device="cpu")
    server = VLLMShaped(str(qwen3_base_like), local.tokenizer, max_model_len=None)
    try:
        remote = OpenAIEngine(str(qwen3_base_like), server.url, retry=FAST)
        assert local.describe()["stop_token_ids"] == remote.describe()["stop_token_ids"] == [0, 2]
        assert local.eos_ids == {0, 2}
        gens = remote.generate(PROMPTS[:2], SamplingParams(max_new_tokens=3), [0, 0])
        assert [b["stop_token_ids"] for b in server.bodies] == [[0, 2], [0, 2]]
        assert [b["max_tokens"] for b in server.bodies] == [3, 3] and all(g.extra == {} for g in gens)
        assert remote.describe()["context"] is None  # no refusal, no context given: nothing clamped
    finally:
        server.close()


def test_the_end_of_turn_token_is_found_from_the_template(qwen3_base_like):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen3_base_like)
    tokenizer.eos_token = "<|endoftext|>"  # neither eos names <|im_end|>: the template still does
    assert stop_token_ids(tokenizer, [0]) == [0, 2]
    tokenizer.chat_template = None
    assert stop_token_ids(tokenizer, [0]) == [0]


def test_transformers_serve_refuses_stop_token_ids_and_gets_none_again(qwen3_base_like, tmp_path):
    """transformers serve answers 422 "Unexpected fields" to stop_token_ids: the engine drops the field for the rest
    of its life and answers as the in-process engine does (the tiny model's stop set is its tokenizer's eos alone,
    so the other tests against transformers serve never send the field)."""
    params = SamplingParams(max_new_tokens=6)
    local = HFEngine.load(str(qwen3_base_like), device="cpu", chat=False)
    expected = local.generate(PROMPTS[:3], params, [0] * 3)
    server = TransformersServe(qwen3_base_like, tmp_path / "serve.log").start()
    try:
        remote = OpenAIEngine(str(qwen3_base_like), server.url, chat=False, retry=FAST, concurrency=1)
        got = remote.generate(PROMPTS[:3], params, [0] * 3)
    finally:
        server.stop()
    assert [g.text for g in got] == [e.text for e in expected]
    assert remote.refused == {"stop_token_ids"} and remote.context is None
