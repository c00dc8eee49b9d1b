"""Run untrusted Python programs (model-written code): one throwaway, locked-down process tree per run.

    result = run_program("print(int(input()) * 2)", stdin="21\\n", limits=Limits(timeout=2))
    result.status, result.stdout   # ("ok", "42\\n")

`run_many` runs many programs on a bounded pool of concurrent sandboxes. docs/sandbox.md says what is contained
and what is not.

How a run works: the grader starts a launcher (this file run as a script, `python -I -S`) in a new session with
an empty environment. The launcher sets up the isolation and forks the program's first process, which applies
the last restrictions and execs `sys.executable -I main.py` in a fresh working directory. Three modes, the
strongest that works is chosen once per process (`isolation_mode()`):

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

Only the standard library is imported here: the launcher runs this file with `-S`, before any isolation exists.
"""

from __future__ import annotations

# The launcher (this file run as a script) needs only these; it stops at `sys.exit` below, before the imports of
# the grader's side, which would double its start-up time (it starts once per program run). `_signal` is the C
# module under `signal`, which would import `enum` (15 ms per run).
import _signal
import ctypes
import errno
import marshal
import math
import os
import resource
import struct
import sys

# --- the launcher and the program's first process (run as a script, stdlib only) -------------------------------

_libc = ctypes.CDLL(None, use_errno=True)

WORKDIR = "/tmp/work"  # the program's directory inside the namespaces (on its own tmpfs)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 18, 1 << 21, 1 << 24
MOUNT_OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME}
MOUNT_OPTION_FLAGS |= {"nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_CAPBSET_DROP = 1, 4, 22, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
NS_LAYERS = ["pid-ns", "mount-ns", "net-ns", "ipc-ns", "uts-ns", "readonly-fs", "private-tmp", "fresh-proc"]

# seccomp: socket, ptrace, process_vm_readv/writev, io_uring_setup/enter/register, add_key, request_key, keyctl,
# bpf, perf_event_open, userfaultfd, by architecture (audit arch, syscall numbers).
SECCOMP_DENY = {
    "x86_64": (0xC000003E, (41, 101, 310, 311, 425, 426, 427, 248, 249, 250, 321, 298, 323)),
    "aarch64": (0xC00000B7, (198, 117, 270, 271, 425, 426, 427, 217, 218, 219, 280, 241, 282)),
}
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446  # the same on every arch
LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR, LL_TRUNCATE = 1, 2, 4, 8, 1 << 14

_child_pid = 0
_stop_requested = False


def _check(result: int, what: str) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda s: None if s is None else s.encode()  # noqa: E731
    result = _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))
    _check(result, f"mount {target}")


