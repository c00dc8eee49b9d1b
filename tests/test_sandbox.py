"""The sandbox against hostile programs. Each attack really runs; each test checks that it was contained, that the
program counts as failed, that nothing it started is still alive, and that it ended quickly.

Attacks run in every isolation mode that works on this machine (all three where the tests run as root) and in
"auto", the mode grading uses. Nothing is skipped: a mode that does not work here is simply not listed."""

import marshal
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rtransfer.grading import sandbox
from rtransfer.grading.sandbox import Job, LaunchConfig, Limits, Observation, classify, run_many, run_program

MODES = ["auto", *sandbox.available_modes()]
FAST = Limits(timeout=1.0)


@pytest.fixture
def marker() -> str:
    """A word put on the command line of the test's programs, to find their processes afterwards."""
    return f"rtransfer-test-{secrets.token_hex(8)}"


def processes_with(word: str) -> list[str]:
    """Command lines of live processes (zombies have none) that contain `word`, this one excluded."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        if word.encode() in cmdline:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def attack(code: str, mode: str, marker: str, limits: Limits = FAST, stdin: str = "", budget: float = 6.0):
    """Run `code`, check that it ended within `budget` seconds and left no process behind; return the result."""
    start = time.monotonic()
    result = run_program(code, stdin, limits, isolation=mode, args=(marker,))
    elapsed = time.monotonic() - start
    assert elapsed < budget, f"took {elapsed:.1f} s"
    assert processes_with(marker) == []
    return result


def test_modes_available_here():
    # Root on Linux gets the namespace mode; whatever is chosen, grading uses it and reports it.
    assert sandbox.isolation_mode() in sandbox.MODES
    assert MODES[1] == sandbox.isolation_mode()
    if os.geteuid() == 0:
        assert "namespaces" in MODES


@pytest.mark.parametrize("mode", MODES)
def test_correct_program_passes_and_wrong_ones_fail(mode, marker):
    ok = attack("a, b = map(int, input().split())\nprint(a + b)", mode, marker, stdin="1 2\n")
    assert (ok.status, ok.stdout, ok.returncode) == ("ok", "3\n", 0)
    assert 0 < ok.runtime < 1
    crash = attack("raise ValueError('no')", mode, marker)
    assert (crash.status, crash.returncode) == ("runtime_error", 1)
    assert "ValueError: no" in crash.stderr
    exit_code = attack("import sys\nprint('partial')\nsys.exit(3)", mode, marker)
    assert (exit_code.status, exit_code.returncode, exit_code.stdout) == ("runtime_error", 3, "partial\n")


@pytest.mark.parametrize("mode", MODES)
def test_infinite_loop_times_out(mode, marker):
    result = attack("while True:\n    pass", mode, marker)
    assert result.status == "timeout" and not result.ok
    assert result.runtime < FAST.timeout + 1.5


@pytest.mark.parametrize("mode", MODES)
def test_cpu_limit_stops_a_busy_program_before_the_wall_clock(mode, marker):
    result = attack("while True:\n    pass", mode, marker, limits=Limits(timeout=5, cpu_time=1))
    assert result.status == "timeout"
    assert result.runtime < 3


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb_is_bounded_and_killed(mode, marker):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = attack(code, mode, marker)
    assert result.status == "timeout"
    # The process limit held: fork failed inside the sandbox instead of filling the machine.
    counted = attack("import os\nn = 0\ntry:\n    while n < 1000:\n        if os.fork() == 0:\n"
                     "            import time; time.sleep(30)\n        n += 1\nexcept OSError:\n    print(n)",
                     mode, marker)  # fmt: skip
    assert counted.ok and int(counted.stdout) < Limits().processes


@pytest.mark.parametrize("mode", MODES)
def test_huge_allocation_is_refused(mode, marker):
    result = attack("block = bytearray(10 * 1024**3)\nprint('allocated')", mode, marker)
    assert result.status == "memory"
    assert "allocated" not in result.stdout


@pytest.fixture
def outside(tmp_path):
    """A world-writable directory on the host, holding a world-writable file."""
    folder = Path(tempfile.mkdtemp(prefix="rtransfer-outside-"))
    folder.chmod(0o777)
    target = folder / "target.txt"
    target.write_text("original")
    target.chmod(0o666)
    yield folder
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


@pytest.mark.parametrize("mode", MODES)
def test_writing_outside_the_working_directory_is_contained(mode, marker, outside):
    etc_probe = Path("/etc") / f"{marker}.txt"
    code = f"""
