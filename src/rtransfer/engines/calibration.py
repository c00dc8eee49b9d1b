"""How many batches the hf engine decodes at once on a CPU: measured on the machine it runs on, cached (#30 item 4).

A decoding step of a small model is mostly per-operation overhead. Whether a second batch on its own thread
overlaps that overhead (torch releases the GIL in its kernels) or only contends with the first for the GIL depends
on the CPU. On 2 cores with the lab base, two batches at once (one thread each) decoded the lab suite 1.05-1.17×
faster than one batch on both threads on an AMD EPYC, and 1.36× slower on an Intel Xeon (11.5 s against 8.45 s:
there one batch gains 1.4× from its second thread, and a second Python thread adds nothing). No fixed default suits
both kinds and a CPU's name does not predict the answer, so the engine measures it: the first call with two
batches or more decodes two synthetic batches (the engine's batch size, random prompt tokens, STEPS greedy steps
that never end early) one way and the other, alternating, for ROUNDS rounds after a warm-up, and keeps the faster
by the median. The choice is cached per machine, torch thread count and model shape under the cache root
(calibration/parallel-batches.json, with the seconds measured), so it is measured once; delete the file to measure
again, or pass `parallel_batches` (`rtransfer eval --parallel-batches`) to choose. It changes speed, not answers:
greedy answers do not depend on batching (engines/hf.py's contract) up to the last bits, which may differ between
thread counts; so what feeds training or a study (training's samplers and monitor, a study's evaluations) passes
`one_thread_per_batch` instead and never depends on a measurement. Written here because no library chooses
between intra-op and Python-thread parallelism for a decoding loop.
"""

import json
import os
import platform
import statistics
import time
from pathlib import Path

from rtransfer.engines.decode import decode
from rtransfer.paths import cache_dir
from rtransfer.runs import write_json_atomic

CHOICES = (1, 2)  # batches at once: one on every thread, or two sharing them (hf.shared_threads)
ROUNDS = 3
STEPS = 32  # greedy steps per synthetic batch: about the lab suite's median answer
PROMPT_TOKENS = 32


def cache_file() -> Path:
    return cache_dir("calibration") / "parallel-batches.json"


def measured_parallel_batches(engine) -> int:
    """The engine's batches at once on this machine: the cached choice for its key, else measured now and cached."""
    key = calibration_key(engine)
    entry = _read(cache_file()).get(key)
    if isinstance(entry, dict) and entry.get("parallel_batches") in CHOICES:
        return entry["parallel_batches"]
    seconds = measure(engine)
    choice = min(CHOICES, key=lambda p: statistics.median(seconds[p]))
    known = _read(cache_file())  # another process may have written meanwhile: keep its entries
    known[key] = {"parallel_batches": choice, "seconds": {str(p): s for p, s in seconds.items()}}
    write_json_atomic(cache_file(), known)  # whole or not at all, whatever runs beside it
    return choice


def calibration_key(engine) -> str:
    """What the choice depends on: the CPU, its core count, torch's threads and version, the model's shape and dtype,
    and the batch size."""
    import torch

    config = engine.model.config.get_text_config()
    shape = "-".join(
        str(getattr(config, name, None))
        for name in ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size")
    )
    dtype = str(engine.model.dtype).removeprefix("torch.")
    return (
        f"{cpu_name()} | {os.cpu_count()} cpus | {torch.get_num_threads()} threads | torch {torch.__version__} | "
        f"{shape} {dtype} | batch {engine.batch_size}"
    )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(engine) -> dict[int, list[float]]:
    """Seconds per round for each choice: two synthetic batches decoded one after the other on all threads (1), or
    at once on half the threads each (2)."""
    import torch

    from rtransfer.engines.hf import concurrently, shared_threads  # lazy: hf imports this module

    generator = torch.Generator().manual_seed(0)
    vocab = engine.model.get_input_embeddings().num_embeddings
    batches = [
        torch.randint(vocab, (engine.batch_size, PROMPT_TOKENS), generator=generator).to(engine.device)
        for _ in range(2)
    ]

    def run(ids) -> list:
        mask = torch.ones_like(ids)
        return decode(engine.model, ids, mask, max_new_tokens=STEPS, eos=[], sampling=None)

    seconds: dict[int, list[float]] = {p: [] for p in CHOICES}
    for round_ in range(ROUNDS + 1):  # round 0 warms up
        for parallel in CHOICES if round_ % 2 else CHOICES[::-1]:
            start = time.perf_counter()
            with shared_threads(parallel):
                for _ in concurrently(run, batches, parallel):
                    pass
            if round_:
                seconds[parallel].append(time.perf_counter() - start)
    return seconds


def _read(path: Path) -> dict:
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: measured again and rewritten
    return known if isinstance(known, dict) else {}
