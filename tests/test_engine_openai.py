"""The scale-out engine against a real OpenAI-compatible server (`transformers serve` with a tiny local model, on
127.0.0.1), a fault-injecting proxy in front of it, and a small server answering in vLLM's shapes.

One `transformers serve` runs for the whole module; the fault tests kill and restart it. What the server returns
is compared with the in-process HFEngine on the same greedy settings. The one difference, found and documented:
transformers serve parses a Qwen-family model's chat answer with a built-in response template whose text fields
are `str.strip()`ped (transformers/cli/serving/utils.py `_RESPONSE_TEMPLATE_FALLBACKS`, content_parsers `_text`),
so chat answers lose leading and trailing whitespace. Plain /v1/completions answers are returned unparsed and match
exactly. Graders strip whitespace anyway, so grades match too.
"""

import json
import time

import pytest

from rtransfer.benchmarks.base import Doc, Grade, Settings, Task
from rtransfer.engines.base import SamplingParams
from rtransfer.engines.hf import HFEngine
from rtransfer.engines.openai import (
    LoglikelihoodUnsupportedError,
    OpenAIEngine,
    RetryPolicy,
    ServerError,
    ServerUnavailableError,
    parse_generation,
    parse_prompt_logprobs,
)
from rtransfer.evaluate import EvalPlan, evaluate
from rtransfer.grading.text import strip_thinking
from rtransfer.records import read_records
from rtransfer.runs import RunDir
from serving import FakeVLLM, FaultProxy, TransformersServe

PROMPTS = [[{"role": "user", "content": f"What is {i} plus {i * 7}? Think {'hard ' * i}"}] for i in range(6)]
FAST = RetryPolicy(max_attempts=4, backoff=0.02, max_backoff=0.1)


class Sums(Task):
    """A toy generation task (as in test_evaluate): graded on the last word of the answer, thinking stripped."""

    name, group = "sums", "math"
    settings = Settings(samples=2, temperature=0.0, max_new_tokens=4)

    def load(self, data_dir, seed=0):
        return [Doc(f"s{i}", {"a": i, "b": 2 * i}) for i in range(6)]

    def prompt(self, doc):
        return [{"role": "user", "content": f"{doc.data['a']} + {doc.data['b']} ="}]

    def grade(self, doc, response):
        words = strip_thinking(response).split()
        answer = words[-1] if words else None
        return Grade(float(answer == str(doc.data["a"] + doc.data["b"])), extracted=answer)


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    srv = TransformersServe(tiny_model, tmp_path_factory.mktemp("serve") / "serve.log").start()
    yield srv
    srv.stop()


@pytest.fixture
def up(server):
    """The module's server, running (a fault test before may have killed it)."""
    if server.proc is None or server.proc.poll() is not None:
        server.start()
    return server


@pytest.fixture(scope="module")
def hf(tiny_model):
    return HFEngine.load(str(tiny_model), batch_size=4, device="cpu")


@pytest.fixture
def proxy(up):
    p = FaultProxy(up.url)
    yield p
    p.close()


def engine(model, urls, **kw) -> OpenAIEngine:
    kw.setdefault("retry", FAST)
    kw.setdefault("concurrency", 2)
    return OpenAIEngine(str(model), urls, **kw)


def sums_responses(run: RunDir) -> dict[tuple[str, int], str]:
    lines = run.records_path("sums").read_text().splitlines()
    keys = [(json.loads(line)["doc_id"], json.loads(line)["sample"]) for line in lines]
    assert len(keys) == len(set(keys)) == 12  # every (doc, sample) exactly once
    return {(r.doc_id, r.sample): r.response for r in read_records(run.records_path("sums"))}


@pytest.fixture(scope="module")
def sums_expected(hf) -> dict[str, str]:
    """What the in-process engine answers to each Sums prompt (greedy), whitespace stripped (see the module doc)."""
    docs = Sums().load(None)
    gens = hf.generate([Sums().prompt(d) for d in docs], SamplingParams(max_new_tokens=4), [0] * len(docs))
    return {d.id: g.text.strip() for d, g in zip(docs, gens, strict=True)}


