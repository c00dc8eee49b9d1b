"""One way to run a plan's nodes: `execute(nodes, ledger, ...)`. Every node runs through `jobs.run(spec)`:

- in this process (evaluations, probes, the comparison, the report; an arm when arms train one at a time);
- in spawned child processes: on a CPU with `train_jobs` > 1, every node, `train_jobs` at once, each as soon as
  the nodes it reads are done (`as_graph`); else `train_jobs` arms at once (and on a GPU machine every arm, so
  each starts with the GPU's memory free); evaluations through started servers, one per device group of
  [eval.serve] at once (the spec is handed to the child as it is: nothing is planned again there);
- under a launcher, as `[*launch, "-m", "rtransfer.jobs", DIR/specs/<node>.json]`.

The ledger records each node as it starts and ends (it alone writes the manifest), so a killed study resumes.
"""

import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from rtransfer import jobs
from rtransfer.engines.serve import ServeSpec
from rtransfer.errors import RtransferError
from rtransfer.jobs import say
from rtransfer.processes import die_with_parent
from rtransfer.specs import Spec, StepEvalSpec, TrainSpec
from rtransfer.study.launch import resolved_launcher
from rtransfer.study.ledger import Ledger, Node
from rtransfer.train.methods import METHODS


def execute(nodes: list[Node], ledger: Ledger, train_jobs: int, out: Path, servers: tuple[str, ...] = ()) -> None:
    """Run `nodes` in order (each one's needs come before it), the ones already done reused. `servers` are the
    device groups of the servers [eval.serve] starts at once (one per group; () or one group: one at a time)."""
    numbers = {n.name: f"[{i}/{len(nodes)}]" for i, n in enumerate(nodes, 1)}
    if as_graph(nodes, train_jobs):
        for node in nodes:
            if ledger.status(node) == "done":
                say(f"{numbers[node.name]} {node.name}: done earlier, reused")
        pending = [n for n in nodes if ledger.status(n) != "done"]
        if pending:
            _children(pending, ledger, [None] * train_jobs, out, numbers)
        return
    in_waves: set[str] = set()
    for node in nodes:
        if ledger.status(node) == "done":
            if node.name not in in_waves:
                say(f"{numbers[node.name]} {node.name}: done earlier, reused")
            continue
        slots = _slots(node, train_jobs, servers)
        if slots:  # it and the others of its kind that are ready, side by side in child processes
            wave = [n for n in nodes if _slots(n, train_jobs, servers) and _ready(n, ledger)]
            in_waves.update(n.name for n in wave)
            _children(wave, ledger, slots, out, numbers)
            continue
        before = ledger.begin(node, numbers[node.name])
        started = time.time()
        info = _launched(node, out) if _launch(node.spec) else jobs.run(node.spec)
        ledger.finish(node, before, time.time() - started, info, numbers[node.name])


def as_graph(nodes: list[Node], train_jobs: int) -> bool:
    """Whether every node runs in `train_jobs` child processes as soon as what it reads is done: on a CPU with
    arms trained side by side, so a finished arm's evaluations and probes use the core an arm no longer trains on
    (the lab study on an Intel Xeon, 2 cores: 906 s training first, then the rest; 790 s as a graph). Launched
    arms and served evaluations keep their own way (one launcher at a time; a server per device group)."""
    if train_jobs < 2 or gpu_machine():
        return False
    return not any(_launch(n.spec) or serve_of(n.spec) is not None for n in nodes)


def _slots(node: Node, train_jobs: int, servers: tuple[str, ...]) -> list[str | None]:
    """The child-process slots a node runs in ([] : in this process): an arm trained here runs in a child when
    arms train side by side, or always on a GPU machine (each arm then starts with the GPU's memory free, A3);
    a served evaluation runs in a child per device group when several servers run at once."""
    if isinstance(node.spec, TrainSpec) and not node.spec.launch and (train_jobs > 1 or gpu_machine()):
        return [None] * train_jobs
    if len(servers) > 1 and serve_of(node.spec) is not None:
        return list(servers)
    return []


def _ready(node: Node, ledger: Ledger) -> bool:
    return ledger.status(node) != "done" and all(
        ledger.status(ledger.nodes[need]) == "done" for need in node.needs if need in ledger.nodes
    )


def serve_of(spec: Spec) -> ServeSpec | None:
    return spec.template.serve if isinstance(spec, StepEvalSpec) else getattr(spec, "serve", None)


