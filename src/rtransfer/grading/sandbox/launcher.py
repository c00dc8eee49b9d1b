"""The launcher and the program's first process: what runs between the grader and the program.

The grader runs this file as a script, `python -I -S launcher.py CONFIG_FD REPORT_FD`, once per program run, in a
new session with an empty environment. It reads a `LaunchConfig` from CONFIG_FD, sets up the isolation (see
the package's docstring and docs/sandbox.md), forks the program's first process, which applies the last
restrictions and execs the interpreter on main.py, and tells the grader on REPORT_FD, one dict literal a line,
what happened: {"ready": layers}, {"exit": code or -signal, "cpu": seconds} or {"error": why}.

Only the standard library is imported, and nothing slow: this runs before any isolation exists, and its start-up
is paid on every run. `_signal` is the C module under `signal`, which would import `enum` (15 ms per run); the
config is a plain class, since `dataclasses` would cost 25 ms. The grader imports this module too, for
`LaunchConfig`.
"""

import _signal
import errno
import marshal
import os
import resource
import sys

if __name__ == "__main__":  # a script: no package, and -I keeps this directory off sys.path
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # after the stdlib's: it cannot shadow it
    import confine
else:
    from . import confine

WORKDIR = "/tmp/work"  # the program's directory inside the namespaces (on its own tmpfs)
NS_LAYERS = ["pid-ns", "mount-ns", "net-ns", "ipc-ns", "uts-ns", "readonly-fs", "private-tmp", "fresh-proc"]


class LaunchConfig:
    """What the grader tells the launcher about one run. Every field is required and type-checked on creation,
    so a config the grader writes and the launcher reads (`to_bytes`, `from_bytes`) is whole and well-formed."""

    mode: str  # namespaces | userns | basic
    code: str  # the program, written to main.py
    args: list[str]  # its arguments after main.py
    python: str  # the interpreter that runs it (the grader's own)
    python_shared: bool  # whether a user without any relation to its files may run it
    grader: int  # the grader's pid: a launcher whose parent is already another stops at once
    uid: int  # a fresh uid (and gid) for the program, where the mode gives it one
    fresh_uid: bool  # basic mode as root: the program's real uid is `uid`, swept at the end
    workdir: str | None  # basic mode: the host directory the program runs in (the others make WORKDIR)
    hide: list[str]  # namespace modes: directories hidden under empty tmpfs
    binds: list[str]  # namespace modes: the interpreter's directories, bound back inside the hidden ones
    cpu_seconds: int  # RLIMIT_CPU (SIGXCPU; SIGKILL a second later)
    memory_mb: int  # RLIMIT_AS and RLIMIT_DATA
    file_mb: int  # RLIMIT_FSIZE, and the size of the namespaces' /tmp
    open_files: int  # RLIMIT_NOFILE
    processes: int  # RLIMIT_NPROC, on top of the tasks the uid has already

    def __init__(self, **fields: object) -> None:
        hints = type(self).__annotations__
        if set(fields) != set(hints):
            missing, unknown = sorted(set(hints) - set(fields)), sorted(set(fields) - set(hints))
            raise ValueError(f"launch config: missing {missing}, unknown {unknown}")
        for name, hint in hints.items():
            if not _conforms(fields[name], hint):
                kind = getattr(hint, "__name__", hint)
                raise ValueError(f"launch config: {name} is {type(fields[name]).__name__}, not {kind}")
        self.__dict__.update(fields)

    def to_bytes(self) -> bytes:
        return marshal.dumps(vars(self))  # marshal: the fastest load the stdlib has

    @classmethod
    def from_bytes(cls, data: bytes) -> "LaunchConfig":
        fields = marshal.loads(data)
        if type(fields) is not dict or not all(type(name) is str for name in fields):
            raise ValueError("launch config: not a dict of fields")
        return cls(**fields)


def _conforms(value: object, hint: object) -> bool:
    """Whether `value` is of the type `hint` (str, int, bool, str | None, list[str]); exactly: a bool is no int."""
    args = getattr(hint, "__args__", ())
    if getattr(hint, "__origin__", None) is list:
        return type(value) is list and all(_conforms(item, args[0]) for item in value)
    return type(value) in (args or (hint,))