# --- the server's answers equal the in-process engine's -----------------------------------------------------


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "base"])
def test_greedy_generation_matches_the_in_process_engine(up, tiny_model, chat):
    params = SamplingParams(max_new_tokens=8)
    local = HFEngine.load(str(tiny_model), batch_size=3, device="cpu", chat=chat)
    expected = local.generate(PROMPTS, params, [0] * len(PROMPTS))
    got = engine(tiny_model, up.url, chat=chat).generate(PROMPTS, params, [0] * len(PROMPTS))
    for e, g in zip(expected, got, strict=True):
        # Chat: transformers serve strips the parsed content; completions come back as generated.
        assert g.text == (e.text.strip() if chat else e.text)
        assert g.finish_reason == e.finish_reason and g.seed is None and g.extra == {}
        # Servers count the EOS token in usage.completion_tokens; HFEngine counts the tokens before it.
        assert g.tokens == e.tokens + (e.finish_reason == "stop")
    assert len({g.text for g in got}) > 1


def test_thinking_switch_reaches_the_servers_chat_template(up, tiny_model):
    params = SamplingParams(max_new_tokens=6)
    local = HFEngine.load(str(tiny_model), device="cpu", thinking=False)
    expected = [g.text.strip() for g in local.generate(PROMPTS[:3], params, [0] * 3)]
    remote = engine(tiny_model, up.url, thinking=False)
    assert [g.text for g in remote.generate(PROMPTS[:3], params, [0] * 3)] == expected
    assert remote.describe()["thinking"] is False


def test_benchmarks_end_to_end_match_the_in_process_engine(up, cli, tiny_model, shared, tmp_path):
    """Real benchmarks through the CLI, one run in-process and one through the server (math500; CoQA has a stop
    string). Then the in-process run is resumed through the server: the run identity is the same."""
    settings = ["--model", tiny_model, "--data-dir", shared / "benchmarks", "--samples", "1", "--temperature", "0"]
    settings += ["--max-new-tokens", "8", "--json", "--benchmarks", "math500,coqa"]
    common = [*settings, "--limit", "2"]
    code, out_hf, err = cli("eval", *common, "--out", tmp_path / "hf", "--batch-size", "2")
    assert code == 0, err
    server_args = ["--engine", "openai", "--base-url", up.url, "--concurrency", "2"]
    code, out_srv, err = cli("eval", *common, *server_args, "--out", tmp_path / "srv")
    assert code == 0, err
    assert [(r["benchmark"], r["score"], r["n"]) for r in json.loads(out_srv)] == [
        (r["benchmark"], r["score"], r["n"]) for r in json.loads(out_hf)
    ]
    for bench in ("math500", "coqa"):
        local = sorted(read_records(tmp_path / "hf" / "records" / f"{bench}.jsonl"), key=lambda r: r.key)
        remote = sorted(read_records(tmp_path / "srv" / "records" / f"{bench}.jsonl"), key=lambda r: r.key)
        assert [r.key for r in local] == [r.key for r in remote]
        # A random model may emit <think> tags anywhere; the server moves what it reads as reasoning into
        # `reasoning_content`, which the engine puts back in front. What graders read (the answer part) is equal.
        assert [strip_thinking(r.response) for r in local] == [strip_thinking(r.response) for r in remote]
        assert [(r.extracted, r.grade) for r in local] == [(r.extracted, r.grade) for r in remote]
    manifest_hf = json.loads((tmp_path / "hf" / "manifest.json").read_text())
    manifest_srv = json.loads((tmp_path / "srv" / "manifest.json").read_text())
    assert manifest_srv["engine"] == "openai" and manifest_srv["engine_info"]["servers"] == [up.url]
    assert manifest_srv["chat_template_hash"] == manifest_hf["chat_template_hash"] is not None
    # Resume the in-process run through the server with one more document: only the new one is asked for.
    p = FaultProxy(up.url)
    try:
        more = [*settings, "--limit", "3", "--engine", "openai", "--base-url", p.url]
        code, _, err = cli("eval", *more, "--out", tmp_path / "hf")
        assert code == 0, err
        assert p.answered == 2  # one new document per benchmark, and nothing else
    finally:
        p.close()


