"""Math answers graded by equivalence with math-verify, inside worker processes that a timeout can kill.

Why processes: math-verify hands answers to sympy, and some answers (9^{9^{9^{9^9}}}) make sympy compute for
hours. math-verify's own timeout uses SIGALRM, which only works on the main thread, and a thread running sympy
cannot be interrupted. So parsing and verification run in a small pool of persistent worker processes (started
lazily, reused); a job that overruns its timeout gets its worker killed and replaced, and scores 0. Any number of
threads may call `grade_math` at once: each job borrows one idle worker.

Grading: thinking is stripped first (a boxed answer inside <think> is a draft, not the answer). The prediction's
last \\boxed{} is preferred (math-verify merges boxes that directly follow one another, as in "\\boxed{2} and
\\boxed{3}"); without a box, math-verify's other LaTeX and plain-expression patterns apply. verify() is
asymmetric, so the gold always goes first.
"""

import atexit
import importlib.metadata
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rtransfer.grading.grade import Grade
from rtransfer.grading.text import strip_thinking
from rtransfer.processes import die_with_parent

# Bump the first part when this module's grading changes; the math-verify version changes grades too.
GRADER_VERSION = f"1+math-verify-{importlib.metadata.version('math-verify')}"
DEFAULT_TIMEOUT = 5.0  # seconds per answer: parse + verify; ordinary answers take milliseconds
STARTUP_TIMEOUT = 120.0  # a fresh worker imports sympy; not counted against an answer's timeout

# math-verify reads "12." or "(0,1)\cup\{2\}." (a sentence's full stop inside the box) as a plain string or as
# 0; the period is never part of the answer. An ellipsis ("...}") is left alone.
_TRAILING_PERIOD = re.compile(r"(?<!\.)\.\s*(?=\})")


def grade_math(response: str, gold: str, timeout: float = DEFAULT_TIMEOUT) -> Grade:
    """Grade a model's response against a gold answer (LaTeX or plain, without \\boxed{}).

    Grade.extracted is the answer read from the response (a string; None when there is none); Grade.extra
    holds {"timeout": True} when grading overran `timeout` seconds, {"error": ...} when the grader failed.
    """
    answer = strip_thinking(response or "")
    if not answer:
        return Grade(score=0.0, extracted=None)
    while True:
        try:
            result = _pool().run((answer, str(gold)), timeout)
            break
        except _PoolClosed:
            continue
    if result is None:
        return Grade(score=0.0, extracted=None, extra={"timeout": True})
    score, extracted, extra = result
    return Grade(score=score, extracted=extracted, extra=extra)


def set_workers(n: int) -> None:
    """Use `n` worker processes from now on (default: $RTRANSFER_MATH_WORKERS, else min(4, CPUs))."""
    global _POOL
    if n < 1:
        raise ValueError("the math grader needs at least one worker")
    with _POOL_LOCK:
        old, _POOL = _POOL, _Pool(n)
    if old is not None:
        old.close()


def shutdown() -> None:
    """Stop all worker processes (also done at interpreter exit); the next grade starts fresh ones."""
    global _POOL
    with _POOL_LOCK:
        old, _POOL = _POOL, None
    if old is not None:
        old.close()


# --- worker side: runs in the child process ---------------------------------------------------------------------


def _clean(text: str) -> str:
    return _TRAILING_PERIOD.sub("", text)


def _grade_job(answer: str, gold: str, state: dict) -> tuple[float, str | None, dict[str, Any]]:
    from math_verify import parse, verify

    gold_parsed = state["gold_cache"].get(gold)
    if gold_parsed is None:
        # Golds are bare answers: boxing them makes math-verify read all of it as one answer ("1,2" is a set).
        boxed = gold if "\\boxed" in gold else f"\\boxed{{{gold}}}"
        gold_parsed = parse(_clean(boxed), state["config"], parsing_timeout=None)
        if len(state["gold_cache"]) > 10_000:
            state["gold_cache"].clear()
        state["gold_cache"][gold] = gold_parsed
    if not gold_parsed:
        return 0.0, None, {"error": f"gold answer not parseable: {gold!r}"}

    predicted = parse(_clean(answer), state["config"], parsing_timeout=None)
    if not predicted:
        return 0.0, None, {}
    # parse() returns [sympy object, the LaTeX string it came from] (only the string when sympy failed).
    extracted = predicted[-1] if isinstance(predicted[-1], str) else str(predicted[0])
    correct = verify(gold_parsed, predicted, timeout_seconds=None)  # gold first: verify is asymmetric
    return float(correct), extracted, {}


def _serve(fd: int, parent_pid: int) -> None:
    """Worker main loop: answer (response, gold) jobs until the parent sends None or goes away."""
    from multiprocessing.connection import Connection

    die_with_parent(parent_pid)
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    # Timeouts are disabled on purpose (the parent kills us instead); silence math-verify's warning about it.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    state = {
        "config": [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
        "gold_cache": {},
    }
    conn = Connection(fd)
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            result = _grade_job(*job, state)
        except Exception as err:  # a grader bug must cost one answer, not the run
            result = (0.0, None, {"error": f"{type(err).__name__}: {err}"})
        conn.send(result)


