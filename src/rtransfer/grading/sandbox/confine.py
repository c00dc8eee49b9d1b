"""The kernel's confinement calls the launcher makes: mounts, prctl, rlimits, capabilities, Landlock, seccomp.

Standard library only, and nothing slow to import: the launcher (launcher.py, run as a script with `-I -S`)
imports this once per program run, before any isolation exists.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import struct

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 18, 1 << 21, 1 << 24
MOUNT_OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME}
MOUNT_OPTION_FLAGS |= {"nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_CAPBSET_DROP = 1, 4, 22, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38

# seccomp: socket, ptrace, process_vm_readv/writev, io_uring_setup/enter/register, add_key, request_key, keyctl,
# bpf, perf_event_open, userfaultfd, by architecture (audit arch, syscall numbers).
SECCOMP_DENY = {
    "x86_64": (0xC000003E, (41, 101, 310, 311, 425, 426, 427, 248, 249, 250, 321, 298, 323)),
    "aarch64": (0xC00000B7, (198, 117, 270, 271, 425, 426, 427, 217, 218, 219, 280, 241, 282)),
}
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446  # the same on every arch
LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR, LL_TRUNCATE = 1, 2, 4, 8, 1 << 14


def check(result: int, what: str) -> int:
    """`result` of a libc call, or the OSError its errno names."""
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def unshare(flags: int) -> None:
    check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda s: None if s is None else s.encode()  # noqa: E731
    result = _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))
    check(result, f"mount {target}")


def prctl(option: int, value: int = 0) -> None:
    zero = ctypes.c_ulong(0)
    check(_libc.prctl(option, ctypes.c_ulong(value), zero, zero, zero), f"prctl {option}")


def write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


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
    return target == "/tmp" or under(target, "/proc")


def seal_read_only() -> None:
    """Make every mount read-only but our /tmp and /proc, and check that no other reachable one is writable."""
    for target, options in _mounts():
        if _writable(target):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        flags |= sum(MOUNT_OPTION_FLAGS[o] for o in options if o in MOUNT_OPTION_FLAGS)
        if not {"noatime", "relatime"} & set(options):
            flags |= MS_STRICTATIME  # keep the atime mode: a user namespace may not change a locked one
        try:
            mount(None, target, None, flags)
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


def drop_capabilities() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):  # an empty bounding set: exec as uid 0 gains nothing
        prctl(PR_CAPBSET_DROP, cap)
    header = struct.pack("=Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    check(_libc.capset(header, bytes(24)), "capset")  # effective, permitted, inheritable: all empty


def set_limits(*, cpu_seconds: int, memory_mb: int, file_mb: int, open_files: int, processes: int) -> None:
    """The rlimits, never above what this process already has. `processes` counts every task of the real uid."""
    memory = memory_mb << 20
    wanted = {
        resource.RLIMIT_CPU: (cpu_seconds, cpu_seconds + 1),  # SIGXCPU, then SIGKILL a second later if handled
        resource.RLIMIT_AS: (memory, memory),
        resource.RLIMIT_DATA: (memory, memory),
        resource.RLIMIT_FSIZE: (file_mb << 20,) * 2,
        resource.RLIMIT_CORE: (0, 0),
        resource.RLIMIT_NOFILE: (open_files,) * 2,
        resource.RLIMIT_NPROC: (processes,) * 2,
        resource.RLIMIT_MSGQUEUE: (0, 0),
    }
    for which, (soft, hard) in wanted.items():
        current = resource.getrlimit(which)[1]
        cap = hard if current == resource.RLIM_INFINITY else min(hard, current)
        resource.setrlimit(which, (min(soft, cap), cap))


def landlock(writable: list[str]) -> bool:
    """Allow reading and executing everywhere, writing only under `writable`; deny TCP and scope signals."""
    abi = _libc.syscall(ctypes.c_long(LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return False
    handled = (1 << 13) - 1 | (abi >= 2) << 13 | (abi >= 3) << 14 | (abi >= 5) << 15
    attr = struct.pack("=QQQ", handled, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    ruleset = check(
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
                check(
                    _libc.syscall(ctypes.c_long(LANDLOCK_ADD_RULE), ctypes.c_long(ruleset), ctypes.c_long(1), rule, 0),
                    f"landlock_add_rule {path}",
                )
            finally:
                os.close(fd)
        check(_libc.syscall(ctypes.c_long(LANDLOCK_RESTRICT_SELF), ctypes.c_long(ruleset), 0), "landlock_restrict")
    finally:
        os.close(ruleset)
    return True


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp() -> bool:
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
    check(result, "seccomp")
    return True