def _prctl(option: int, value: int = 0) -> None:
    zero = ctypes.c_ulong(0)
    _check(_libc.prctl(option, ctypes.c_ulong(value), zero, zero, zero), f"prctl {option}")


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _launch(config_fd: int, report_fd: int) -> int:
    global _child_pid
    with open(config_fd, "rb") as f:
        config = marshal.loads(f.read())
    os.set_inheritable(report_fd, False)  # the program must not be able to forge reports
    mode = config["mode"]
    _signal.signal(_signal.SIGTERM, _on_stop)
    # RLIMIT_NPROC counts every task of a real uid: an ordinary user's limit is what it has plus the sandbox's
    # share (counted now, while /proc shows them); root's sandbox gets a fresh uid, whose count starts at zero.
    config["tasks_before"] = 0 if os.geteuid() == 0 else _count_tasks(os.getuid())
    try:
        if os.geteuid() == 0:
            os.setgroups([])
        if mode == "namespaces":
            _check(_libc.unshare(NAMESPACES), "unshare")
        elif mode == "userns":
            _enter_user_namespace(config["uid"])
        else:
            _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of the program come to us, to be killed at the end
            _prepare_workdir(config)
    except OSError as err:
        _report(report_fd, {"error": f"{mode}: {err}"})
        return 1
    # If the grader dies, nobody enforces the timeout: stop the program then (set after the namespace changes,
    # which may clear it; the grader may already be gone).
    _prctl(PR_SET_PDEATHSIG, _signal.SIGTERM)
    if os.getppid() != config["grader"]:
        _on_stop(_signal.SIGTERM, None)
    pid = os.fork()
    if pid == 0:
        _program_process(config, report_fd)
    _child_pid = pid
    if _stop_requested:
        os.kill(pid, _signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    if mode == "basic":  # we are the program's parent (in the namespaces, the sandbox's init reports it)
        if config["fresh_uid"]:
            _sweep_uid(config["uid"])
        _kill_descendants()
        _report_exit(report_fd, status, usage)
    return 0


def _on_stop(signum, frame) -> None:
    # The grader's timeout, or its death. We are the program's parent and have not reaped it: its pid is its own.
    global _stop_requested
    _stop_requested = True
    if _child_pid:
        os.kill(_child_pid, _signal.SIGKILL)


def _report(fd: int, message: dict) -> None:
    os.write(fd, repr(message).encode() + b"\n")  # one line: repr escapes newlines


def _report_exit(fd: int, status: int, usage: resource.struct_rusage) -> None:
    _report(fd, {"exit": os.waitstatus_to_exitcode(status), "cpu": usage.ru_utime + usage.ru_stime})


def _enter_user_namespace(uid: int) -> None:
    """Enter new user and other namespaces, as their root (with capabilities over them only)."""
    if os.geteuid() != 0:  # an ordinary user maps the namespace's root to itself
        outer_uid, outer_gid = os.geteuid(), os.getegid()
        _check(_libc.unshare(CLONE_NEWUSER | NAMESPACES), "unshare")
        _write_file("/proc/self/setgroups", "deny")
        _write_file("/proc/self/uid_map", f"0 {outer_uid} 1")
        _write_file("/proc/self/gid_map", f"0 {outer_gid} 1")
        return
    # Root maps it to a fresh uid instead, as an ordinary user's would be. Only a process outside the namespace
    # may write such a map, so a helper forked before the unshare writes it.
    ready_r, ready_w = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(ready_w)
        try:
            if os.read(ready_r, 1):
                _write_file(f"/proc/{os.getppid()}/uid_map", f"0 {uid} 1")
                _write_file(f"/proc/{os.getppid()}/gid_map", f"0 {uid} 1")
                os._exit(0)
        finally:
            os._exit(1)
    os.close(ready_r)
    try:
        _check(_libc.unshare(CLONE_NEWUSER | NAMESPACES), "unshare")
        os.write(ready_w, b"x")
    finally:
        os.close(ready_w)
        _, status = os.waitpid(helper, 0)
    if status != 0:
        raise OSError(errno.EPERM, "could not write the user namespace's id maps")


def _prepare_workdir(config: dict) -> None:
    workdir = config["workdir"]
    with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(config["code"])
    if os.geteuid() == 0 and config["python_shared"]:  # else the program keeps uid 0 for file access
        os.chown(workdir, config["uid"], config["uid"])
    os.chmod(workdir, 0o700)


def _program_process(config: dict, report_fd: int) -> None:
    """The program's first process: finish the isolation, report, exec the interpreter. Never returns."""
    try:
        for sig in (_signal.SIGTERM, _signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT):
            _signal.signal(sig, _signal.SIG_DFL)
        os.setsid()
        mode, limits = config["mode"], config["limits"]
        layers = []
        if mode == "basic":
            workdir = config["workdir"]
        else:
            # Open the directories to bind back before anything hides them.
            binds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in config["binds"]}
            if mode == "userns":  # become the namespace's mapped root (a no-op for an ordinary user)
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            workdir = _build_filesystem(config, binds)
            layers += ["user-ns", *NS_LAYERS] if mode == "userns" else NS_LAYERS
        layers += _drop_identity(config)
        _set_limits(limits, config["tasks_before"])
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        if _landlock(["/tmp"] if mode != "basic" else [workdir]):
            layers.append("landlock")
        if _seccomp():
            layers.append("seccomp")
        _prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)  # after the uid change, which clears it
        if mode != "basic":
            # We stay as PID 1 of the namespace and run the program as our child: PID 1 ignores signals it has no
            # handler for (SIGXCPU, a program's own SIGTERM), and someone must reap the orphans.
            _prctl(PR_SET_DUMPABLE, 0)  # keep the program (our uid) out of our /proc entries; exec resets it
            program = os.fork()
            if program:
                _init(program, report_fd)
            _prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)
        os.chdir(workdir)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": "/tmp" if mode != "basic" else workdir,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            # One thread per numeric library: threads count against RLIMIT_NPROC.
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        _report(report_fd, {"ready": [*layers, "rlimits", "clean-env"]})
        os.execve(config["python"], [config["python"], "-I", "-B", "main.py", *config["args"]], env)
    except BaseException as err:  # whatever it is, the grader must hear of it
        try:
            _report(report_fd, {"error": f"{type(err).__name__}: {err}"})
        finally:
            os._exit(125)


