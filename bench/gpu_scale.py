"""Each training method at Qwen3-0.6B's size, in one process and sharded (FSDP2, ZeRO-3): memory, step time, save.

    python bench/gpu_scale.py [--work DIR] [--steps 5] [--methods sft,onpolicy,grpo]
                              [--launchers 1proc,fsdp2,zero3] [--procs K] [--vllm]
    OMP_NUM_THREADS=1 python bench/gpu_scale.py --tiny          # a CPU smoke run of this script (a minute or two)
    python bench/gpu_scale.py --engine-checks [--work DIR]     # the in-process engine at scale (review G1, G2)

For a lent GPU, never CI. It builds once, into --work, a random-initialised Qwen3ForCausalLM with Qwen3-0.6B-Base's
architecture (hidden 1024, 28 layers, 16 heads / 8 KV heads of 128, MLP 3072, vocabulary 151,936, tied embeddings),
saved in bfloat16, with the lab's tokenizer (its 402 tokens are fewer than the model's vocabulary, which costs
nothing here: logits, embeddings and their memory are the model's). Nothing is downloaded: the hub is switched off
for every run. Then each method runs `rtransfer train METHOD` for --steps steps, with a checkpoint and the final
save at the last step, on data written into --work (SFT: math traces filled up to --sft-length tokens, so every
row costs a full sequence; on-policy SFT and GRPO: math queries, rollouts of --completion-length tokens with HF
generate, or vLLM with --vllm where it is installed), under each launcher:
  - 1proc: `rtransfer train` in one process, on the first visible GPU (fp32 weights, bf16 autocast);
  - fsdp2 / zero3: `accelerate launch` with rtransfer's fsdp2.yaml / zero3.yaml over --procs GPUs (all visible
    ones by default), the model loaded in bfloat16 (model_dtype) under their fp32 master copy; skipped, with the
    reason printed, without CUDA (accelerate shards only on GPUs, docs/sharding.md), without FSDP2 in torch, or
    where `import deepspeed` fails; ddp (ddp.yaml, unsharded, fp32 weights) when --launchers names it.
On a GPU every run has bf16 and gradient checkpointing on; on the CPU rtransfer trains in fp32 (--tiny).

--engine-checks runs the in-process engine instead (no training), on the same model, and prints what it found
("no GPU: skipped" without CUDA):
  - split: the model spread by a device_map, the first half of its layers on the GPU and the rest on the CPU,
    generating a batch whose rows end at different times (an eos set to a token row 0 makes early, and each row
    capped at its own context), and scoring log-likelihoods: no "indices should be either on cpu or on the same
    device" crash, each answer the prefix of the uncut run's;
  - budget: the rows admitted per batch at max_new_tokens 32768 under the default KV budget (0.8 of the free
    memory), then one admitted batch under a 4 GiB budget at --kv-new-tokens tokens with every row running to the
    end (no eos): the peak memory above the weights against the budget.

One row per run: exit status, wall time of the whole command (model loading and saving included), the median
step time (differences of log.jsonl's wall_s between consecutive steps, the first step left out: it holds
warm-up; on-policy SFT and GRPO steps include their generation), the peak GPU memory (torch.cuda's
max_memory_allocated and max_memory_reserved inside each training process, written by a wrapper around the
rtransfer CLI at its end; the largest over the ranks), the peak host memory of a rank (ru_maxrss), the sharding
and load dtype train.json records, and the final model checked in this process: it loads with no missing or
unexpected weights, its dtype, train.json's saved_dtype, and how many of its tensors differ from the base. A random
model never answers a query right, so on-policy SFT and GRPO get reward 0, advantage 0 and a zero gradient: their
steps still run every forward and backward pass, but their saved weights equal the base's (0 changed).
"""

import argparse
import importlib.util
import itertools
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