_child_pid = 0
_stop_requested = False


def _launch(config_fd: int, report_fd: int) -> int:
    global _child_pid
    os.set_inheritable(report_fd, False)  # the program must not be able to forge reports
    with open(config_fd, "rb") as f:
        data = f.read()
    try:
        config = LaunchConfig.from_bytes(data)
    except (ValueError, TypeError, EOFError) as err:
        _report(report_fd, {"error": str(err)})
        return 1
    mode = config.mode
    _signal.signal(_signal.SIGTERM, _on_stop)
    # RLIMIT_NPROC counts every task of a real uid: an ordinary user's limit is what it has plus the sandbox's
    # share (counted now, while /proc shows them); root's sandbox gets a fresh uid, whose count starts at zero.
    tasks_before = 0 if os.geteuid() == 0 else _count_tasks(os.getuid())
    try:
        if os.geteuid() == 0:
            os.setgroups([])
        if mode == "namespaces":
            confine.unshare(confine.NAMESPACES)
        elif mode == "userns":
            _enter_user_namespace(config.uid)
        else:
            confine.prctl(confine.PR_SET_CHILD_SUBREAPER, 1)  # orphans of the program come to us, to be killed
            _prepare_workdir(config)
    except OSError as err:
        _report(report_fd, {"error": f"{mode}: {err}"})
        return 1
    # If the grader dies, nobody enforces the timeout: stop the program then (set after the namespace changes,
    # which may clear it; the grader may already be gone).
    confine.prctl(confine.PR_SET_PDEATHSIG, _signal.SIGTERM)
    if os.getppid() != config.grader:
        _on_stop(_signal.SIGTERM, None)
    pid = os.fork()
    if pid == 0:
        _program_process(config, report_fd, tasks_before)
    _child_pid = pid
    if _stop_requested:
        os.kill(pid, _signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    if mode == "basic":  # we are the program's parent (in the namespaces, the sandbox's init reports it)
        if config.fresh_uid:
            _sweep_uid(config.uid)
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
        confine.unshare(confine.CLONE_NEWUSER | confine.NAMESPACES)
        confine.write_file("/proc/self/setgroups", "deny")
        confine.write_file("/proc/self/uid_map", f"0 {outer_uid} 1")
        confine.write_file("/proc/self/gid_map", f"0 {outer_gid} 1")
        return
    # Root maps it to a fresh uid instead, as an ordinary user's would be. Only a process outside the namespace
    # may write such a map, so a helper forked before the unshare writes it.
    ready_r, ready_w = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(ready_w)
        try:
            if os.read(ready_r, 1):
                confine.write_file(f"/proc/{os.getppid()}/uid_map", f"0 {uid} 1")
                confine.write_file(f"/proc/{os.getppid()}/gid_map", f"0 {uid} 1")
                os._exit(0)
        finally:
            os._exit(1)
    os.close(ready_r)
    try:
        confine.unshare(confine.CLONE_NEWUSER | confine.NAMESPACES)
        os.write(ready_w, b"x")
    finally:
        os.close(ready_w)
        _, status = os.waitpid(helper, 0)
    if status != 0:
        raise OSError(errno.EPERM, "could not write the user namespace's id maps")


def _prepare_workdir(config: LaunchConfig) -> None:
    workdir = config.workdir
    with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(config.code)
    if os.geteuid() == 0 and config.python_shared:  # else the program keeps uid 0 for file access
        os.chown(workdir, config.uid, config.uid)
    os.chmod(workdir, 0o700)


def _program_process(config: LaunchConfig, report_fd: int, tasks_before: int) -> None:
    """The program's first process: finish the isolation, report, exec the interpreter. Never returns."""
    try:
        for sig in (_signal.SIGTERM, _signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT):
            _signal.signal(sig, _signal.SIG_DFL)
        os.setsid()
        mode = config.mode
        layers = []
        if mode == "basic":
            workdir = config.workdir
        else:
            # Open the directories to bind back before anything hides them.
            binds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in config.binds}
            if mode == "userns":  # become the namespace's mapped root (a no-op for an ordinary user)
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            workdir = _build_filesystem(config, binds)
            layers += ["user-ns", *NS_LAYERS] if mode == "userns" else NS_LAYERS
        layers += _drop_identity(config)
        confine.set_limits(
            cpu_seconds=config.cpu_seconds,
            memory_mb=config.memory_mb,
            file_mb=config.file_mb,
            open_files=config.open_files,
            processes=tasks_before + config.processes,
        )
        confine.prctl(confine.PR_SET_NO_NEW_PRIVS, 1)
        if confine.landlock(["/tmp"] if mode != "basic" else [workdir]):
            layers.append("landlock")
        if confine.seccomp():
            layers.append("seccomp")
        confine.prctl(confine.PR_SET_PDEATHSIG, _signal.SIGKILL)  # after the uid change, which clears it
        if mode != "basic":
            # We stay as PID 1 of the namespace and run the program as our child: PID 1 ignores signals it has no
            # handler for (SIGXCPU, a program's own SIGTERM), and someone must reap the orphans.
            confine.prctl(confine.PR_SET_DUMPABLE, 0)  # keep the program (our uid) out of our /proc entries
            program = os.fork()
            if program:
                _init(program, report_fd)
            confine.prctl(confine.PR_SET_PDEATHSIG, _signal.SIGKILL)
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
        os.execve(config.python, [config.python, "-I", "-B", "main.py", *config.args], env)
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