def _on_devices(spec: Spec, devices: str | None) -> Spec:
    """`spec` with its server on `devices` (where a server runs is not part of any key)."""
    serve = serve_of(spec)
    if devices is None or serve is None:
        return spec
    if isinstance(spec, StepEvalSpec):
        return replace(spec, template=_on_devices(spec.template, devices))
    return replace(spec, serve=replace(serve, devices=devices))


def gpu_machine() -> bool:
    import torch  # loaded already by every stage that trains or evaluates in process

    return torch.cuda.is_available()


def _launch(spec: Spec) -> tuple[str, ...]:
    return spec.launch if isinstance(spec, TrainSpec) else ()


def spec_path(out: Path, node: Node) -> Path:
    return out / "specs" / f"{node.name.replace(':', '-')}.json"


def launch_command(node: Node, out: Path) -> list[str]:
    """The launcher command of a node run in its own processes (accelerate, torchrun, ...)."""
    return [*resolved_launcher(_launch(node.spec)), "-m", "rtransfer.jobs", str(spec_path(out, node))]


def _launched(node: Node, out: Path) -> dict[str, Any]:
    jobs.write(node.spec, spec_path(out, node))
    command = launch_command(node, out)
    done = subprocess.run(command, check=False)
    if done.returncode:
        raise RtransferError(f"{node.name} failed (exit {done.returncode}): {' '.join(command)}")
    return {}


def _children(nodes: list[Node], ledger: Ledger, slots: list[str | None], out: Path, numbers: dict[str, str]) -> None:
    """The nodes, one per slot at a time, each in a spawned process (its output in DIR/logs/<node>.log) as soon as
    the nodes it reads are done: arms first, each on its recipe's threads, the longest methods first (so the
    longest arm does not start last), then the others in plan order, each on its share of the cores; served
    evaluations each with its server on the slot's devices."""
    workers = min(len(slots), len(nodes))
    threads = max(1, (os.cpu_count() or 1) // workers)
    queue = sorted(nodes, key=lambda n: METHODS[n.spec.method].cost if isinstance(n.spec, TrainSpec) else 99)
    free = list(slots[:workers])
    (out / "logs").mkdir(parents=True, exist_ok=True)
    running: dict = {}
    # Spawned processes (no copy of this one's torch state). An arm trains in a fresh one, as `rtransfer train`
    # would; the other nodes share workers that stay (each draws from its own seeds), which saves an import of
    # torch, transformers and TRL per node: about 3 s each, 15 of the lab study's 19 nodes.
    # Every worker dies with this process from its start, idle or not: a killed study leaves none behind.
    spawn = {"mp_context": multiprocessing.get_context("spawn"), "initializer": die_with_parent}
    spawn["initargs"] = (os.getpid(),)
    with (
        ProcessPoolExecutor(workers, max_tasks_per_child=1, **spawn) as fresh,
        ProcessPoolExecutor(workers, **spawn) as kept,
    ):
        while queue or running:
            while free and (node := next((n for n in queue if _ready(n, ledger)), None)):
                queue.remove(node)
                slot = free.pop(0)
                log = out / "logs" / f"{node.name.replace(':', '-')}.log"
                where = _where(node.spec, slot, threads)
                before = ledger.begin(node, numbers[node.name], f" ({workers} at once, {where}; {log})")
                pool = fresh if isinstance(node.spec, TrainSpec) else kept
                future = pool.submit(_child, _on_devices(node.spec, slot), threads, log, os.getpid())
                running[future] = (node, before, slot)
            if not running:  # nothing can start: a node reads one that is neither done nor queued
                raise RtransferError(f"{queue[0].name} reads a stage that has not run")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                node, before, slot = running.pop(future)
                free.append(slot)
                info, seconds = future.result()  # a failed node raises here; the others finish first (the with)
                ledger.finish(node, before, seconds, info, numbers[node.name])


def _where(spec: Spec, slot: str | None, threads: int) -> str:
    if isinstance(spec, TrainSpec):
        return _train_threads(spec)
    return f"devices {slot}" if slot else f"{threads} thread(s)"


def _train_threads(spec: TrainSpec) -> str:
    """What an arm trains on: its recipe's threads on a CPU, whatever the schedule (train.config.Recipe.threads)."""
    return "a GPU" if gpu_machine() else f"{spec.recipe['threads']} thread(s)"


def _child(spec: Spec, threads: int, log: Path, parent: int) -> tuple[dict[str, Any], float]:
    """In a spawned process (fresh for an arm, perhaps used before for another node): `spec` on `threads` torch
    threads, its output into `log`. Dies with the study's process (a killed study leaves no arm training on, to
    collide with the rerun)."""
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
