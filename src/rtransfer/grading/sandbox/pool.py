"""Many programs on a bounded pool of concurrent sandboxes, in job order, with an early stop."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .outcome import Limits, RunResult
from .run import isolation_mode, run_program


@dataclass(frozen=True)
class Job:
    code: str
    stdin: str | bytes = ""
    limits: Limits = field(default_factory=Limits)
    args: tuple[str, ...] = ()


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
