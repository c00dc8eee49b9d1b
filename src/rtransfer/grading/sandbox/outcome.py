"""What a run may use (`Limits`), what it gave (`RunResult`), and how the grader names its end (`classify`)."""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass

STATUSES = ("ok", "runtime_error", "timeout", "memory", "output_limit")


@dataclass(frozen=True)
class Limits:
    timeout: float = 10.0  # wall-clock seconds from the interpreter's start
    cpu_time: float | None = None  # CPU seconds (RLIMIT_CPU); None: the timeout
    memory_mb: int = 1024  # address space per process (RLIMIT_AS, RLIMIT_DATA)
    processes: int = 32  # processes and threads of the sandbox's user (RLIMIT_NPROC)
    file_mb: int = 16  # largest file the program may write (RLIMIT_FSIZE); also the size of its /tmp
    output_bytes: int = 8 << 20  # stdout beyond this kills the program (status "output_limit")
    stderr_bytes: int = 64 << 10  # the last this many bytes of stderr are kept; the rest is read and dropped
    open_files: int = 256

    @property
    def cpu_seconds(self) -> int:
        """RLIMIT_CPU: the CPU time in the whole seconds the kernel counts."""
        return math.ceil(self.cpu_time or self.timeout)


@dataclass
class RunResult:
    status: str  # ok | runtime_error | timeout | memory | output_limit
    stdout: str
    stderr: str
    runtime: float  # wall-clock seconds from the interpreter's start to the end of the sandbox
    returncode: int | None = None  # exit code, or -N for a signal N (None: not known)
    isolation: tuple[str, ...] = ()  # the protections that were active, e.g. ("pid-ns", "net-ns", "seccomp", ...)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): grading cannot go on without it."""


@dataclass(frozen=True)
class Observation:
    """What the grader saw of a program that ran: the input of `classify`."""

    returncode: int | None  # the launcher's report: exit code, or -N for a signal N (None: no exit report)
    runtime: float  # wall-clock seconds from the program's start ("ready") to its end
    stderr: str = ""  # the tail the grader kept
    stopped: str | None = None  # why the grader stopped it: "timeout" (wall clock), "output_limit" (stdout cap)


def classify(seen: Observation, limits: Limits) -> str:
    """The status of a run (one of STATUSES) from what was seen of it and its limits. The first that applies:

    - timeout: the grader stopped it on the wall clock, or the kernel on CPU time: SIGXCPU, or a SIGKILL the
      grader did not send (the hard limit, a second after SIGXCPU, for a program that handles it) once it ran
      that long. Rusage cannot tell which: virtual machines under-count CPU time.
    - output_limit: the grader stopped it for printing more than `limits.output_bytes`.
    - ok: exit code 0.
    - memory: RLIMIT_AS refused an allocation (Python's MemoryError, or a C library's ENOMEM message).
    - runtime_error: any other end.
    """
    code = seen.returncode
    cpu_killed = code == -signal.SIGXCPU or (code == -signal.SIGKILL and seen.runtime >= limits.cpu_seconds)
    if seen.stopped == "timeout" or cpu_killed:
        return "timeout"
    if seen.stopped == "output_limit":
        return "output_limit"
    if code == 0:
        return "ok"
    if "MemoryError" in seen.stderr or "Cannot allocate memory" in seen.stderr:
        return "memory"
    return "runtime_error"
