"""Run untrusted Python programs (model-written code): one throwaway, locked-down process tree per run.

    result = run_program("print(int(input()) * 2)", stdin="21\\n", limits=Limits(timeout=2))
    result.status, result.stdout   # ("ok", "42\\n")

`run_many` runs many programs on a bounded pool of concurrent sandboxes. docs/sandbox.md says what is contained
and what is not.

How a run works: the grader (run.py) starts a launcher (launcher.py run as a script, `python -I -S`) in a new
session with an empty environment, and hands it a `LaunchConfig`. The launcher sets up the isolation (the kernel
calls are in confine.py) and forks the program's first process, which applies the last restrictions and execs
`sys.executable -I main.py` in a fresh working directory. The grader reads the output, enforces the timeout and
the output cap, and names the end of the run (`outcome.classify`). Three modes, the strongest that works is
chosen once per process (`isolation_mode()`):

- namespaces (root): new mount, PID, network, IPC and UTS namespaces. A small init (PID 1) runs the program and
  exits when it ends, and the kernel then kills everything the program started, daemons included. Every mount is
  read-only and nosuid; /tmp is a fresh size-capped tmpfs holding the working directory; home directories,
  /run, /var/tmp, /dev/shm, /mnt, /media and /srv are hidden under empty tmpfs (the interpreter's own
  directories are bound back read-only); a fresh /proc shows only the sandbox. The program runs as a random
  unprivileged uid and gid with no supplementary groups and no capabilities.
- userns (unprivileged user namespaces): the same inside a new user namespace; the program is its root without
  any capability (root forcing this mode maps it to a random uid, as an ordinary user's own uid would be).
- basic (no namespaces): a new session; the launcher is a child subreaper and kills every descendant when the
  program ends; a host temporary directory. Root drops to a random uid (keeping uid 0 as the effective uid, with
  no capabilities, when the interpreter is not usable by other users).
- always: rlimits (CPU time, address space, processes, file size, open files, no core dumps); no_new_privs; a
  seccomp filter that refuses socket(), io_uring, ptrace, process_vm_*, keyrings, bpf, perf and userfaultfd;
  Landlock where the kernel has it (writes only in the sandbox's /tmp or working directory, no signals or ptrace
  beyond the sandbox, no TCP); an environment built from scratch; capped stdout/stderr; a wall-clock timeout.

Modules: outcome (Limits, RunResult, SandboxError, classify), run (run_program, the modes), pool (Job,
run_many), launcher and confine (the launcher's side: standard library only).
"""

from .confine import SECCOMP_DENY
from .launcher import LaunchConfig
from .outcome import STATUSES, Limits, Observation, RunResult, SandboxError, classify
from .pool import Job, run_many
from .run import MODES, available_modes, isolation_mode, run_program

__all__ = [
    "MODES",
    "SECCOMP_DENY",
    "STATUSES",
    "Job",
    "LaunchConfig",
    "Limits",
    "Observation",
    "RunResult",
    "SandboxError",
    "available_modes",
    "classify",
    "isolation_mode",
    "run_many",
    "run_program",
]
