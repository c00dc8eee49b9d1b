"""Servers started by the study: `with served(ServeSpec(...), model, log) as url:` runs an OpenAI-compatible
server (`vllm serve`, `transformers serve`) for one model, hands back its base URL once it answers, and stops it.

Hand-written because the lifetime is the point: a server holds GPUs, so it must not outlive the block, nor the
study when the study is killed with SIGKILL, and vLLM's engine and workers are child processes of the server
(stopping the server's own pid leaves them holding the GPUs). So:

- the server runs in its own session; its process group is what is stopped: SIGTERM, then SIGKILL after
  `stop_grace` seconds;
- on Linux the kernel sends the server SIGTERM when the thread that started it dies (PR_SET_PDEATHSIG);
- a small watchdog process (its own session, so a Ctrl-C or a signal to the study's group leaves it alone) polls
  its parent's pid; when the study is gone it stops the server's whole group the same way. The block's normal
  exit kills the watchdog first, then stops the group itself.

The command is a template (`ServeSpec.command`), each part formatted with the placeholders in PLACEHOLDERS.
The one rule for optional values: a part that uses `{context}` is left out when `context` is 0 (the model's own
length), so write such a flag and its value as ONE part: `--max-model-len={context}`.
"""

import contextlib
import http.client
import os
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rtransfer.errors import RtransferError

# What a template may name. {python} is the running interpreter's bin directory (not resolved: a venv's bin), so
# `{python}/vllm` is the vllm of the environment running the study, whatever PATH says.
PLACEHOLDERS = ("model", "port", "host", "dtype", "context", "python")

# The shipped templates. vLLM's flags follow docs/scale-out.md: sampling exactly as the request says
# (--generation-config vllm), seeded.
# fmt: off
VLLM = (
    "{python}/vllm", "serve", "{model}", "--host", "{host}", "--port", "{port}", "--dtype", "{dtype}",
    "--max-model-len={context}", "--generation-config", "vllm", "--seed", "0",
)
TRANSFORMERS = (
    "{python}/transformers", "serve", "{model}", "--host", "{host}", "--port", "{port}", "--dtype", "{dtype}",
)
# fmt: on


class ServerStartError(RtransferError):
    """A server the study starts did not come up: it exited, never answered, or its port is taken."""


class ServeCommandError(ServerStartError):
    """A server command template that cannot run: an unknown placeholder, a missing executable."""


@dataclass(frozen=True)
class ServeSpec:
    command: tuple[str, ...] = VLLM  # a template (see the module doc); a string is split as a shell would
    dtype: str = "auto"
    context: int = 0  # the longest sequence the server accepts; 0: the model's own
    devices: str = ""  # CUDA_VISIBLE_DEVICES for the server; "": the study's own
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, chosen at start
    startup_timeout: float = 1800.0  # seconds until GET /v1/models must answer 200 (a 70B load takes minutes)
    stop_grace: float = 30.0  # seconds between SIGTERM and SIGKILL when stopping

    def __post_init__(self):
        command = shlex.split(self.command) if isinstance(self.command, str) else self.command
        object.__setattr__(self, "command", tuple(command))  # JSON gives lists back


def python_bin() -> str:
    return os.path.dirname(sys.executable)


def render(spec: ServeSpec, model: str, port: int) -> list[str]:
    """The command line: every part formatted, the parts naming {context} left out when context is 0."""
    if not spec.command:
        raise ServeCommandError("the server command is empty")
    values = {
        "model": model,
        "port": port,
        "host": spec.host,
        "dtype": spec.dtype,
        "context": spec.context,
        "python": python_bin(),
    }
    argv = []
    for part in spec.command:
        names = _fields(part)
        if "context" in names and not spec.context:
            continue
        argv.append(part.format(**values))
    return argv


def check_command(spec: ServeSpec, model: str = "MODEL") -> list[str]:
    """For a dry run: the command line the spec would run (every placeholder known, the executable there), or a
    one-line ServeCommandError."""
    argv = render(spec, model, spec.port or 8000)
    if not spec.port and not any("port" in _fields(p) for p in spec.command):
        raise ServeCommandError(f"server command {shlex.join(spec.command)} must pass {{port}} (port = 0 picks one)")
    for flag, part in zip(spec.command, spec.command[1:], strict=False):
        if "context" in _fields(part) and flag.startswith("-") and "=" not in flag and "{" not in flag:
            # Left out at context 0, the part would leave its flag without a value.
            raise ServeCommandError(f"server command: write {flag} {part} as one part, {flag}={part}")
    _executable(argv[0])
    return argv


@contextlib.contextmanager
def served(spec: ServeSpec, model: str, log: Path) -> Iterator[str]:
    """Start the server for `model`, yield its base URL ("http://host:port/v1") once GET /v1/models answers 200,
    and stop its whole process group when the block ends, however it ends. The server's output is appended to
    `log`. Failing to start is a one-line ServerStartError naming the command, its exit code and the log."""
    check_command(spec, model)
    if spec.port:
        _port_free(spec.host, spec.port)
    port = spec.port or _free_port(spec.host)
    argv = render(spec, model, port)
    host = _url_host(spec.host)
    url = f"http://{host}:{port}/v1"
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    proc, watchdog = _start(argv, spec, log)
    try:
        _wait_ready(proc, spec, argv, (host.strip("[]"), port), log)
        yield url
    finally:
        _kill(watchdog)  # first: once the group is gone its id may be reused
        stop_group(proc, spec.stop_grace)


def stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process group led by `proc`, SIGKILL to what is left after `grace` seconds; bounded."""
    _signal_group(proc.pid, signal.SIGTERM)
    _wait_group(proc, grace)
    if group_alive(proc.pid):
        _signal_group(proc.pid, signal.SIGKILL)
    _wait_group(proc, 10.0)


# --- starting ------------------------------------------------------------------------------------------------


def _fields(part: str) -> set[str]:
    """The placeholders a part names; anything else (an unknown name, `{}`, `{model.x}`, a lone brace) is a
    one-line ServeCommandError."""
    try:
        parsed = list(string.Formatter().parse(part))
    except ValueError as err:
        raise ServeCommandError(f"server command part {part!r}: {err}") from None
    names = {name for _, name, _, _ in parsed if name is not None}
    unknown = sorted(n for n in names if n not in PLACEHOLDERS)
    if unknown:
        known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        raise ServeCommandError(f"server command part {part!r} names {unknown[0]!r} (known: {known})")
    return names


def _executable(program: str) -> str:
    path = shutil.which(program)  # a path with a slash is checked as is, a bare name looked up on PATH
    if path is None:
        where = "is not an executable file" if os.sep in program else "is not on PATH"
        raise ServeCommandError(f"server command {program!r} {where}")
    return path


def _free_port(host: str) -> int:
    with socket.socket(_family(host)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_free(host: str, port: int) -> None:
    """A taken port would have the readiness check talk to someone else's server."""
    with socket.socket(_family(host)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT does not count
        try:
            s.bind((host, port))
        except OSError as err:
            raise ServerStartError(f"port {port} on {host} is taken ({err.strerror})") from None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _term_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel for SIGTERM when the starting thread dies (Linux; elsewhere the watchdog
    alone). libc is loaded here, before the fork, so that the child runs no import."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes  # local: only Linux needs it

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return preexec


# Runs as `python -I -c WATCHDOG PARENT PGID GRACE`: waits for its parent to go, then stops the group.
WATCHDOG = """
import os, signal, sys, time
parent, pgid, grace = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
while os.getppid() == parent:
    time.sleep(0.5)
def send(sig):
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
if send(signal.SIGTERM):
    end = time.monotonic() + grace
    while time.monotonic() < end and send(0):
        time.sleep(0.2)
    send(signal.SIGKILL)
"""


def _start(argv: list[str], spec: ServeSpec, log: Path) -> tuple[subprocess.Popen, subprocess.Popen]:
    """The server, in its own session, its output appended to `log`, and its watchdog."""
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": spec.devices} if spec.devices else {})}
    with open(log, "ab") as out:
        out.write(f"# rtransfer: {time.strftime('%Y-%m-%d %H:%M:%S')} starting {shlex.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_term_with_parent(),
            )
        except OSError as err:
            raise ServerStartError(f"cannot start {shlex.join(argv)}: {err.strerror} (log: {log})") from None
        try:
            watchdog = _watchdog(proc.pid, spec.stop_grace, out)
        except BaseException:
            stop_group(proc, spec.stop_grace)
            raise
        out.write(f"# rtransfer: server pid {proc.pid} (its process group), watchdog pid {watchdog.pid}\n".encode())
        out.flush()
    return proc, watchdog


def _watchdog(pgid: int, grace: float, out) -> subprocess.Popen:
    args = [sys.executable, "-I", "-c", WATCHDOG, str(os.getpid()), str(pgid), str(grace)]
    return subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait_ready(proc: subprocess.Popen, spec: ServeSpec, argv: list[str], where: tuple[str, int], log: Path) -> None:
    """Until GET /v1/models answers 200; a server that exits or stays silent past the timeout is one line."""
    deadline = time.monotonic() + spec.startup_timeout
    url = f"http://{where[0]}:{where[1]}/v1"
    while True:
        code = proc.poll()
        if code is not None:
            raise ServerStartError(
                f"server exited with code {code} before answering: {shlex.join(argv)} (log: {log}{_last_line(log)})"
            )
        if _answers(*where):
            return
        if time.monotonic() >= deadline:
            raise ServerStartError(
                f"server did not answer GET {url}/models within {spec.startup_timeout:g} s, stopped: "
                f"{shlex.join(argv)} (log: {log}{_last_line(log)})"
            )
        time.sleep(0.5)


def _answers(host: str, port: int) -> bool:
    """GET /v1/models answers 200 (vLLM and transformers serve list their models there once loaded). Straight
    http.client: no proxy from the environment may stand between the study and its own server."""
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", "/v1/models")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _last_line(log: Path) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    lines = [line for line in lines if not line.startswith("# rtransfer:")]
    return f"; last line: {lines[-1][:300]}" if lines else ""


# --- stopping ------------------------------------------------------------------------------------------------


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs. A zombie does not count: it holds no port and no GPU, and
    an orphan's is reaped by init whenever init gets to it (Linux reads /proc; elsewhere a zombie counts)."""
    if not os.path.isdir("/proc/self"):
        return _signal_group(pgid, 0)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _proc_state(entry.name, pgid) not in (None, "Z"):
            return True
    return False


def _proc_state(pid: str, pgid: int) -> str | None:
    """The state letter of process `pid` when it belongs to group `pgid`, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:  # gone meanwhile
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, pgrp, ...
    return fields[0] if int(fields[2]) == pgid else None


def _wait_group(proc: subprocess.Popen, timeout: float) -> None:
    """Until the leader is reaped and no process is left in its group, at most `timeout` seconds (orphans in the
    group are reaped by init; a zombie left there holds no port and no GPU)."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    while time.monotonic() < deadline and group_alive(proc.pid):
        time.sleep(0.1)


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()
