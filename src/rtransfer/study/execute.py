"""One way to run a plan's nodes: `execute(nodes, ledger, ...)`. Every node runs through `jobs.run(spec)`:

- in this process (evaluations, probes, the comparison, the report; an arm when arms train one at a time);
- in spawned child processes, `train_jobs` arms at once, each on its share of the cores (the spec is handed to
  the child as it is: nothing is planned again there);
- under a launcher, as `[*launch, "-m", "rtransfer.jobs", DIR/specs/<node>.json]`.

The ledger records each node as it starts and ends (it alone writes the manifest), so a killed study resumes.
"""

import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from importlib.resources import files
from pathlib import Path
from typing import Any

from rtransfer import jobs
from rtransfer.errors import RtransferError
from rtransfer.jobs import say
from rtransfer.processes import die_with_parent
from rtransfer.specs import Spec, TrainSpec
from rtransfer.study.ledger import Ledger, Node
from rtransfer.train.methods import METHODS


def execute(nodes: list[Node], ledger: Ledger, train_jobs: int, out: Path) -> None:
    """Run `nodes` in order (each one's needs come before it), the ones already done reused."""
    numbers = {n.name: f"[{i}/{len(nodes)}]" for i, n in enumerate(nodes, 1)}
    together = [n for n in nodes if _in_child(n) and ledger.status(n) != "done"]
    if train_jobs > 1 and len(together) > 1:
        _children(together, ledger, train_jobs, out, numbers)
    for node in nodes:
        if ledger.status(node) == "done":
            if node not in together:
                say(f"{numbers[node.name]} {node.name}: done earlier, reused")
            continue
        before = ledger.begin(node, numbers[node.name])
        started = time.time()
        info = _launched(node, out) if _launch(node.spec) else jobs.run(node.spec)
        ledger.finish(node, before, time.time() - started, info, numbers[node.name])


def _launch(spec: Spec) -> tuple[str, ...]:
    return spec.launch if isinstance(spec, TrainSpec) else ()


def _in_child(node: Node) -> bool:
    return isinstance(node.spec, TrainSpec) and not node.spec.launch


def spec_path(out: Path, node: Node) -> Path:
    return out / "specs" / f"{node.name.replace(':', '-')}.json"


def launch_command(node: Node, out: Path) -> list[str]:
    """The launcher command of a node run in its own processes (accelerate, torchrun, ...)."""
    return [*(shipped_config(part) for part in _launch(node.spec)), "-m", "rtransfer.jobs", str(spec_path(out, node))]


def shipped_config(part: str) -> str:
    """{zero3} / {fsdp2} / {ddp} in a launch prefix: the path of the accelerate config shipped with rtransfer."""
    if part.startswith("{") and part.endswith("}"):
        path = Path(str(files("rtransfer") / "data" / "accelerate" / f"{part[1:-1]}.yaml"))
        if not path.exists():
            raise RtransferError(f"launch: no shipped accelerate config {part} (ddp, fsdp2, zero3)")
        return str(path)
    return part


def _launched(node: Node, out: Path) -> dict[str, Any]:
    jobs.write(node.spec, spec_path(out, node))
    command = launch_command(node, out)
    done = subprocess.run(command, check=False)
    if done.returncode:
        raise RtransferError(f"{node.name} failed (exit {done.returncode}): {' '.join(command)}")
    return {}


def _children(nodes: list[Node], ledger: Ledger, train_jobs: int, out: Path, numbers: dict[str, str]) -> None:
    """The nodes, train_jobs at a time, each in a fresh spawned process with its share of the cores (and its output
    in DIR/logs/<node>.log); the longest methods start first, so the longest arm does not start last."""
    workers = min(train_jobs, len(nodes))
    threads = max(1, (os.cpu_count() or 1) // workers)
    queue = sorted(nodes, key=lambda n: METHODS[n.spec.method].cost)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    running: dict = {}
    # A fresh process per arm (spawned: no copy of this one's torch state), as `rtransfer train` would be.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=spawn, max_tasks_per_child=1) as pool:
        while queue or running:
            while queue and len(running) < workers:
                node = queue.pop(0)
                log = out / "logs" / f"{node.name.replace(':', '-')}.log"
                before = ledger.begin(node, numbers[node.name], f" ({workers} at once, {threads} thread(s); {log})")
                future = pool.submit(_child, node.spec, threads, log, os.getpid())
                running[future] = (node, before)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                node, before = running.pop(future)
                info, seconds = future.result()  # a failed arm raises here; the others finish first (the with)
                ledger.finish(node, before, seconds, info, numbers[node.name])


def _child(spec: Spec, threads: int, log: Path, parent: int) -> tuple[dict[str, Any], float]:
    """In a fresh process: `spec` on `threads` torch threads, its output into `log`. Dies with the study's process
    (a killed study leaves no arm training on, to collide with the rerun)."""
    die_with_parent(parent)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    with open(log, "a") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (the process's own streams)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    import torch  # after OMP_NUM_THREADS is set: torch reads it when it is first imported

    torch.set_num_threads(threads)
    quiet_loading()
    started = time.time()
    info = jobs.run(spec)
    return info, time.time() - started


def quiet_loading() -> None:
    """No progress bar per model load (the probes load three models per arm): the node lines say what runs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