def test_samples_carry_their_seeds_and_a_server_refusing_seeds_gets_none(proxy, tiny_model):
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=3)
    e = engine(tiny_model, proxy.url)
    gens = e.generate(PROMPTS[:2], params, [11, 12])
    assert sorted(b["seed"] for b in proxy.bodies) == [11, 12] and [g.seed for g in gens] == [11, 12]
    assert all(b["temperature"] == 1.0 and b["top_p"] == 0.9 and "top_k" not in b for b in proxy.bodies)
    proxy.reject_fields = {"seed"}  # as transformers serve does for any field it does not know
    gens = e.generate(PROMPTS[:2], params, [11, 12])
    assert [g.seed for g in gens] == [None, None] and e.send_seeds is False
    proxy.bodies.clear()
    e.generate(PROMPTS[:1], SamplingParams(max_new_tokens=2), [5])  # greedy: no seed, no top_p
    assert "seed" not in proxy.bodies[0] and "top_p" not in proxy.bodies[0] and proxy.bodies[0]["temperature"] == 0


# --- log-likelihood ------------------------------------------------------------------------------------------


def test_loglikelihood_against_transformers_serve_is_a_one_line_error(up, cli, tiny_model, shared, tmp_path):
    with pytest.raises(LoglikelihoodUnsupportedError, match="no prompt logprobs"):
        engine(tiny_model, up.url).loglikelihood([(PROMPTS[0], [" yes", " no"])])
    args = ["--model", tiny_model, "--benchmarks", "headqa", "--data-dir", shared / "benchmarks", "--limit", "2"]
    code, _, err = cli("eval", *args, "--engine", "openai", "--base-url", up.url, "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and "no prompt logprobs" in err


def vllm_echo_answer(tokens, logprobs, prompt_tokens, completion_tokens=1):
    """A /v1/completions answer in the shape vLLM returns for echo=True, logprobs=1 (OpenAIServingCompletion):
    prompt tokens then generated ones; text_offset is the running sum of the token texts' lengths."""
    offsets, total = [], 0
    for t in tokens:
        offsets.append(total)
        total += len(t)
    top = [None] + [{t: lp} for t, lp in zip(tokens[1:], logprobs[1:], strict=True)]
    lp = {"text_offset": offsets, "token_logprobs": logprobs, "tokens": tokens, "top_logprobs": top}
    choice = {"index": 0, "text": "".join(tokens), "logprobs": lp, "finish_reason": "length", "stop_reason": None}
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return {"id": "cmpl-1", "object": "text_completion", "choices": [choice], "usage": usage}


def test_prompt_logprobs_parsing_on_vllm_shaped_answers():
    """Hand-computed cases in vLLM's /v1/completions shapes (echo=True, logprobs=1, max_tokens=1 or 0)."""
    context, continuation = "Question: 2+2?\nAnswer:", " four"
    prompt = context + continuation
    tokens = ["Question", ":", " 2", "+", "2", "?", "\n", "Answer", ":", " fo", "ur"]
    logprobs = [None, -1.0, -2.0, -0.5, -0.25, -3.0, -0.125, -1.5, -0.75, -2.25, -0.0625]
    expected = -2.25 + -0.0625  # " fo" + "ur": the tokens past the boundary
    # max_tokens=1: one generated token follows the prompt's; usage.prompt_tokens tells them apart.
    answer = vllm_echo_answer([*tokens, "!"], [*logprobs, -4.0], prompt_tokens=len(tokens))
    assert parse_prompt_logprobs(answer, prompt, continuation) == expected
    # max_tokens=0: the prompt alone.
    answer = vllm_echo_answer(tokens, logprobs, prompt_tokens=len(tokens), completion_tokens=0)
    assert parse_prompt_logprobs(answer, prompt, continuation) == expected
    # A BOS that vLLM decodes to text ("<s>") shifts every offset; counting from the end is not fooled.
    answer = vllm_echo_answer(["<s>", *tokens, "!"], [None, -0.5, *logprobs[1:], -4.0], prompt_tokens=12)
    assert parse_prompt_logprobs(answer, prompt, continuation) == expected
    # A token straddling the boundary (":" merged with " f") is the continuation's.
    straddle = ["Question", ":", " 2", "+", "2", "?", "\n", "Answer", ": f", "our"]
    answer = vllm_echo_answer([*straddle, "!"], [*logprobs[:8], -1.0, -0.5, -4.0], prompt_tokens=10)
    assert parse_prompt_logprobs(answer, prompt, continuation) == -1.5
    # vLLM's prompt_logprobs extension ({token id: {logprob, rank, decoded_token}}, null first), with the
    # prompt's token ids (return_token_ids) to name the actual token among the top ones.
    ids = list(range(100, 100 + len(tokens)))
    entries = [None] + [
        {
            str(i): {"logprob": lp, "rank": 2, "decoded_token": t},
            "7": {"logprob": -0.01, "rank": 1, "decoded_token": "x"},
        }
        for i, t, lp in zip(ids[1:], tokens[1:], logprobs[1:], strict=True)
    ]
    only = {"choices": [{"index": 0, "text": prompt, "logprobs": None, "prompt_logprobs": entries}]}
    with pytest.raises(LoglikelihoodUnsupportedError):  # two candidates per position and no ids: ambiguous
        parse_prompt_logprobs(only, prompt, continuation)
    only["choices"][0]["prompt_token_ids"] = ids
    assert parse_prompt_logprobs(only, prompt, continuation) == expected
    # transformers serve ignores echo and logprobs: a plain completion comes back.
    plain = {"choices": [{"index": 0, "text": "zyla", "finish_reason": "length"}], "usage": {"prompt_tokens": 9}}
    with pytest.raises(LoglikelihoodUnsupportedError, match="no prompt logprobs"):
        parse_prompt_logprobs(plain, prompt, continuation)


@pytest.fixture(scope="module")
def fake_vllm(hf):
    def chat(messages):
        a, b = (int(x) for x in messages[-1]["content"].rstrip(" =").split(" + "))
        return "\nthe answer might be -1\n", f"\n\nso {a + b}"  # as a parser that keeps the whitespace splits it

    srv = FakeVLLM(hf.model, hf.tokenizer, chat=chat)
    yield srv
    srv.close()


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "base"])
def test_loglikelihood_through_a_vllm_shaped_server_matches_the_in_process_engine(fake_vllm, tiny_model, chat):
    requests = [
        ([{"role": "user", "content": "Question: Which of the following is a bone?\nAnswer:"}], [" femur", " no"]),
        ([{"role": "user", "content": "Is this plausible?"}], [" yes", " the quick brown fox"]),
    ]
    expected = HFEngine.load(str(tiny_model), device="cpu", chat=chat).loglikelihood(requests)
    remote = engine(tiny_model, fake_vllm.url, chat=chat)
    for got in (remote.loglikelihood(requests), None):
        if got is None:  # again, from vLLM's prompt_logprobs extension alone
            fake_vllm.only_prompt_logprobs = True
            try:
                got = remote.loglikelihood(requests)
            finally:
                fake_vllm.only_prompt_logprobs = False
        for row, want in zip(got, expected, strict=True):
            assert row == pytest.approx(want, abs=1e-4)
    sent = fake_vllm.bodies[-1]
    assert sent["echo"] is True and sent["logprobs"] == 1 and sent["max_tokens"] == 1 and sent["temperature"] == 0


