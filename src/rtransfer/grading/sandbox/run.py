"""The grader's side of one run: start a launcher, feed and watch it, enforce the timeout and the output cap.

The launcher (launcher.py) is executed by path, `python -I -S .../sandbox/launcher.py`, so it is found next to
this file wherever the package is (installed, editable, or a source tree).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import os
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

from . import launcher
from .confine import under
from .launcher import LaunchConfig
from .outcome import Limits, Observation, RunResult, SandboxError, classify

MODES = ("namespaces", "userns", "basic")  # strongest first
SETUP_TIMEOUT = 20.0  # seconds the launcher may take before the program starts (a loaded machine is slow)
KILL_GRACE = 10.0  # seconds between asking the launcher to stop the program and killing the launcher
# Directories the namespace modes hide under empty tmpfs (the grader's home and scratch space, sockets in /run).
HIDDEN = ("/root", "/home", "/run", "/var/tmp", "/dev/shm", "/mnt", "/media", "/srv")
LAUNCHER = os.path.abspath(launcher.__file__)


def run_program(
    code: str,
    stdin: str | bytes = "",
    limits: Limits | None = None,
    *,
    isolation: str = "auto",
    args: Sequence[str] = (),
) -> RunResult:
    """Run the Python program `code` with `stdin` in a fresh sandbox and return what happened.
    `isolation` is "auto" (the strongest mode that works here) or one of MODES; `args` go to the program's argv."""
    mode = isolation_mode() if isolation == "auto" else isolation
    if mode not in MODES:
        raise ValueError(f"unknown isolation {isolation!r} (auto, {', '.join(MODES)})")
    return _run(code, stdin, limits or Limits(), mode, tuple(args))


_probe_lock = threading.Lock()
_probed: dict[str, str] = {}  # mode -> "" when it works, else why not


def available_modes() -> list[str]:
    """The modes that run a program on this machine, strongest first (probed once per process, by running one)."""
    with _probe_lock:
        if not _probed:
            for mode in MODES:
                try:
                    result = _run("import sys", b"", Limits(timeout=SETUP_TIMEOUT), mode, ())
                    _probed[mode] = "" if result.ok else f"{result.status}: {result.stderr.strip()[-300:]}"
                except SandboxError as err:
                    _probed[mode] = str(err)
    return [mode for mode in MODES if not _probed[mode]]


def isolation_mode() -> str:
    """The strongest mode that works here: what isolation="auto" uses."""
    modes = available_modes()
    if not modes:
        reasons = "; ".join(f"{mode}: {why}" for mode, why in _probed.items())
        raise SandboxError(f"no sandbox mode works on this machine: {reasons}")
    return modes[0]


def _run(code: str, stdin: str | bytes, limits: Limits, mode: str, args: tuple[str, ...]) -> RunResult:
    hide, binds = _filesystem_plan()
    workdir = tempfile.mkdtemp(prefix="rtransfer-sandbox-") if mode == "basic" else None
    config = LaunchConfig(
        mode=mode,
        code=code,
        args=list(args),
        python=sys.executable,
        python_shared=_usable_by_others(tuple(_interpreter_dirs())),
        grader=os.getpid(),
        uid=(1 << 30) + secrets.randbelow(1 << 30),  # a fresh uid: its process count is the sandbox's own
        fresh_uid=mode == "basic" and os.geteuid() == 0,  # the program's real uid is `uid`: sweep it at the end
        workdir=workdir,
        hide=hide,
        binds=binds,
        cpu_seconds=limits.cpu_seconds,
        memory_mb=limits.memory_mb,
        file_mb=limits.file_mb,
        open_files=limits.open_files,
        processes=limits.processes,
    )
    data = stdin.encode() if isinstance(stdin, str) else stdin
    report_r, report_w = os.pipe()
    try:
        with tempfile.TemporaryFile() as config_file, tempfile.TemporaryFile() as stdin_file:
            config_file.write(config.to_bytes())
            config_file.seek(0)
            stdin_file.write(data)
            stdin_file.seek(0)
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", LAUNCHER, str(config_file.fileno()), str(report_w)],
                stdin=stdin_file,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(config_file.fileno(), report_w),
                env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},  # nothing of the grader's environment
                cwd="/",
                start_new_session=True,
            )
            os.close(report_w)
            report_w = -1
            try:
                return _supervise(proc, report_r, limits)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                proc.stdout.close()
                proc.stderr.close()
                if proc.returncode != 0 and config.fresh_uid:
                    # The launcher died before cleaning up (basic mode has no PID namespace to do it).
                    subprocess.run([sys.executable, "-I", "-S", LAUNCHER, "--sweep", str(config.uid)])
    finally:
        os.close(report_r)
        if report_w >= 0:
            os.close(report_w)
        if workdir:
            _remove_tree(workdir)