def _init(program: int, report_fd: int) -> None:
    """PID 1 of the sandbox: reap every child, report the program's end, exit (the kernel kills what is left)."""
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    while True:
        pid, status, usage = os.wait4(-1, 0)
        if pid == program:
            _report_exit(report_fd, status, usage)
            os._exit(0)


def _build_filesystem(config: dict, binds: dict[str, int]) -> str:
    """The program's view of the filesystem: all read-only but a private /tmp, with private directories hidden."""
    limits = config["limits"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount may leak to the host
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this PID namespace's processes only
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={limits['file_mb']}m,nr_inodes=4096,mode=1777")
    for path in config["hide"]:
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=1024,mode=755")
    for path, fd in binds.items():
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
        os.close(fd)
    os.mkdir(WORKDIR, 0o700)
    with open(f"{WORKDIR}/main.py", "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(config["code"])
    if config["mode"] == "namespaces":
        os.chown(WORKDIR, config["uid"], config["uid"])
    _seal_read_only()
    return WORKDIR


def _mounts() -> list[tuple[str, list[str]]]:
    """(mount point, per-mount options) of every mount this process's namespace has."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            out.append((_unescape(fields[4]), fields[5].split(",")))
    return out


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as three octal digits after a backslash."""
    head, *rest = field.split("\\")
    return head + "".join(chr(int(part[:3], 8)) + part[3:] for part in rest)


def _writable(target: str) -> bool:
    # Our /tmp (not what is bound inside it: an interpreter under /tmp) and our /proc, which hides the host's
    # mounts under /proc.
    return target == "/tmp" or _under(target, "/proc")


def _seal_read_only() -> None:
    """Make every mount read-only but our /tmp and /proc, and check that no other reachable one is writable."""
    for target, options in _mounts():
        if _writable(target):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        flags |= sum(MOUNT_OPTION_FLAGS[o] for o in options if o in MOUNT_OPTION_FLAGS)
        if not {"noatime", "relatime"} & set(options):
            flags |= MS_STRICTATIME  # keep the atime mode: a user namespace may not change a locked one
        try:
            _mount(None, target, None, flags)
        except OSError as err:
            # Mounts now hidden or shadowed by ours cannot be reached; the check below proves it.
            if err.errno not in (errno.ENOENT, errno.EINVAL, errno.EACCES):
                raise
    for target, _ in _mounts():
        if _writable(target):
            continue
        try:
            flags = os.statvfs(target).f_flag
        except OSError:
            continue  # not reachable from inside
        if not flags & os.ST_RDONLY:
            raise OSError(errno.EPERM, f"{target} is still writable")


def _drop_identity(config: dict) -> list[str]:
    """Give up root: a fresh uid where possible, else every capability."""
    mode, uid = config["mode"], config["uid"]
    if mode == "userns":
        _drop_capabilities()  # root of the namespace, mapped to an unprivileged uid outside it
        return ["no-caps"]
    if os.geteuid() != 0:
        return []  # an ordinary user in basic mode: nothing to give up
    os.setresgid(uid, uid, uid)
    if mode == "namespaces" or config["python_shared"]:
        os.setresuid(uid, uid, uid)  # clears every capability
        return ["fresh-uid"]
    # Basic mode with an interpreter only root may read (e.g. under /root): keep uid 0 as the effective uid for
    # file access, make the real uid fresh (RLIMIT_NPROC counts real uids, and never limits uid 0), and drop
    # every capability so that uid 0 is worth only its file ownership (Landlock guards writes).
    os.setresuid(uid, 0, 0)
    _drop_capabilities()
    return ["fresh-real-uid", "no-caps"]


def _drop_capabilities() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):  # an empty bounding set: exec as uid 0 gains nothing
        _prctl(PR_CAPBSET_DROP, cap)
    header = struct.pack("=Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    _check(_libc.capset(header, bytes(24)), "capset")  # effective, permitted, inheritable: all empty


def _set_limits(limits: dict, tasks_before: int) -> None:
    cpu = math.ceil(limits["cpu_time"] or limits["timeout"])
    memory = limits["memory_mb"] << 20
    wanted = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),  # SIGXCPU, then SIGKILL a second later if the program handles it
        resource.RLIMIT_AS: (memory, memory),
        resource.RLIMIT_DATA: (memory, memory),
        resource.RLIMIT_FSIZE: (limits["file_mb"] << 20,) * 2,
        resource.RLIMIT_CORE: (0, 0),
        resource.RLIMIT_NOFILE: (limits["open_files"],) * 2,
        resource.RLIMIT_NPROC: (tasks_before + limits["processes"],) * 2,
        resource.RLIMIT_MSGQUEUE: (0, 0),
    }
    for which, (soft, hard) in wanted.items():
        current = resource.getrlimit(which)[1]
        cap = hard if current == resource.RLIM_INFINITY else min(hard, current)
        resource.setrlimit(which, (min(soft, cap), cap))