def test_loglikelihood_benchmarks_run_against_a_vllm_shaped_server(fake_vllm, cli, tiny_model, shared, tmp_path):
    args = ["--model", tiny_model, "--benchmarks", "headqa,mctaco", "--data-dir", shared / "benchmarks"]
    args += ["--limit", "2", "--json"]
    code, out_hf, err = cli("eval", *args, "--out", tmp_path / "hf")
    assert code == 0, err
    code, out_srv, err = cli("eval", *args, "--engine", "openai", "--base-url", fake_vllm.url, "--out", tmp_path / "s")
    assert code == 0, err
    assert [r["score"] for r in json.loads(out_srv)] == [r["score"] for r in json.loads(out_hf)]
    for bench in ("headqa", "mctaco"):
        local = read_records(tmp_path / "hf" / "records" / f"{bench}.jsonl")
        remote = read_records(tmp_path / "s" / "records" / f"{bench}.jsonl")
        for a, b in zip(local, remote, strict=True):
            assert b.extra["logprobs"] == pytest.approx(a.extra["logprobs"], abs=1e-4) and a.grade == b.grade


# --- reasoning models ----------------------------------------------------------------------------------------


def test_reasoning_fields_are_put_back_as_think_blocks():
    def chat_answer(message, finish="stop"):
        return {"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": {}}

    # vLLM with --reasoning-parser qwen3 (older versions; SGLang, transformers serve): message.reasoning_content.
    gen = parse_generation(
        chat_answer({"content": "\n\nThe answer is 4.", "reasoning_content": "\nLet me think.\n"}), chat=True
    )
    assert gen.text == "<think>\nLet me think.\n</think>\n\nThe answer is 4."
    assert gen.extra == {"reasoning_content": "\nLet me think.\n"} and strip_thinking(gen.text) == "The answer is 4."
    # Recent vLLM names the field `reasoning`.
    gen = parse_generation(chat_answer({"content": "4", "reasoning": "2+2"}), chat=True)
    assert gen.text == "<think>2+2</think>4" and gen.extra == {"reasoning": "2+2"}
    # The budget ran out while thinking: no closing tag was generated, and there is no answer to grade.
    gen = parse_generation(chat_answer({"content": None, "reasoning_content": "hmm, 2+"}, "length"), chat=True)
    assert gen.text == "<think>hmm, 2+" and gen.finish_reason == "length" and strip_thinking(gen.text) == ""
    # No reasoning parser on the server: the thinking is in the content already.
    gen = parse_generation(chat_answer({"content": "<think>x</think>4", "reasoning_content": None}), chat=True)
    assert gen.text == "<think>x</think>4" and gen.extra == {}
    # A stop string a server left in the text is cut here (transformers serve keeps it; vLLM does not).
    gen = parse_generation(
        {"choices": [{"text": "yes\nQ: next", "finish_reason": "length"}]}, chat=False, stop=["\nQ:"]
    )
    assert gen.text == "yes" and gen.finish_reason == "stop"