import os
for attempt in (
    lambda: open({str(outside / "target.txt")!r}, "w").write("changed"),
    lambda: open({str(outside / "new.txt")!r}, "w").write("new"),
    lambda: os.remove({str(outside / "target.txt")!r}),
    lambda: open({str(etc_probe)!r}, "w").write("new"),
):
    try:
        attempt()
        print("wrote")
    except OSError as err:
        print(type(err).__name__)
open("mine.txt", "w").write("the working directory is writable")
print(open("mine.txt").read())
"""
    result = attack(code, mode, marker)
    assert result.ok, result.stderr
    assert "wrote" not in result.stdout
    assert "the working directory is writable" in result.stdout
    assert (outside / "target.txt").read_text() == "original"
    assert sorted(p.name for p in outside.iterdir()) == ["target.txt"]
    assert not etc_probe.exists()


@pytest.mark.parametrize("mode", MODES)
def test_working_directory_is_fresh_and_removed(mode, marker):
    before = set(Path(tempfile.gettempdir()).glob("rtransfer-sandbox-*"))
    first = attack("import os\nprint(sorted(os.listdir('.')))\nopen('left.txt', 'w').write('x')", mode, marker)
    second = attack("import os\nprint(sorted(os.listdir('.')))", mode, marker)
    assert first.stdout == second.stdout == "['main.py']\n"
    assert set(Path(tempfile.gettempdir()).glob("rtransfer-sandbox-*")) == before


@pytest.mark.parametrize("mode", MODES)
def test_grader_environment_is_unreadable(mode, marker, monkeypatch):
    secret = secrets.token_hex(16)
    monkeypatch.setenv("RTRANSFER_TEST_SECRET", secret)
    code = """
import glob, os
print(dict(os.environ))
for path in glob.glob("/proc/*/environ") + [f"/proc/{os.getppid()}/environ"]:
    try:
        print(path, open(path, "rb").read())
    except OSError as err:
        print(path, type(err).__name__)
"""
    result = attack(code, mode, marker)
    assert result.ok, result.stderr
    assert "RTRANSFER_TEST_SECRET" not in result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr
    assert os.environ["RTRANSFER_TEST_SECRET"] == secret  # the secret was there to steal


@pytest.mark.parametrize("mode", MODES)
def test_no_connection_to_a_local_listener(mode, marker):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        code = f"""
import socket
for family, address in ((socket.AF_INET, ("127.0.0.1", {port})), (socket.AF_INET6, ("::1", {port}))):
    try:
        socket.create_connection(address, timeout=2)
        print("connected")
    except OSError as err:
        print(type(err).__name__, err)
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", {port}))
    print("sent")
except OSError as err:
    print(type(err).__name__, err)
socket.create_connection(("127.0.0.1", {port}), timeout=2)
"""
        result = attack(code, mode, marker)
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert result.status == "runtime_error"
    assert "connected" not in result.stdout and "sent" not in result.stdout


@pytest.mark.parametrize("mode", MODES)
def test_background_processes_do_not_outlive_the_program(mode, marker):
    sleep = f"{secrets.randbelow(10**6) + 10**6}.5"  # a unique duration, to find the sleepers
    code = f"""
import os, subprocess, time
subprocess.Popen(["sleep", "{sleep}"], start_new_session=True)
if os.fork() == 0:  # double fork: the grandchild is adopted away from the program
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "{sleep}"])
    os._exit(0)
time.sleep(0.3)
print("exiting")
"""
    result = attack(code, mode, marker)
    assert result.ok and result.stdout == "exiting\n", result.stderr
    assert processes_with(sleep) == []


@pytest.mark.parametrize("mode", MODES)
def test_printing_a_gigabyte_is_cut_short(mode, marker):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    limits = Limits(timeout=10, output_bytes=1 << 20)
    code = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)"
    result = attack(code, mode, marker, limits=limits)
    assert result.status == "output_limit"
    assert len(result.stdout) == limits.output_bytes
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100  # the grader never held the gigabyte


@pytest.mark.parametrize("mode", MODES)
def test_stderr_keeps_only_its_tail(mode, marker):
    code = "import sys\nfor i in range(20000):\n    print('line', i, file=sys.stderr)"
    result = attack(code, mode, marker, limits=Limits(timeout=5, stderr_bytes=100))
    assert result.ok
    assert len(result.stderr) == 100 and result.stderr.endswith("line 19999\n")


@pytest.mark.parametrize("mode", MODES)
def test_reports_cannot_be_forged(mode, marker):
    # The launcher's report pipe says how the program ended; a program that reached it could pass itself off.
    code = """