def _build_filesystem(config: LaunchConfig, binds: dict[str, int]) -> str:
    """The program's view of the filesystem: all read-only but a private /tmp, with private directories hidden."""
    nosuid_nodev = confine.MS_NOSUID | confine.MS_NODEV
    confine.mount(None, "/", None, confine.MS_REC | confine.MS_PRIVATE)  # nothing we mount may leak to the host
    confine.mount("proc", "/proc", "proc", nosuid_nodev | confine.MS_NOEXEC)  # this PID namespace's processes only
    confine.mount("tmpfs", "/tmp", "tmpfs", nosuid_nodev, f"size={config.file_mb}m,nr_inodes=4096,mode=1777")
    for path in config.hide:
        confine.mount("tmpfs", path, "tmpfs", nosuid_nodev, "size=64k,nr_inodes=1024,mode=755")
    for path, fd in binds.items():
        os.makedirs(path, exist_ok=True)
        confine.mount(f"/proc/self/fd/{fd}", path, None, confine.MS_BIND)
        os.close(fd)
    os.mkdir(WORKDIR, 0o700)
    with open(f"{WORKDIR}/main.py", "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(config.code)
    if config.mode == "namespaces":
        os.chown(WORKDIR, config.uid, config.uid)
    confine.seal_read_only()
    return WORKDIR


def _drop_identity(config: LaunchConfig) -> list[str]:
    """Give up root: a fresh uid where possible, else every capability."""
    mode, uid = config.mode, config.uid
    if mode == "userns":
        confine.drop_capabilities()  # root of the namespace, mapped to an unprivileged uid outside it
        return ["no-caps"]
    if os.geteuid() != 0:
        return []  # an ordinary user in basic mode: nothing to give up
    os.setresgid(uid, uid, uid)
    if mode == "namespaces" or config.python_shared:
        os.setresuid(uid, uid, uid)  # clears every capability
        return ["fresh-uid"]
    # Basic mode with an interpreter only root may read (e.g. under /root): keep uid 0 as the effective uid for
    # file access, make the real uid fresh (RLIMIT_NPROC counts real uids, and never limits uid 0), and drop
    # every capability so that uid 0 is worth only its file ownership (Landlock guards writes).
    os.setresuid(uid, 0, 0)
    confine.drop_capabilities()
    return ["fresh-real-uid", "no-caps"]


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
    if len(sys.argv) == 3 and sys.argv[1] == "--sweep":  # the grader's last resort when it killed a launcher
        _sweep_uid(int(sys.argv[2]))
        sys.exit(0)
    if len(sys.argv) != 3:
        sys.exit("usage: launcher.py CONFIG_FD REPORT_FD | --sweep UID (the sandbox's own, not a user's command)")
    sys.exit(_launch(int(sys.argv[1]), int(sys.argv[2])))
