"""Child-process helpers shared by the graders' workers and the study's training processes."""

import os
import signal
import sys


def die_with_parent(parent_pid: int) -> None:
    """On Linux, have the kernel kill this process when its parent dies (PR_SET_PDEATHSIG), so that nothing
    outlives a killed run: a grader stuck in sympy, an arm still writing its checkpoints. Best effort elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)