import glob, os
mine = {"self", "thread-self", str(os.getpid())}
for path in glob.glob("/proc/*/fd/*"):
    if path.split("/")[2] in mine:
        continue
    try:
        with open(path, "w") as f:
            f.write("{'exit': 0, 'cpu': 0.0}\\n{'error': 'forged'}\\n")
        print("opened", path)
    except OSError:
        pass
raise SystemExit(5)
"""
    result = attack(code, mode, marker)
    assert (result.status, result.returncode, result.stdout) == ("runtime_error", 5, "")


@pytest.mark.parametrize("mode", sandbox.available_modes())
def test_isolation_layers_are_reported_and_real(mode, marker):
    code = """
import os
print(os.getuid(), os.geteuid())
print(sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]))
print(len([p for p in os.listdir("/proc") if p.isdigit()]))
try:
    open("/usr/rtransfer-probe", "w")
except OSError as err:
    print(err.errno)
"""
    result = attack(code, mode, marker)
    assert result.ok, result.stderr
    uids, interfaces, processes, write_error = result.stdout.split("\n")[:4]
    layers = set(result.isolation)
    assert {"rlimits", "clean-env"} <= layers
    if os.uname().machine in sandbox.SECCOMP_DENY:
        assert "seccomp" in layers
    if mode != "basic":
        assert {"pid-ns", "net-ns", "mount-ns", "readonly-fs", "fresh-proc"} <= layers
        assert interfaces == "['lo']"  # a network namespace of its own
        assert int(processes) == 2  # a /proc of its own: the sandbox's init and the program
        assert int(write_error) in (13, 30)  # EACCES or EROFS
    if mode == "namespaces":
        assert "fresh-uid" in layers and "0" not in uids.split()
    if mode == "userns":
        assert {"user-ns", "no-caps"} <= layers
    assert not Path("/usr/rtransfer-probe").exists()


# When the grader must kill a launcher outright, the PID namespace (its init dies with the launcher) or, in basic
# mode, a sweep of the sandbox's fresh uid still ends everything. An ordinary user's basic mode has no fresh uid,
# and no such guarantee (docs/sandbox.md).
def promises_cleanup_after_a_hard_kill(mode: str) -> bool:
    return os.geteuid() == 0 or (sandbox.isolation_mode() if mode == "auto" else mode) != "basic"


HARD_KILL_MODES = [m for m in MODES if promises_cleanup_after_a_hard_kill(m)]


@pytest.mark.parametrize("mode", HARD_KILL_MODES)
def test_a_launcher_killed_outright_leaves_nothing_behind(mode, marker, monkeypatch):
    monkeypatch.setattr(sandbox.run, "KILL_GRACE", 0.0)  # no time to clean up: the grader kills the launcher at once
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = run_program(bomb, limits=FAST, isolation=mode, args=(marker,))
    assert result.status == "timeout"
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)  # the namespace's teardown is the kernel's, a moment after the launcher's death
    assert processes_with(marker) == []


def sandboxed(marker: str) -> list[str]:
    return [cmd for cmd in processes_with(marker) if "main.py" in cmd]


@pytest.mark.parametrize("mode", sandbox.available_modes())
def test_the_sandbox_dies_with_the_grader(mode, marker):
    # A sleeping program never reaches a CPU limit; only the grader's wall clock would stop it.
    grader_code = (
        "import sys\nfrom rtransfer.grading.sandbox import Limits, run_program\n"
        "run_program('import os, time\\nos.fork()\\ntime.sleep(100)', limits=Limits(timeout=60),"
        " isolation=sys.argv[1], args=(sys.argv[2],))"
    )
    grader = subprocess.Popen([sys.executable, "-c", grader_code, mode, marker])
    deadline = time.monotonic() + 20
    while len(sandboxed(marker)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(sandboxed(marker)) == 2  # the program and its child
    grader.kill()
    grader.wait()
    deadline = time.monotonic() + 5
    while sandboxed(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandboxed(marker) == []


def test_run_many_runs_in_parallel_keeps_order_and_stops_at_the_first_failure(marker):
    slow_ok = "import time, sys\ntime.sleep(0.5)\nprint(sys.stdin.read())"
    jobs = [Job(slow_ok, str(i), FAST, (marker,)) for i in range(6)]
    jobs[2] = Job("raise SystemExit(1)", "", FAST, (marker,))
    start = time.monotonic()
    results = run_many(jobs, workers=2, stop=lambda i, r: not r.ok)
    elapsed = time.monotonic() - start
    assert [r.stdout for r in results[:2]] == ["0\n", "1\n"]
    assert results[2].status == "runtime_error"
    assert results[4] is None and results[5] is None  # never started
    everything = run_many([Job(slow_ok, str(i), FAST, (marker,)) for i in range(4)], workers=2)
    assert [r.stdout for r in everything] == ["0\n", "1\n", "2\n", "3\n"]
    assert elapsed < 3
    assert processes_with(marker) == []


def test_programs_run_with_this_interpreter_in_isolated_mode(marker):
    result = attack("import sys\nprint(sys.flags.isolated, sys.version_info[:2], sys.argv[1:])", "auto", marker)
    assert result.stdout == f"1 {tuple(sys.version_info[:2])} ['{marker}']\n"


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown isolation"):
        run_program("pass", isolation="chroot")


# How a run's end is named, from what was seen of it (no sandbox needed). SIGXCPU is 24 and SIGKILL 9 on Linux.
@pytest.mark.parametrize(
    ("seen", "limits", "status"),
    [
        (Observation(0, 0.1), Limits(), "ok"),
        (Observation(1, 0.1, "ValueError: no"), Limits(), "runtime_error"),
        (Observation(-11, 0.1), Limits(), "runtime_error"),  # a segfault
        (Observation(1, 0.1, "MemoryError"), Limits(), "memory"),
        (Observation(-6, 0.1, "Cannot allocate memory"), Limits(), "memory"),
        (Observation(-9, 1.2, stopped="timeout"), Limits(timeout=1), "timeout"),  # the grader's wall clock
        (Observation(-24, 0.9), Limits(timeout=5, cpu_time=1), "timeout"),  # SIGXCPU
        (Observation(-9, 2.0), Limits(timeout=5, cpu_time=1.5), "timeout"),  # the hard CPU limit, after 2 s
        (Observation(-9, 0.5), Limits(timeout=5, cpu_time=1), "runtime_error"),  # a SIGKILL before the limit
        (Observation(-9, 0.5, stopped="output_limit"), Limits(), "output_limit"),
        (Observation(0, 0.5, "MemoryError", stopped="output_limit"), Limits(), "output_limit"),
        (Observation(-24, 0.5, stopped="output_limit"), Limits(), "timeout"),  # the CPU limit came first
        (Observation(None, 1.5, stopped="timeout"), Limits(timeout=1), "timeout"),  # never reported an exit
    ],
)
def test_classify_names_the_end_of_a_run(seen, limits, status):
    assert classify(seen, limits) == status


def launch_fields(**changes):
    fields = dict(mode="basic", code="print(1)", args=["x"], python=sys.executable, python_shared=True, grader=1,
                  uid=1 << 30, fresh_uid=False, workdir=None, hide=["/home"], binds=[], cpu_seconds=2, memory_mb=64,
                  file_mb=1, open_files=16, processes=4)  # fmt: skip
    return fields | changes


def test_launch_config_round_trips_and_refuses_what_is_malformed():
    config = LaunchConfig(**launch_fields(workdir="/tmp/w"))
    assert vars(LaunchConfig.from_bytes(config.to_bytes())) == vars(config)
    for bad in (
        {"uid": True},  # a bool is no int
        {"workdir": 3},
        {"args": ["x", 1]},
        {"hide": "/home"},
        {"unknown": 1},
    ):
        with pytest.raises(ValueError, match="launch config"):
            LaunchConfig(**launch_fields(**bad))
    with pytest.raises(ValueError, match="missing \\['uid'\\]"):
        LaunchConfig(**{k: v for k, v in launch_fields().items() if k != "uid"})
    with pytest.raises(ValueError, match="not a dict"):
        LaunchConfig.from_bytes(marshal.dumps([1, 2]))


def test_the_launcher_imports_only_the_standard_library():
    # It runs as a script with -I -S, once per program run: nothing of the package, nothing slow to import.
    launcher = Path(sandbox.launcher.__file__)
    command = [sys.executable, "-I", "-S", "-X", "importtime", str(launcher)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 1 and "usage: launcher.py" in done.stderr
    rows = [line.split("|") for line in done.stderr.splitlines() if line.startswith("import time:")]
    top_level = {row[-1].strip().split(".")[0] for row in rows[1:]}  # below the header: one module a row
    assert top_level - sys.stdlib_module_names == {"confine"}  # its sibling, by path
    assert not top_level & {"enum", "dataclasses", "typing", "inspect", "signal", "rtransfer"}