def test_reasoning_is_kept_in_records_and_stripped_before_grading(fake_vllm, tiny_model, tmp_path):
    run = RunDir(tmp_path / "run")
    results = evaluate(engine(tiny_model, fake_vllm.url), EvalPlan(tasks=[Sums()], chunk=4), run)
    assert results["sums"]["score"] == 100.0  # "-1" in the thinking is not the answer
    first = next(r for r in read_records(run.records_path("sums")) if r.key == ("s1", 0))
    assert first.response == "<think>\nthe answer might be -1\n</think>\n\nso 3"
    assert first.extra["reasoning_content"] == "\nthe answer might be -1\n" and first.extracted == "3"


# --- faults --------------------------------------------------------------------------------------------------


def test_server_killed_mid_run_then_restarted_resumes_with_every_sample_once(up, tiny_model, tmp_path, sums_expected):
    run = RunDir(tmp_path / "run")
    plan = EvalPlan(tasks=[Sums()], chunk=4)

    def kill_after_first_chunk(name):
        def progress(done, total):
            if done >= 4:
                up.kill()

        return progress

    e = engine(tiny_model, up.url, retry=RetryPolicy(max_attempts=2, backoff=0.05))
    with pytest.raises(ServerUnavailableError, match=r"request failed 2 times; last: .*cannot connect"):
        evaluate(e, plan, run, progress=kill_after_first_chunk)
    assert len(read_records(run.records_path("sums"))) == 4  # the first chunk is on disk
    up.start()
    evaluate(engine(tiny_model, up.url), plan, run)
    responses = sums_responses(run)
    assert all(text == sums_expected[doc] for (doc, _), text in responses.items())


def test_retries_ride_through_a_server_restart(up, tiny_model, tmp_path, sums_expected):
    run = RunDir(tmp_path / "run")
    restarted = []

    def restart_after_first_chunk(name):
        def progress(done, total):
            if done >= 4 and not restarted:
                up.kill()
                up.start(wait=False)  # back in ~10-20 s; meanwhile every request is refused and retried
                restarted.append(time.monotonic())

        return progress

    patient = RetryPolicy(max_attempts=60, backoff=0.25, max_backoff=2.0)
    evaluate(
        engine(tiny_model, up.url, retry=patient),
        EvalPlan(tasks=[Sums()], chunk=4),
        run,
        progress=restart_after_first_chunk,
    )
    assert restarted
    responses = sums_responses(run)
    assert all(text == sums_expected[doc] for (doc, _), text in responses.items())


def test_answers_received_before_a_crash_are_on_disk(proxy, tiny_model, tmp_path):
    """One chunk of 12 answers; the server dies after 5 of them: those 5 are in the records."""
    proxy.fail_after = 5
    run = RunDir(tmp_path / "run")
    with pytest.raises(ServerUnavailableError):
        evaluate(engine(tiny_model, proxy.url, concurrency=1), EvalPlan(tasks=[Sums()], chunk=12), run)
    assert len(read_records(run.records_path("sums"))) == proxy.answered == 5