def _count_tasks(uid: int) -> int:
    """Tasks (threads) whose real uid is `uid`: what RLIMIT_NPROC compares with."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields["Uid"].split()[0]) == uid:
            total += int(fields["Threads"])
    return total


def _landlock(writable: Sequence[str]) -> bool:
    """Allow reading and executing everywhere, writing only under `writable`; deny TCP and scope signals."""
    abi = _libc.syscall(ctypes.c_long(LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return False
    handled = (1 << 13) - 1 | (abi >= 2) << 13 | (abi >= 3) << 14 | (abi >= 5) << 15
    attr = struct.pack("=QQQ", handled, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    ruleset = _check(
        _libc.syscall(ctypes.c_long(LANDLOCK_CREATE_RULESET), attr, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)),
        "landlock_create_ruleset",
    )
    device = LL_READ_FILE | LL_WRITE_FILE | (LL_TRUNCATE if abi >= 3 else 0)
    rules = [("/", LL_EXECUTE | LL_READ_FILE | LL_READ_DIR), *((p, handled) for p in writable)]
    rules += [(d, device) for d in ("/dev/null", "/dev/zero", "/dev/full") if os.path.exists(d)]
    try:
        for path, access in rules:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = struct.pack("=Qi", access, fd)  # struct landlock_path_beneath_attr (packed)
                _check(
                    _libc.syscall(ctypes.c_long(LANDLOCK_ADD_RULE), ctypes.c_long(ruleset), ctypes.c_long(1), rule, 0),
                    f"landlock_add_rule {path}",
                )
            finally:
                os.close(fd)
        _check(_libc.syscall(ctypes.c_long(LANDLOCK_RESTRICT_SELF), ctypes.c_long(ruleset), 0), "landlock_restrict")
    finally:
        os.close(ruleset)
    return True


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _seccomp() -> bool:
    """A filter that makes the denied system calls fail with EACCES (any other architecture's calls too)."""
    if os.uname().machine not in SECCOMP_DENY:
        return False
    arch, denied = SECCOMP_DENY[os.uname().machine]
    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    deny, allow = 0x00050000 | errno.EACCES, 0x7FFF0000  # SECCOMP_RET_ERRNO | EACCES, SECCOMP_RET_ALLOW
    program = [(load, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, deny), (load, 0, 0, 0)]  # seccomp_data.arch, .nr
    if arch == 0xC000003E:
        program += [(jge, 0, 1, 0x40000000), (ret, 0, 0, deny)]  # x32 system calls
    for number in denied:
        program += [(jeq, 0, 1, number), (ret, 0, 0, deny)]
    program.append((ret, 0, 0, allow))
    code = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *op) for op in program))
    fprog = _SockFprog(len(program), ctypes.cast(code, ctypes.c_void_p))
    result = _libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(2), ctypes.byref(fprog), ctypes.c_ulong(0), ctypes.c_ulong(0))
    _check(result, "seccomp")
    return True


