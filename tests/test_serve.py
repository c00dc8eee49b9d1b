"""Servers started by the study (engines/serve.py): a real `transformers serve` on the tiny model answers a chat
completion through the OpenAI engine and is gone afterwards, port and all; a small stdlib server that leaves a
child behind which ignores SIGTERM (as vLLM's engine processes hold GPUs) checks that the whole process group is
stopped when the block raises and when the study is killed with SIGKILL; commands that die or never answer fail
with one line; templates are checked for dry runs.
"""

import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtransfer.engines.base import SamplingParams
from rtransfer.engines.factory import EngineSpec, make_engine
from rtransfer.engines.serve import (
    TRANSFORMERS,
    VLLM,
    ServeCommandError,
    ServerStartError,
    ServeSpec,
    check_command,
    group_alive,
    render,
    served,
)
from rtransfer.errors import RtransferError

PY = "{python}/python"

# Answers 200 to every GET; first starts a child that ignores SIGTERM and writes its pid to argv[2].
FAKE_SERVER = textwrap.dedent(
    """
    import subprocess, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", ignore])
    with open(sys.argv[2], "w") as f:
        f.write(str(child.pid))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def pids_in(log: Path) -> tuple[int, int]:
    """(server pid, watchdog pid) from the header served() writes into the log."""
    m = re.search(r"server pid (\d+) .*watchdog pid (\d+)", log.read_text())
    assert m, log.read_text()
    return int(m[1]), int(m[2])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def until(condition, timeout: float) -> float:
    """Seconds until condition() held; fails after `timeout`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not reached in time"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
def fake(tmp_path) -> Iterator[ServeSpec]:
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    yield ServeSpec(command=(PY, str(script), "{port}", str(tmp_path / "child.pid")), stop_grace=1.0)
    # A failed test must not leave its processes behind (a passing one left none): the server's group (its child
    # is in it), and the watchdog when its command line still names that group.
    for log in tmp_path.glob("*.log"):
        with contextlib.suppress(AssertionError, OSError):
            pid, watchdog = pids_in(log)
            if group_alive(pid):
                os.killpg(pid, signal.SIGKILL)
            if f"\0{pid}\0" in Path(f"/proc/{watchdog}/cmdline").read_text():
                os.kill(watchdog, signal.SIGKILL)


def gone(pid: int, watchdog: int, child: int) -> bool:
    return not (group_alive(pid) or running(pid) or running(watchdog) or running(child))


# --- a real server -------------------------------------------------------------------------------------------


def test_transformers_serve_answers_through_the_openai_engine_and_is_gone_after(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the server inherits the study's environment
    spec = ServeSpec(command=(*TRANSFORMERS, "--device", "cpu"), startup_timeout=180)
    log = tmp_path / "logs" / "serve.log"
    start = time.monotonic()
    with served(spec, str(tiny_model), log) as url:
        started = time.monotonic() - start
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert url == f"http://127.0.0.1:{port}/v1" and not port_free(port)
        pid, watchdog = pids_in(log)
        assert running(pid) and running(watchdog) and os.getpgid(pid) == pid
        engine = make_engine(EngineSpec(str(tiny_model), engine="openai", base_urls=(url,), concurrency=1))
        prompts = [[{"role": "user", "content": "What is 2 plus 3?"}]]
        (gen,) = engine.generate(prompts, SamplingParams(max_new_tokens=4), [0])
        assert gen.tokens >= 1 and gen.finish_reason in ("stop", "length")
        stop = time.monotonic()
    stopped = time.monotonic() - stop
    assert not group_alive(pid) and not running(pid) and not running(watchdog)
    assert port_free(port)
    print(f"transformers serve: ready in {started:.1f} s, stopped in {stopped:.1f} s")
    assert f"--port {port}" in log.read_text()  # the command line heads the server's output


# --- stopping the whole group --------------------------------------------------------------------------------


def test_an_exception_in_the_block_stops_the_group_and_escalates_to_sigkill(fake, tmp_path):
    log = tmp_path / "fake.log"
    with pytest.raises(KeyError), served(fake, "m", log):
        pid, watchdog = pids_in(log)
        until(lambda: (tmp_path / "child.pid").exists(), 10)
        child = int((tmp_path / "child.pid").read_text())
        assert running(child) and os.getpgid(child) == pid
        raise KeyError("boom")
    # Returned only once the child, which ignores SIGTERM, was killed after the grace period.
    assert gone(pid, watchdog, child)


def test_a_study_killed_with_sigkill_leaves_no_server(fake, tmp_path):
    log = tmp_path / "fake.log"
    study = textwrap.dedent(
        f"""
        import json, sys, time
        from rtransfer.engines.serve import ServeSpec, served
        spec = ServeSpec(**json.loads(sys.argv[1]))
        with served(spec, "m", {str(log)!r}) as url:
            print(url, flush=True)
            time.sleep(600)
        """
    )
    spec = json.dumps(dataclasses.asdict(fake))
    proc = subprocess.Popen([sys.executable, "-c", study, spec], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("http://127.0.0.1:")
        pid, watchdog = pids_in(log)
        child = int((tmp_path / "child.pid").read_text())
        assert running(pid) and running(watchdog) and running(child)
    finally:
        proc.kill()
        proc.wait()
    took = until(lambda: gone(pid, watchdog, child), 10)
    print(f"server group gone {took:.1f} s after the study's SIGKILL (grace {fake.stop_grace:g} s)")


# --- failing to start ----------------------------------------------------------------------------------------


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and isinstance(err.value, RtransferError)
    return text


def test_a_server_that_exits_at_once_is_one_line_with_its_code_and_log(tmp_path):
    log = tmp_path / "dies.log"
    spec = ServeSpec(command=(PY, "-c", "import sys; print('no GPU here'); sys.exit(3)", "{port}"))
    start = time.monotonic()
    with pytest.raises(ServerStartError) as err, served(spec, "m", log):
        pytest.fail("the block must not run")
    assert time.monotonic() - start < 10
    line = one_line(err)
    assert "code 3" in line and str(log) in line and "no GPU here" in line and "sys.exit(3)" in line


def test_a_server_that_never_answers_times_out_and_is_killed(tmp_path):
    log = tmp_path / "silent.log"
    spec = ServeSpec(command=(PY, "-c", "import time; time.sleep(600)", "{port}"), startup_timeout=1.5)
    start = time.monotonic()
    with pytest.raises(ServerStartError) as err, served(spec, "m", log):
        pytest.fail("the block must not run")
    assert time.monotonic() - start < 10
    line = one_line(err)
    assert "within 1.5 s" in line and str(log) in line and "/v1/models" in line
    pid, watchdog = pids_in(log)
    assert not group_alive(pid) and not running(pid) and not running(watchdog)


def test_a_taken_port_is_refused_before_starting(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        spec = ServeSpec(command=(PY, "-c", "pass"), port=port)
        taken = pytest.raises(ServerStartError, match=f"port {port} on 127.0.0.1 is taken")
        with taken, served(spec, "m", tmp_path / "x.log"):
            pytest.fail("the block must not run")
    assert not (tmp_path / "x.log").exists()


# --- templates -----------------------------------------------------------------------------------------------


def test_templates_format_and_context_zero_leaves_its_flag_out():
    spec = ServeSpec(dtype="bfloat16", port=8123)
    argv = render(spec, "/m/arm", 8123)
    assert argv[:3] == [str(Path(sys.executable).parent / "vllm"), "serve", "/m/arm"]
    assert "--dtype" in argv and argv[argv.index("--dtype") + 1] == "bfloat16"
    assert not any("max-model-len" in a for a in argv) and argv[argv.index("--port") + 1] == "8123"
    assert "--max-model-len=32768" in render(dataclasses.replace(spec, context=32768), "/m/arm", 8123)
    # A venv's bin, not the interpreter it links to: {python}/transformers is this environment's.
    assert check_command(ServeSpec(command=TRANSFORMERS))[0] == str(Path(sys.executable).parent / "transformers")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (("{python}/vllm", "serve", "{modle}", "--port", "{port}"), "names 'modle'"),
        (("{python}/vllm", "--port", "{port}", "{}"), "names ''"),
        (("{python}/vllm", "--port", "{port", "x"), "'{port'"),
        (("/no/such/dir/vllm", "serve", "{port}"), "'/no/such/dir/vllm' is not an executable file"),
        (("no-such-server-xyz", "{port}"), "'no-such-server-xyz' is not on PATH"),
        ((PY, "-m", "http.server"), "must pass {port}"),
        ((), "empty"),
        (("{python}/vllm", "--port", "{port}", "--max-model-len", "{context}"), "--max-model-len={context}"),
    ],
)
def test_check_command_refuses_a_bad_template_in_one_line(command, message):
    with pytest.raises(ServeCommandError) as err:
        check_command(ServeSpec(command=command))
    assert message in one_line(err)


def test_the_spec_round_trips_through_json_and_takes_a_string():
    spec = ServeSpec(command=VLLM, dtype="bfloat16", context=40960, devices="0,1", port=0, startup_timeout=60)
    back = ServeSpec(**json.loads(json.dumps(dataclasses.asdict(spec))))
    assert back == spec and isinstance(back.command, tuple)
    line = "{python}/vllm serve {model} --port {port} --max-model-len={context} --reasoning-parser qwen3"
    assert ServeSpec(command=line).command == tuple(line.split())


def test_devices_reach_the_server_as_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    code = "import os, sys; print('CVD=' + os.environ['CUDA_VISIBLE_DEVICES']); sys.exit(5)"
    for devices, seen in [("2,3", "CVD=2,3"), ("", "CVD=7")]:
        spec = ServeSpec(command=(PY, "-c", code, "{port}"), devices=devices)
        with pytest.raises(ServerStartError, match=f"code 5 .*{seen}"), served(spec, "m", tmp_path / "d.log"):
            pytest.fail("the block must not run")
