"""The CUDA paths against the CPU, on the shipped lab base: greedy generation, log-likelihoods and both probes.

    python bench/cuda_paths.py [--n 40] [--out DIR]

Needs a GPU (CI has none; docs/gpu.md keeps the last figures). Prints, per lab benchmark, the share of greedy
answers that are identical between CPU and CUDA (fp32) and between CUDA batch sizes (fp32 and bf16), with the
scores; the largest |difference| of log-likelihoods; and the probes' numbers run on each device (base: the lab
base, tuned: a copy with seeded noise on its matrices), with the largest relative difference between devices.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _greedy(engine, tasks, n):
    from rtransfer.engines.base import SamplingParams

    params = SamplingParams(temperature=0.0, max_new_tokens=160)
    out = {}
    for name, task in tasks.items():
        docs = task.load(None)[:n]
        texts = [g.text for g in engine.generate([task.prompt(d) for d in docs], params, [0] * len(docs))]
        out[name] = (texts, 100 * sum(task.grade(d, t).score for d, t in zip(docs, texts, strict=True)) / len(docs))
    return out


def _same(a, b) -> str:
    return f"{100 * sum(x == y for x, y in zip(a, b, strict=True)) / len(a):5.1f}"


def _noisy_copy(base: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.add_(0.05 * p.std() * torch.randn(p.shape, generator=gen))
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(base).save_pretrained(target)


def _leaves(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}[{i}]")
    elif isinstance(obj, float):
        yield prefix, obj


def _probe(kind: str, base: str, tuned: str, device: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "rtransfer.cli", "probe", kind, "--base", base, "--tuned", tuned]
    cmd += ["--suite", "lab", "--samples", "24", "--device", device, "--out", str(out / f"{kind}-{device}"), "--json"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        print(f"probe {kind} on {device} failed: {done.stderr.strip().splitlines()[-1:]}")
        return {}
    print(f"probe {kind} on {device}: {time.perf_counter() - start:.1f} s")
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="test items per lab benchmark")
    ap.add_argument("--out", default=None, help="keep the probes' JSON and plots here")
    ap.add_argument("--device", default="cuda", help="the device compared with the CPU (cpu: a dry run of this script)")
    args = ap.parse_args()

    import torch

    from rtransfer.benchmarks.registry import SUITES, get_task
    from rtransfer.engines.hf import HFEngine
    from rtransfer.lab.build import BuildConfig, shipped_base

    gpu = args.device
    if gpu.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: this bench compares the CUDA paths with the CPU")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if gpu.startswith('cuda') else 'cpu only'}")
    base = str(shipped_base(BuildConfig()))
    tasks = {name: get_task(name) for name in SUITES["lab"]}

    runs = {}
    for label, device, dtype, batch in (
        ("cpu fp32 b64", "cpu", "float32", 64),
        ("cuda fp32 b64", gpu, "float32", 64),
        ("cuda fp32 b5", gpu, "float32", 5),
        ("cuda bf16 b64", gpu, "bfloat16", 64),
        ("cuda bf16 b5", gpu, "bfloat16", 5),
    ):
        engine = HFEngine.load(base, device=device, dtype=dtype, batch_size=batch)
        start = time.perf_counter()
        runs[label] = _greedy(engine, tasks, args.n)
        print(f"{label}: {time.perf_counter() - start:.1f} s for {args.n} items of each of {len(tasks)} benchmarks")
    print(
        "\nbenchmark      " + "".join(f"{label:>15s}" for label in runs) + "   same: cpu/cuda fp32, b64/b5 fp32, bf16"
    )
    for name in tasks:
        scores = "".join(f"{runs[label][name][1]:15.1f}" for label in runs)
        same = [
            _same(runs["cpu fp32 b64"][name][0], runs["cuda fp32 b64"][name][0]),
            _same(runs["cuda fp32 b64"][name][0], runs["cuda fp32 b5"][name][0]),
            _same(runs["cuda bf16 b64"][name][0], runs["cuda bf16 b5"][name][0]),
        ]
        print(f"{name:14s}{scores}   {' '.join(same)}")

    trace = tasks["lab_trace"]
    requests = [(trace.prompt(d), [f"\\boxed{{{letter}}}" for letter in "ABCD"]) for d in trace.load(None)[: args.n]]
    cpu_ll, gpu_ll = (
        HFEngine.load(base, device=device, dtype="float32", batch_size=16).loglikelihood(requests)
        for device in ("cpu", gpu)
    )
    diff = max(abs(a - b) for x, y in zip(cpu_ll, gpu_ll, strict=True) for a, b in zip(x, y, strict=True))
    print(f"\nlog-likelihood, fp32, {len(requests)} x 4 continuations: max |cpu - cuda| = {diff:.2e}")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        tuned = str(out / "tuned")
        _noisy_copy(base, Path(tuned))
        for kind in ("latent", "tokens"):
            results = {
                label: _probe(kind, base, tuned, device, out) for label, device in (("cpu", "cpu"), ("cuda", gpu))
            }
            if not all(results.values()):
                continue
            a, b = dict(_leaves(results["cpu"])), dict(_leaves(results["cuda"]))
            rel = {k: abs(a[k] - b[k]) / max(abs(a[k]), 1e-6) for k in a.keys() & b.keys()}
            worst = max(rel, key=rel.get)
            print(f"probe {kind}: {len(rel)} numbers, largest relative cpu/cuda difference {rel[worst]:.2e} ({worst})")
            for key in sorted(k for k in a if k.endswith((".d", ".cka", ".kl", ".kl_mean")))[:8]:
                print(f"  {key}: cpu {a[key]:.6g}  cuda {b.get(key, float('nan')):.6g}")


if __name__ == "__main__":
    main()