def test_server_errors_are_retried_then_succeed(proxy, tiny_model):
    proxy.fail = 3
    gens = engine(tiny_model, proxy.url).generate(PROMPTS[:2], SamplingParams(max_new_tokens=2), [0, 0])
    assert all(g.tokens == 2 for g in gens) and len(proxy.bodies) == 5 and proxy.answered == 2
    proxy.fail, proxy.fail_status = 10**6, 503
    with pytest.raises(ServerUnavailableError, match=r"request failed 4 times; last: .*HTTP 503: injected failure"):
        engine(tiny_model, proxy.url).generate(PROMPTS[:1], SamplingParams(max_new_tokens=2), [0])
    assert len(proxy.bodies) == 5 + 4  # bounded: max_attempts tries, no more


def test_a_hung_request_times_out_and_is_retried(proxy, tiny_model):
    proxy.hang, proxy.hang_s = 1, 4.0
    start = time.monotonic()
    (gen,) = engine(tiny_model, proxy.url, timeout=1.0).generate(PROMPTS[:1], SamplingParams(max_new_tokens=2), [0])
    assert gen.tokens == 2 and len(proxy.bodies) == 2 and time.monotonic() - start < proxy.hang_s


def test_client_errors_stop_at_once_with_one_line(proxy, tiny_model):
    e = OpenAIEngine("some-other-model", proxy.url, retry=FAST, tokenizer=str(tiny_model))
    with pytest.raises(ServerError, match="HTTP 400: Server is pinned to") as info:
        e.generate(PROMPTS[:1], SamplingParams(max_new_tokens=2), [0])
    assert not isinstance(info.value, ServerUnavailableError) and "\n" not in str(info.value)
    assert len(proxy.bodies) == 1  # a request the server refuses is not worth another try


def test_requests_are_spread_over_servers_and_a_failing_one_is_avoided(up, tiny_model):
    a, b = FaultProxy(up.url), FaultProxy(up.url)
    try:
        e = engine(tiny_model, [a.url, b.url], concurrency=1)
        assert e.describe()["servers"] == [a.url, b.url]
        assert len(e.generate(PROMPTS, SamplingParams(max_new_tokens=2), [0] * 6)) == 6
        assert a.answered >= 2 and b.answered >= 2 and a.answered + b.answered == 6
        a.answered = b.answered = 0
        a.fail = 10**6  # one server answers 500 to everything: the run goes on on the other
        assert len(e.generate(PROMPTS[:4], SamplingParams(max_new_tokens=2), [0] * 4)) == 4
        assert b.answered == 4 and a.answered == 0
    finally:
        a.close()
        b.close()


def test_stopping_early_does_not_wait_for_requests_in_flight(proxy, tiny_model):
    """What Ctrl-C or a crash in the caller does: the generator is closed and pending requests are cancelled."""
    proxy.hang, proxy.hang_s = 2, 5.0  # two of three requests hang; the third answers
    start = time.monotonic()
    stream = engine(tiny_model, proxy.url, concurrency=3).generate_stream(
        PROMPTS[:3], SamplingParams(max_new_tokens=2), [0] * 3
    )
    _, gen = next(stream)
    stream.close()
    assert gen.tokens == 2 and time.monotonic() - start < proxy.hang_s


def test_bad_configuration_is_a_one_line_error(tiny_model, cli, shared, tmp_path, monkeypatch):
    with pytest.raises(ServerError, match="not a server base URL"):
        OpenAIEngine("m", "localhost:8000", tokenizer=str(tiny_model))
    with pytest.raises(ServerError, match="no server given"):
        OpenAIEngine("m", [], tokenizer=str(tiny_model))
    assert OpenAIEngine("m", "http://h:1,http://h:2/v1/", tokenizer=str(tiny_model)).base_urls == [
        "http://h:1/v1",
        "http://h:2/v1",
    ]
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    args = ["--model", tiny_model, "--benchmarks", "math500", "--data-dir", shared / "benchmarks"]
    code, _, err = cli(
        "eval",
        *args,
        "--engine",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--api-key-env",
        "NO_SUCH_KEY_VAR",
        "--out",
        tmp_path / "run",
    )
    assert code == 2 and err.count("\n") == 1 and "NO_SUCH_KEY_VAR" in err
    code, _, err = cli("eval", *args, "--base-url", "http://127.0.0.1:9/v1", "--out", tmp_path / "run")
    assert code == 2 and "--engine openai" in err