METHODS = ("sft", "onpolicy", "grpo")
LAUNCHERS = ("1proc", "fsdp2", "zero3", "ddp")
GIB = 2**30
PORT = "{port}"  # a launcher's rendezvous port, chosen afresh for each run
SCRIPT = os.path.abspath(__file__)  # the launchers run this file again, as the wrapper of each training process


@dataclass(frozen=True)
class Arch:
    """Qwen3-0.6B-Base's config.json, the fields that size the model."""

    hidden: int = 1024
    layers: int = 28
    heads: int = 16
    kv_heads: int = 8
    head_dim: int = 128
    intermediate: int = 3072
    vocab: int = 151936
    max_positions: int = 32768
    rope_theta: float = 1_000_000.0

    def key(self) -> str:
        heads = f"a{self.heads}x{self.head_dim}-kv{self.kv_heads}"
        return f"h{self.hidden}-l{self.layers}-{heads}-i{self.intermediate}-v{self.vocab}"


TINY = {"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "head_dim": 16, "intermediate": 128}


def build_model(arch: Arch, work: Path) -> Path:
    """The random-initialised bf16 model of `arch` with the lab tokenizer, built once (whole or not at all)."""
    target = work / f"model-{arch.key()}"
    if (target / "gpu_scale.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, Qwen3Config
    from transformers.utils import logging

    logging.disable_progress_bar()

    from rtransfer.lab.build import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("lab:quick"))
    ids = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id, "bos_token_id": None}
    config = Qwen3Config(
        hidden_size=arch.hidden,
        num_hidden_layers=arch.layers,
        num_attention_heads=arch.heads,
        num_key_value_heads=arch.kv_heads,
        head_dim=arch.head_dim,
        intermediate_size=arch.intermediate,
        vocab_size=arch.vocab,
        max_position_embeddings=arch.max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": arch.rope_theta},
        tie_word_embeddings=True,
        **ids,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(**ids)
    tmp = target.with_name(target.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)  # no lab_build.json: rtransfer must not take it for a lab base
    params = sum(p.numel() for p in model.parameters())
    (tmp / "gpu_scale.json").write_text(json.dumps({**asdict(arch), "parameters": params}, indent=2) + "\n")
    tmp.rename(target)
    return target


def write_data(work: Path, model: Path, sft_length: int) -> tuple[Path, Path]:
    """Math queries (problem/answer) and SFT traces (prompt/completion, a worked sum filled up to about
    `sft_length` tokens with the chat template, so that no trace is dropped and each costs a full row)."""
    from transformers import AutoTokenizer

    rng = random.Random(0)
    pairs = [(rng.randint(10, 999), rng.randint(10, 999)) for _ in range(512)]
    queries = work / "queries.jsonl"
    rows = [{"problem": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in pairs]
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    traces = work / f"traces-{sft_length}.jsonl"
    if traces.exists():
        return queries, traces
    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = []
    for a, b in pairs[:256]:
        prompt = f"What is {a} + {b}? Put your final answer in \\boxed{{}}."
        messages = [{"role": "user", "content": prompt}]
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        answer = f"So {a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."
        lines = [f"Add the units, then the tens, then the hundreds of {a} and {b}."]
        while _tokens(tokenizer, head + "\n".join([*lines, f"Check: {a} + {b} = {a + b}.", answer])) < sft_length - 8:
            lines.append(f"Check: {a} + {b} = {a + b}.")
        rows.append({"prompt": prompt, "completion": "\n".join([*lines, answer])})
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return queries, traces


def _tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def overrides(method: str, args, sharded: bool, cuda: bool) -> list[str]:
    values = {
        "max_steps": args.steps,
        "save_every": args.steps,
        "keep_checkpoints": 1,
        "log_every": 1,
        "warmup": 0,
        "grad_accum": 1,
    }
    if method == "sft":
        values.update(batch_size=args.sft_batch, max_length=args.sft_length)
    else:
        values.update(
            batch_size=args.prompts * args.rollouts,
            rollouts=args.rollouts,
            steps_per_generation=1,
            max_completion_length=args.completion_length,
            use_vllm=args.vllm,
        )
    if cuda:
        values.update(bf16=True, gradient_checkpointing=True, model_dtype="bfloat16" if sharded else "float32")
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


PROBE = """
import json, torch
found = {"gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], "deepspeed": ""}
try:
    from torch.distributed.fsdp import fully_shard
    found["fsdp2"] = True
except ImportError:
    found["fsdp2"] = False
try:
    import deepspeed
except Exception as err:  # a missing package or a broken CUDA build: either way no ZeRO-3 here
    found["deepspeed"] = (str(err).splitlines() or [type(err).__name__])[0]
print(json.dumps(found))
"""


def probe() -> dict:
    """The GPUs and libraries, found in a child process: this one then never opens a CUDA context (which would hold
    memory on GPU 0 beside the runs) nor imports DeepSpeed."""
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def launchers(args, found: dict) -> list[tuple[str, list[str] | None, str]]:
    """(launcher, the command's prefix or None when skipped, why skipped)."""
    out = []
    for name in args.launchers.split(","):
        if name == "1proc":
            out.append((name, [sys.executable, SCRIPT, "_worker"], ""))
            continue
        reason = _unavailable(name, found)
        if reason:
            out.append((name, None, reason))
            continue
        config = str(files("rtransfer") / "data" / "accelerate" / f"{name}.yaml")
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config]
        launch += ["--num_processes", str(args.procs), "--main_process_port", PORT]
        out.append((name, [*launch, SCRIPT, "_worker"], ""))
    return out


def _unavailable(name: str, found: dict) -> str:
    if not found["gpus"]:
        return "no CUDA: accelerate shards only on GPUs (docs/sharding.md)"
    if name == "fsdp2" and not found["fsdp2"]:
        return "this torch has no FSDP2 (fully_shard)"
    if name == "zero3" and found["deepspeed"]:
        return f"import deepspeed fails: {found['deepspeed']}"
    return ""


def _free_port() -> int:
    """A fresh rendezvous port per launch: the previous run's may still be in TIME_WAIT."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(peak_dir: Path, argv: list[str]) -> int:
    """`rtransfer <argv>` in this process, then its peak memory into peak_dir/rank-<RANK>.json (even on failure)."""
    from rtransfer.cli import main

    code = 1
    try:
        code = main(argv)
    finally:
        peak = {"host_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
        import torch

        if torch.cuda.is_available():
            device = int(os.environ.get("LOCAL_RANK", "0"))
            peak["gpu_allocated"] = torch.cuda.max_memory_allocated(device)
            peak["gpu_reserved"] = torch.cuda.max_memory_reserved(device)
        peak_dir.mkdir(parents=True, exist_ok=True)
        (peak_dir / f"rank-{os.environ.get('RANK', '0')}.json").write_text(json.dumps(peak))
    return code


def run_one(method: str, launcher: str, prefix: list[str], args, data: Path, model: Path, cuda: bool) -> dict:
    name = f"{method}-{launcher}" + (f"-{args.procs}" if launcher != "1proc" else "")
    out, peaks, log = args.work / "runs" / name, args.work / "peaks" / name, args.work / "logs" / f"{name}.txt"
    for path in (out, peaks):
        shutil.rmtree(path, ignore_errors=True)  # a fresh run, never a resume
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(_free_port()) if part == PORT else part for part in prefix]
    cmd += [str(peaks), "train", method, "--model", str(model), "--data", str(data), "--out", str(out)]
    for item in overrides(method, args, launcher in ("fsdp2", "zero3"), cuda):
        cmd += ["--set", item]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if cuda and launcher == "1proc":  # one GPU: the Trainer would wrap several in DataParallel
        env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    start = time.perf_counter()
    with open(log, "w") as f:
        try:
            code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    row = {"method": method, "launcher": launcher, "procs": 1 if launcher == "1proc" else args.procs, "exit": code}
    row.update(wall_s=time.perf_counter() - start, out=out, log=str(log), **_figures(out, peaks))
    if code != 0:
        tail = [line for line in log.read_text().splitlines() if line.strip()][-1:]
        row["error"] = tail[0][:200] if tail else ""
    return row


def _figures(out: Path, peaks: Path) -> dict:
    """Step time from log.jsonl, the peaks of every rank, and what train.json says of the run."""
    from rtransfer.train.run import read_log

    walls = [(line["step"], line["wall_s"]) for line in read_log(out)]
    diffs = [(w2 - w1) / (s2 - s1) for (s1, w1), (s2, w2) in itertools.pairwise(walls) if s2 > s1]
    ranks = [json.loads(p.read_text()) for p in sorted(peaks.glob("rank-*.json"))]
    info = json.loads((out / "train.json").read_text()) if (out / "train.json").exists() else {}
    execution = info.get("execution", {})
    return {
        "steps": walls[-1][0] if walls else 0,
        "step_s": statistics.median(diffs) if diffs else None,
        "gpu_allocated": max((r.get("gpu_allocated", 0) for r in ranks), default=None) or None,
        "gpu_reserved": max((r.get("gpu_reserved", 0) for r in ranks), default=None) or None,
        "host": max((r["host_bytes"] for r in ranks), default=None),
        "ranks": len(ranks),
        "sharding": execution.get("sharding") or "none",
        "model_dtype": execution.get("model_dtype"),
        "saved_dtype": info.get("saved_dtype"),
        "finished": bool(info.get("finished")),
    }


class SavedCheck:
    """The final model as eval would load it: no missing or unexpected weights, its dtype, tensors changed."""

    def __init__(self, base: Path):
        self.base = base
        self._base_state = None

    def __call__(self, out: Path) -> dict:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging

        logging.disable_progress_bar()
        try:
            model, info = AutoModelForCausalLM.from_pretrained(out, dtype="auto", output_loading_info=True)
        except Exception as err:  # what eval would meet: shown in the row, the bench goes on
            return {"loads": f"no: {str(err).splitlines()[0][:80]}"}
        bad = len(info["missing_keys"]) + len(info["unexpected_keys"]) + len(info["mismatched_keys"])
        if self._base_state is None:
            self._base_state = AutoModelForCausalLM.from_pretrained(self.base, dtype="auto").state_dict()
        state = model.state_dict()
        base = self._base_state
        changed = sum(k not in base or not torch.equal(v, base[k].to(v.dtype)) for k, v in state.items())
        loads = "yes" if not bad else f"no: {bad} missing/unexpected/mismatched"
        dtype = str(model.dtype).removeprefix("torch.")
        return {"loads": loads, "loaded_dtype": dtype, "changed": f"{changed}/{len(state)}"}


def _gib(value) -> str:
    return f"{value / GIB:.2f}" if value else "—"


def _cell(value, fmt: str = "{}") -> str:
    return "—" if value is None else fmt.format(value)


HEADER = (
    "| method | launcher | procs | exit | steps | wall s | step s | GPU alloc GiB | GPU reserved GiB | host GiB "
    "| sharding | load dtype | loads | loaded dtype | saved dtype | changed |"
)


def print_row(row: dict) -> None:
    cells = [
        row["method"],
        row["launcher"],
        str(row["procs"]),
        str(row["exit"]),
        str(row["steps"]),
        f"{row['wall_s']:.1f}",
        _cell(row["step_s"], "{:.2f}"),
        _gib(row["gpu_allocated"]),
        _gib(row["gpu_reserved"]),
        _gib(row["host"]),
        row["sharding"],
        _cell(row["model_dtype"]),
        row.get("loads", "—"),
        row.get("loaded_dtype", "—"),
        _cell(row["saved_dtype"]),
        row.get("changed", "—"),
    ]
    print("| " + " | ".join(cells) + " |", flush=True)


def engine_checks(args) -> None:
    """The in-process engine on a model split over the GPU and the CPU, and its KV budget (see the module doc)."""
    import torch

    if not torch.cuda.is_available():
        print("engine checks: no GPU: skipped")
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rtransfer.engines.base import SamplingParams
    from rtransfer.engines.hf import HFEngine
    from rtransfer.online import hub_kernels

    model_dir = build_model(args.arch, args.work)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = [[{"role": "user", "content": f"What is {i} + {3 * i}? " + "Explain. " * (i % 5)}] for i in range(8)]
    gpu_layers = args.arch.layers // 2
    device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.norm": "cpu", "lm_head": "cpu"}
    device_map.update({f"model.layers.{i}": 0 if i < gpu_layers else "cpu" for i in range(args.arch.layers)})
    kernels = hub_kernels()  # as rtransfer loads models
    split = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map=device_map, **kernels)
    split.eval()
    engine = HFEngine(split, tokenizer, batch_size=8, chat=True)
    greedy = SamplingParams(max_new_tokens=24)
    engine.eos_ids = set()  # a random model: every row runs to the end, the reference
    full = engine.generate(prompts, greedy, [0] * len(prompts))
    first = engine.generate_ids([engine.encode(engine.render(prompts[0]))], SamplingParams(max_new_tokens=6))[0][0]
    engine.eos_ids = {first[5]}  # row 0 ends at its 6th token; others when they meet it, or at their cap
    lengths = sorted(len(engine.encode(engine.render(p))) for p in prompts)
    engine.context = lengths[len(lengths) // 2] + 12  # longer prompts are capped earlier
    cut = engine.generate(prompts, greedy, [0] * len(prompts))
    prefixes = all(f.text.startswith(c.text) for f, c in zip(full, cut, strict=True))
    print(f"split ({gpu_layers} of {args.arch.layers} layers on cuda:0, the rest on the CPU):")
    print(f"  tokens per row: {[c.tokens for c in cut]} (uncut: {[f.tokens for f in full]}); prefixes: {prefixes}")
    scores = engine.loglikelihood([(prompts[0], [" yes", " no"]), (prompts[1], [" 4", " 5"])])
    print(f"  log-likelihoods: {[[round(v, 3) for v in row] for row in scores]}")
    del engine, split
    torch.cuda.empty_cache()

    whole = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, **kernels).to("cuda").eval()
    engine = HFEngine(whole, tokenizer, batch_size=64, parallel_batches=1)
    encoded = [engine.encode(engine.render(p)) for p in prompts * 8]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    batches = list(engine._batches(order, [len(e) for e in encoded], new_tokens=32768))
    print(f"budget: {engine.kv_bytes / 1024:.0f} KiB KV per token; default budget {engine.kv_budget / GIB:.1f} GiB")
    print(f"  max_new_tokens 32768, {len(encoded)} prompts: rows per batch {[len(b) for b in batches]}")
    engine.kv_budget, engine.eos_ids = 4 * GIB, set()
    batch = next(engine._batches(order, [len(e) for e in encoded], new_tokens=args.kv_new_tokens))
    weights = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    answers = engine.generate_ids([encoded[i] for i in batch], SamplingParams(max_new_tokens=args.kv_new_tokens))
    peak = torch.cuda.max_memory_allocated() - weights
    print(
        f"  4 GiB budget, {args.kv_new_tokens} new tokens: {len(batch)} rows admitted, "
        f"{sum(len(a) for a, _ in answers)} tokens in {time.perf_counter() - start:.0f} s; "
        f"peak above the weights {peak / GIB:.2f} GiB ({'within' if peak <= 4 * GIB else 'OVER'} the budget)"
    )


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/rtransfer-gpu-scale"), help="model, data, runs, logs")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--launchers", default="1proc,fsdp2,zero3", help=f"comma-separated: {', '.join(LAUNCHERS)}")
    ap.add_argument("--procs", type=int, default=0, help="processes of a sharded run (0: every visible GPU)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--sft-batch", type=int, default=8, help="SFT traces per device per step")
    ap.add_argument("--sft-length", type=int, default=1024, help="tokens of every SFT trace (max_length)")
    ap.add_argument("--prompts", type=int, default=4, help="on-policy/GRPO prompts per device per step")
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--completion-length", type=int, default=256)
    ap.add_argument("--vllm", action="store_true", help="rollouts on vLLM (colocate) where it is installed")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--tiny", action="store_true", help="a tiny model and short runs: a CPU smoke run of this script")
    ap.add_argument("--engine-checks", action="store_true", help="the in-process engine at scale, no training")
    ap.add_argument("--kv-new-tokens", type=int, default=2048, help="--engine-checks: new tokens of the budget run")
    for field, default in asdict(Arch()).items():
        if field in ("hidden", "layers", "vocab", "intermediate", "heads", "kv_heads", "head_dim"):
            ap.add_argument(f"--{field.replace('_', '-')}", type=int, help=f"model size (default {default})")
    args = ap.parse_args()
    if args.tiny:  # the big vocabulary stays: its logits are the memory path worth smoke-testing
        for key, value in {"steps": 2, "sft_batch": 2, "sft_length": 192, "prompts": 1, "rollouts": 2}.items():
            if ap.get_default(key) == getattr(args, key):
                setattr(args, key, value)
        if args.completion_length == ap.get_default("completion_length"):
            args.completion_length = 16
    sizes = {**(TINY if args.tiny else {}), **{k: v for k, v in vars(args).items() if k in asdict(Arch()) and v}}
    args.arch = Arch(**sizes)
    unknown = set(args.methods.split(",")) - set(METHODS), set(args.launchers.split(",")) - set(LAUNCHERS)
    if any(unknown):
        ap.error(f"unknown methods or launchers: {', '.join(sorted(unknown[0] | unknown[1]))}")
    return args


def main() -> None:
    args = parse_args()
    if args.engine_checks:
        args.work.mkdir(parents=True, exist_ok=True)
        engine_checks(args)
        return
    found = probe()
    cuda = bool(found["gpus"])
    args.procs = args.procs or max(len(found["gpus"]), 1)
    if args.vllm and importlib.util.find_spec("vllm") is None:
        print("--vllm: vllm is not importable here; rollouts use HF generate")
        args.vllm = False
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = build_model(args.arch, args.work)
    spec = json.loads((model / "gpu_scale.json").read_text())
    print(f"model: {model} ({spec['parameters'] / 1e6:.1f} M parameters, bf16; {time.perf_counter() - start:.0f} s)")
    queries, traces = write_data(args.work, model, args.sft_length)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    device = f"{len(found['gpus'])} × {found['gpus'][0]}" if cuda else f"CPU (fp32; OMP_NUM_THREADS={threads})"
    print(
        f"device: {device}; {args.steps} steps per run; SFT {args.sft_batch} × {args.sft_length} tokens per device; "
        f"on-policy/GRPO {args.prompts} prompts × {args.rollouts} rollouts × {args.completion_length} tokens per "
        f"device ({'vLLM' if args.vllm else 'HF generate'})"
    )
    print("peak GPU memory: torch.cuda.max_memory_allocated/reserved inside each training process, max over ranks\n")
    check = SavedCheck(model)
    rows, skipped = [], []
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for launcher, prefix, reason in launchers(args, found):
        if prefix is None:
            skipped.append(f"{launcher}: skipped: {reason}")
            continue
        for method in args.methods.split(","):
            row = run_one(method, launcher, prefix, args, traces if method == "sft" else queries, model, cuda)
            if row["finished"]:
                row.update(check(row["out"]))
            print_row(row)
            rows.append(row)
    for line in skipped:
        print(line)
    for row in rows:
        if row["exit"] != 0:
            print(f"{row['method']} {row['launcher']}: exit {row['exit']}: {row.get('error', '')} (log: {row['log']})")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_worker":  # inside a run: `_worker PEAK_DIR rtransfer-args...`
        sys.exit(worker(Path(sys.argv[2]), sys.argv[3:]))
    main()