def _sweep_uid(uid: int) -> None:
    """Kill every process whose real uid is `uid` (a sandbox's fresh one), wherever it was reparented: a helper
    with that uid sends SIGKILL to every process it may signal, which is exactly those, until none is left."""
    helper = os.fork()
    if helper == 0:
        try:
            os.setresuid(uid, uid, uid)
            # Each pass kills all it may signal but itself, at once; ESRCH once there are none. Dead but unreaped
            # processes still count, so the passes are bounded; reaping is the caller's (or init's) business.
            for _ in range(1000):
                os.kill(-1, _signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def _kill_descendants() -> None:
    """Kill whatever the program left behind (basic mode). We are a subreaper, so nothing it started can leave our
    tree; each pass kills the whole tree at once, so a fork bomb has no time to refill it."""
    while tree := _descendants(os.getpid()):
        for pid in tree:
            try:
                os.kill(pid, _signal.SIGKILL)
            except ProcessLookupError:
                continue  # gone already
        while True:  # reap what has died (orphans are ours to reap)
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
    _reap_all()


def _reap_all() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _descendants(root: int) -> list[int]:
    """Every live descendant of `root`, from the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


if __name__ == "__main__":
    if sys.argv[1] == "--sweep":  # the grader's last resort when it had to kill a launcher (see _run)
        _sweep_uid(int(sys.argv[2]))
        sys.exit(0)
    sys.exit(_launch(int(sys.argv[1]), int(sys.argv[2])))

# --- the grader's side --------------------------------------------------------------------------------------------

import ast  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import secrets  # noqa: E402
import selectors  # noqa: E402
import shutil  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402

MODES = ("namespaces", "userns", "basic")  # strongest first
SETUP_TIMEOUT = 20.0  # seconds the launcher may take before the program starts (a loaded machine is slow)
KILL_GRACE = 10.0  # seconds between asking the launcher to stop the program and killing the launcher
# Directories the namespace modes hide under empty tmpfs (the grader's home and scratch space, sockets in /run).
HIDDEN = ("/root", "/home", "/run", "/var/tmp", "/dev/shm", "/mnt", "/media", "/srv")


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


@dataclass(frozen=True)
class Job:
    code: str
    stdin: str | bytes = ""
    limits: Limits = field(default_factory=Limits)
    args: tuple[str, ...] = ()


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): grading cannot go on without it."""


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


def run_many(
    jobs: Sequence[Job],
    workers: int | None = None,
    *,
    stop: Callable[[int, RunResult], bool] | None = None,
    isolation: str = "auto",
) -> list[RunResult | None]:
    """Run `jobs` on at most `workers` concurrent sandboxes (default: the CPUs this process may use); results
    in job order. Jobs start in order; once `stop(index, result)` is true no further job starts and those left
    are None. Every job before the first stopping one has run, so that index does not depend on timing."""
    mode = isolation_mode() if isolation == "auto" else isolation  # probe once, before the threads
    results: list[RunResult | None] = [None] * len(jobs)
    lock = threading.Lock()
    state = {"next": 0, "halt": math.inf}

    def work() -> None:
        while True:
            with lock:
                index = state["next"]
                if index >= len(jobs) or index > state["halt"]:
                    return
                state["next"] += 1
            job = jobs[index]
            result = run_program(job.code, job.stdin, job.limits, isolation=mode, args=job.args)
            results[index] = result
            if stop is not None and stop(index, result):
                with lock:
                    state["halt"] = min(state["halt"], index)

    count = max(1, min(workers or len(os.sched_getaffinity(0)), len(jobs)))
    with ThreadPoolExecutor(count) as pool:
        for future in [pool.submit(work) for _ in range(count)]:
            future.result()  # re-raise a SandboxError from any worker
    return results


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
    config = {
        "mode": mode,
        "code": code,
        "args": list(args),
        "limits": asdict(limits),
        "uid": (1 << 30) + secrets.randbelow(1 << 30),  # a fresh uid: its process count is the sandbox's own
        "python": sys.executable,
        "python_shared": _usable_by_others(tuple(_interpreter_dirs())),
        "grader": os.getpid(),
        "fresh_uid": mode == "basic" and os.geteuid() == 0,  # the program's real uid is `uid`: sweep it at the end
        "hide": hide,
        "binds": binds,
        "workdir": workdir,
    }
    data = stdin.encode() if isinstance(stdin, str) else stdin
    report_r, report_w = os.pipe()
    try:
        with tempfile.TemporaryFile() as config_file, tempfile.TemporaryFile() as stdin_file:
            config_file.write(marshal.dumps(config))
            config_file.seek(0)
            stdin_file.write(data)
            stdin_file.seek(0)
            launcher = [sys.executable, "-I", "-S", os.path.abspath(__file__), str(config_file.fileno()), str(report_w)]
            proc = subprocess.Popen(
                launcher,
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
                if proc.returncode != 0 and config["fresh_uid"]:
                    # The launcher died before cleaning up (basic mode has no PID namespace to do it).
                    subprocess.run(
                        [sys.executable, "-I", "-S", os.path.abspath(__file__), "--sweep", str(config["uid"])]
                    )
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
                proc.send_signal(_signal.SIGTERM)
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
                    proc.send_signal(_signal.SIGTERM)
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
    # A SIGKILL we did not send comes from the hard CPU limit (a program that handled SIGXCPU) when the program
    # ran that long; rusage cannot tell (virtual machines under-count CPU time).
    cpu_limit = math.ceil(limits.cpu_time or limits.timeout)
    if stopped == "timeout" or code == -_signal.SIGXCPU or (code == -_signal.SIGKILL and runtime >= cpu_limit):
        status = "timeout"
    elif stopped == "output_limit":
        status = "output_limit"
    elif code == 0:
        status = "ok"
    elif "MemoryError" in stderr or "Cannot allocate memory" in stderr:  # RLIMIT_AS refused an allocation
        status = "memory"
    else:
        status = "runtime_error"
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
        and not any(_under(r, p) for p in interpreter)  # never hide the interpreter itself
    )
    binds = [p for p in interpreter if any(_under(p, r) for r in [*hide, "/tmp"])]
    return _outermost(hide), binds


def _outermost(paths) -> list[str]:
    ordered = sorted(set(paths))
    return [p for p in ordered if not any(q != p and _under(p, q) for q in ordered)]


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
