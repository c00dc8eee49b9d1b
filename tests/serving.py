"""Servers for the scale-out engine's tests, all on 127.0.0.1: a real `transformers serve`, a proxy that injects
faults in front of it, and a small server that answers in vLLM's shapes from an in-process model.

Every server here stops when told (the tests' fixtures do), and every loop in it is bounded.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class TransformersServe:
    """`transformers serve MODEL_DIR` (transformers >= 5, the `serving` extra) on a CPU, in its own process group.

    The model directory is the positional FORCE_MODEL argument: it is loaded at start and is the only model the
    server answers for (requests must name it, or no model). HF_HUB_OFFLINE keeps it off the hub."""

    def __init__(self, model_dir: Path, log: Path, port: int | None = None):
        self.model_dir, self.log, self.port = Path(model_dir), Path(log), port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def start(self, wait: bool = True) -> "TransformersServe":
        cli = Path(sys.executable).with_name("transformers")
        cmd = [str(cli), "serve", str(self.model_dir), "--host", HOST, "--port", str(self.port), "--device", "cpu"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited; log:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"transformers serve not ready after {timeout:g} s; log:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """What a crash does: SIGKILL to the whole process group, no goodbye."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        except ProcessLookupError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping (a "hung" request) never keeps the tests from ending


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 whose handler calls `self.handle(method, path, body)`."""

    def __init__(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    status, headers, payload = owner.handle(method, self.path, raw)
                except Exception as err:  # a bug in a fake must show up as a 500, not a hung client
                    status, headers, payload = 500, {}, json.dumps({"error": {"message": repr(err)}}).encode()
                if status is None:  # a hung request: the handler already slept, the client has given up
                    return
                try:
                    self.send_response(status)
                    for k, v in {"content-type": "application/json", **headers}.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            def do_POST(self):
                self._serve("POST")

            def do_GET(self):
                self._serve("GET")

            def log_message(self, *args):
                pass

        self.httpd = _Server((HOST, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def handle(self, method: str, path: str, raw: bytes) -> tuple[int | None, dict, bytes]:
        raise NotImplementedError

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FaultProxy(LoopbackServer):
    """Forwards to `upstream` (a base URL ending in /v1), but first answers `fail` requests with `fail_status`,
    holds `hang` requests for `hang_s` seconds without an answer, refuses requests that carry a field named in
    `reject_fields` (422, as transformers serve refuses unknown fields), and once `fail_after` requests have
    been answered fails all the others (a server that dies). Keeps every request body."""

    def __init__(self, upstream: str):
        super().__init__()
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.lock = threading.Lock()
        self.fail, self.fail_status, self.hang, self.hang_s = 0, 500, 0, 5.0
        self.reject_fields: set[str] = set()
        self.fail_after: int | None = None
        self.bodies: list[dict] = []
        self.answered = 0

    def handle(self, method, path, raw):
        body = json.loads(raw) if raw else {}
        with self.lock:
            self.bodies.append(body)
            fail = self.fail > 0 or (self.fail_after is not None and self.answered >= self.fail_after)
            hang = not fail and self.hang > 0
            self.fail -= self.fail > 0
            self.hang -= hang
        if fail:
            return self.fail_status, {}, json.dumps({"error": {"message": "injected failure"}}).encode()
        if hang:
            time.sleep(self.hang_s)
            return None, {}, b""
        rejected = self.reject_fields & set(body)
        if rejected:
            return 422, {}, json.dumps({"detail": f"Unexpected fields in the request: {rejected}"}).encode()
        request = urllib.request.Request(
            self.upstream + path, data=raw or None, method=method, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                status, payload = r.status, r.read()
        except urllib.error.HTTPError as err:
            status, payload = err.code, err.read()
        except OSError as err:
            status, payload = 502, json.dumps({"error": {"message": f"upstream: {err}"}}).encode()
        with self.lock:
            self.answered += status == 200
        return status, {}, payload


class FakeVLLM(LoopbackServer):
    """Answers like vLLM from an in-process transformers model and tokenizer.

    /v1/completions with echo=True and logprobs: the prompt's tokens and logprobs in the shapes of vLLM's
    OpenAIServingCompletion (vllm/entrypoints/openai/completion/serving.py): `logprobs.tokens` (per-token decoded
    text, the first token decoded alone), `token_logprobs` (null first), `text_offset` (the running sum of the
    token texts' lengths), `top_logprobs`, then one greedy generated token when max_tokens is 1; beside it
    `prompt_logprobs` ({token id: {logprob, rank, decoded_token}}, null first) and usage.prompt_tokens. With
    `only_prompt_logprobs`, `logprobs` is left out and `prompt_token_ids` given (vLLM's return_token_ids).

    /v1/chat/completions: `chat(messages) -> (reasoning, content)` scripts the answer, returned the way vLLM's
    reasoning parsers do (message.reasoning_content, or message.reasoning with `reasoning_field`)."""

    def __init__(self, model, tokenizer, chat: Callable[[list[dict]], tuple[str | None, str]] | None = None):
        super().__init__()
        self.model, self.tokenizer, self.chat = model, tokenizer, chat
        self.only_prompt_logprobs, self.reasoning_field = False, "reasoning_content"
        self.lock = threading.Lock()
        self.bodies: list[dict] = []

    def handle(self, method, path, raw):
        body = json.loads(raw) if raw else {}
        self.bodies.append(body)
        if path.endswith("/completions") and not path.endswith("/chat/completions"):
            with self.lock:  # one forward pass at a time: torch on 2 cores
                data = self._completion(body)
        elif path.endswith("/chat/completions") and self.chat is not None:
            data = self._chat(body)
        else:
            return 404, {}, json.dumps({"detail": "Not Found"}).encode()
        return 200, {}, json.dumps(data).encode()

    def _completion(self, body: dict[str, Any]) -> dict:
        import torch

        tok = self.tokenizer
        ids = tok(body["prompt"], add_special_tokens=body.get("add_special_tokens", True))["input_ids"]
        with torch.inference_mode():
            logprobs = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), -1)
        generated = [int(logprobs[-1].argmax())] if body.get("max_tokens", 16) >= 1 else []
        all_ids = ids + generated
        # vLLM decodes each token incrementally: the text it adds to the decoded prefix.
        texts = [tok.decode(all_ids[:1])]
        texts += [tok.decode(all_ids[: i + 1])[len(tok.decode(all_ids[:i])) :] for i in range(1, len(all_ids))]
        token_logprobs: list[float | None] = [None]
        for i in range(1, len(all_ids)):
            token_logprobs.append(float(logprobs[i - 1, all_ids[i]]))
        offsets, total = [], 0
        for t in texts:
            offsets.append(total)
            total += len(t)
        prompt_logprobs: list[dict | None] = [None]
        for i in range(1, len(ids)):
            rank = int((logprobs[i - 1] > logprobs[i - 1, ids[i]]).sum()) + 1
            prompt_logprobs.append(
                {str(ids[i]): {"logprob": token_logprobs[i], "rank": rank, "decoded_token": texts[i]}}
            )
        choice: dict[str, Any] = {
            "index": 0,
            "text": body["prompt"] + tok.decode(generated),
            "logprobs": {
                "text_offset": offsets,
                "token_logprobs": token_logprobs,
                "tokens": texts,
                "top_logprobs": [None] + [{t: lp} for t, lp in zip(texts[1:], token_logprobs[1:], strict=True)],
            },
            "finish_reason": "length",
            "stop_reason": None,
            "prompt_logprobs": prompt_logprobs,
        }
        if self.only_prompt_logprobs:
            choice["logprobs"] = None
            choice["prompt_token_ids"] = ids
        usage = {"prompt_tokens": len(ids), "completion_tokens": len(generated), "total_tokens": len(all_ids)}
        return {"id": "cmpl-fake", "object": "text_completion", "choices": [choice], "usage": usage}

    def _chat(self, body: dict[str, Any]) -> dict:
        reasoning, content = self.chat(body["messages"])  # type: ignore[misc]
        message = {"role": "assistant", "content": content, self.reasoning_field: reasoning}
        choice = {"index": 0, "message": message, "finish_reason": "stop", "stop_reason": None}
        usage = {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}
        return {"id": "chatcmpl-fake", "object": "chat.completion", "choices": [choice], "usage": usage}