def _supervise(proc: subprocess.Popen, report_fd: int, limits: Limits) -> RunResult:
    """Read stdout, stderr and the launcher's reports until all are closed; enforce the timeout and output cap."""
    out, err, pending = bytearray(), bytearray(), bytearray()
    report: dict = {}
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout.fileno(), selectors.EVENT_READ, "out")
    selector.register(proc.stderr.fileno(), selectors.EVENT_READ, "err")
    selector.register(report_fd, selectors.EVENT_READ, "report")
    deadline = time.monotonic() + SETUP_TIMEOUT
    started = ended = None
    stopped = None  # why we stopped the program: "timeout", "output_limit" or "setup"
    killed = False
    while selector.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            if stopped is None:  # ask the launcher to kill the program (it is the only one that can, race-free)
                stopped = "timeout" if started is not None else "setup"
                proc.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + KILL_GRACE
            elif not killed:  # the launcher did not finish in time: kill it (the program dies with it)
                proc.kill()
                killed = True
                deadline = time.monotonic() + KILL_GRACE
            else:
                break
            continue
        for key, _ in selector.select(left):
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                selector.unregister(key.fd)
            elif key.data == "out":
                room = max(0, limits.output_bytes - len(out))
                out += chunk[:room]
                if len(chunk) > room and stopped is None:
                    stopped = "output_limit"
                    proc.send_signal(signal.SIGTERM)
                    deadline = time.monotonic() + KILL_GRACE
            elif key.data == "err":
                err += chunk
                del err[: max(0, len(err) - limits.stderr_bytes)]
            else:
                pending += chunk
                while b"\n" in pending:
                    line, _, rest = bytes(pending).partition(b"\n")
                    pending[:] = rest
                    message = ast.literal_eval(line.decode())
                    report.update(message)
                    if "ready" in message:
                        started = time.monotonic()
                        if stopped is None:
                            deadline = started + limits.timeout
                    if "exit" in message:
                        ended = time.monotonic()
    selector.close()
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if "error" in report:
        raise SandboxError(f"sandbox setup failed: {report['error']}")
    if stopped == "setup":
        raise SandboxError(f"the sandbox did not start within {SETUP_TIMEOUT:.0f} s")
    if started is None or ("exit" not in report and stopped is None):
        raise SandboxError(f"the launcher ended without a report: {stderr.strip()[-500:]}")
    code = report.get("exit")
    runtime = (ended or time.monotonic()) - started
    status = classify(Observation(code, runtime, stderr, stopped), limits)
    return RunResult(status, stdout, stderr, runtime, code, tuple(report.get("ready", ())))


@functools.cache
def _interpreter_dirs() -> list[str]:
    """Directories the program's interpreter needs: prefixes (stdlib, site-packages) and the binary's own."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, os.path.dirname(sys.executable)}
    paths |= {os.path.realpath(p) for p in paths} | {os.path.dirname(os.path.realpath(sys.executable))}
    return _outermost(p for p in paths if os.path.isdir(p))


def _filesystem_plan() -> tuple[list[str], list[str]]:
    """(directories to hide, interpreter directories to bind back inside them), for the namespace modes."""
    interpreter = _interpreter_dirs()
    roots = {*HIDDEN, os.path.expanduser("~")}
    hide = sorted(
        r
        for r in roots
        if r not in ("/", "/tmp")
        and os.path.isdir(r)
        and not os.path.islink(r)
        and not any(under(r, p) for p in interpreter)  # never hide the interpreter itself
    )
    binds = [p for p in interpreter if any(under(p, r) for r in [*hide, "/tmp"])]
    return _outermost(hide), binds


def _outermost(paths) -> list[str]:
    ordered = sorted(set(paths))
    return [p for p in ordered if not any(q != p and under(p, q) for q in ordered)]


@functools.cache
def _usable_by_others(paths: tuple[str, ...]) -> bool:
    """Whether a user without any relation to the files could run the interpreter (every directory searchable)."""
    for path in [*paths, os.path.realpath(sys.executable)]:
        parts = os.path.realpath(path).split("/")
        for i in range(1, len(parts) + 1):
            mode = os.stat("/".join(parts[:i]) or "/").st_mode
            need = stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH | stat.S_IXOTH
            if mode & need != need:
                return False
    return True


def _remove_tree(path: str) -> None:
    # The program may have left directories without permissions: restore them so that rmtree can go in.
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
    shutil.rmtree(path, ignore_errors=True)