# --- parent side -------------------------------------------------------------------------------------------------

# The worker is a fresh interpreter (fork+exec, like multiprocessing's "spawn"; never a bare fork, which can
# deadlock a process that runs torch threads). Unlike multiprocessing, it does not re-run the caller's __main__,
# so grading works from scripts without a main guard, from stdin and from notebooks alike.
_WORKER_CODE = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[3]); "
    "from rtransfer.grading.math import _serve; _serve(int(sys.argv[1]), int(sys.argv[2]))"
)


class _Worker:
    def __init__(self, launcher: ThreadPoolExecutor) -> None:
        from multiprocessing.connection import Connection

        parent_sock, child_sock = socket.socketpair()
        with parent_sock, child_sock:
            args = [
                sys.executable,
                "-c",
                _WORKER_CODE,
                str(child_sock.fileno()),
                str(os.getpid()),
                json.dumps(sys.path),
            ]
            self.process = launcher.submit(
                subprocess.Popen, args, pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL
            ).result()
            self.conn = Connection(parent_sock.detach())
        try:
            ready = self.conn.poll(STARTUP_TIMEOUT) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise RuntimeError("the math grader's worker process did not start (is math-verify installed?)")

    def run(self, job: tuple[str, str], timeout: float) -> tuple | None:
        """The job's result, or None when it overran `timeout` (the worker is then unusable)."""
        self.conn.send(job)
        if not self.conn.poll(timeout):
            return None
        return self.conn.recv()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.conn.close()


class _PoolClosed(Exception):
    pass


class _Pool:
    """A fixed number of worker slots; a slot holds a live worker or None (started on first use)."""

    def __init__(self, size: int) -> None:
        self.pid = os.getpid()
        self.idle: list[_Worker | None] = [None] * size
        # Linux's PR_SET_PDEATHSIG fires when the *thread* that started a worker exits, and callers' threads
        # come and go (ThreadPoolExecutor), so every worker is started from this one long-lived thread.
        self.launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtransfer-math-launcher")
        self.live: set[_Worker] = set()
        self.out = 0  # slots checked out by callers
        self.cond = threading.Condition()
        self.closed = False

    def run(self, job: tuple[str, str], timeout: float) -> tuple | None:
        with self.cond:
            while not self.idle and not self.closed:
                self.cond.wait()
            if self.closed:  # shut down or resized while this caller waited: it retries on the new pool
                raise _PoolClosed
            worker = self.idle.pop()
            self.out += 1
        try:
            if worker is not None and worker.process.poll() is not None:  # died while idle (killed from outside)
                self._discard(worker)
                worker = None
            if worker is None:
                worker = _Worker(self.launcher)  # outside the lock: other threads keep grading meanwhile
                with self.cond:
                    self.live.add(worker)
            try:
                result = worker.run(job, timeout)
            except (EOFError, OSError):  # the worker died (killed, out of memory)
                result = (0.0, None, {"error": "math grader worker died"})
                self._discard(worker)
                worker = None
            if result is None:  # timed out: sympy cannot be interrupted, so the process goes
                self._discard(worker)
                worker = None
            return result
        finally:
            with self.cond:
                if self.closed and worker is not None:
                    self._discard(worker)
                    worker = None
                self.idle.append(worker)
                self.out -= 1
                if self.closed and not self.out:
                    self.launcher.shutdown(wait=False)
                self.cond.notify()

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self.cond:
            self.live.discard(worker)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            workers = [w for w in self.idle if w is not None]
            self.idle = [None] * len(self.idle)
            if not self.out:
                self.launcher.shutdown(wait=False)
            self.cond.notify_all()
        for worker in workers:
            self._discard(worker)
        # Workers busy in other threads are discarded when those threads hand them back; the launcher thread
        # stops after the last of them (its exit would kill them, see __init__).


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()


def _default_workers() -> int:
    env = os.environ.get("RTRANSFER_MATH_WORKERS")
    return max(1, int(env)) if env else max(1, min(4, os.cpu_count() or 1))


def _pool() -> _Pool:
    global _POOL
    with _POOL_LOCK:
        # A forked child must not share its parent's workers (their pipes belong to the parent).
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = _Pool(_default_workers())
        return _POOL


def workers() -> int:
    """How many answers this process's pool grades at once."""
    pool = _pool()
    with pool.cond:
        return len(pool.idle) + pool.out


def _close_at_exit() -> None:
    with _POOL_LOCK:
        pool = _POOL
    if pool is not None and pool.pid == os.getpid():
        with pool.cond:
            workers = list(pool.live)
        for worker in workers:  # busy ones too: nobody will read their answers now
            worker.process.kill()
            worker.process.wait()


atexit.register(_close_at_exit)
