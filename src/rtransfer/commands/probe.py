"""`rtransfer probe`: how far a tuned model drifted from its base — latent PCA shift and CKA (`probe latent`),
token KL, rank shift and shifted tokens (`probe tokens`), the update's sparsity and rank (`probe weights`). Each
figure carries a bootstrap CI and a noise floor: the same measure for the base against its own bf16-rounded copy
(see docs/probes.md), measured where the models compute in float32 or float16 and marked "not measured" in bfloat16.
Both models run in one dtype: a pair loaded in different dtypes is widened to the wider one. The work is done by
rtransfer.probes.pipeline; this module only reads the flags."""

import argparse
import json
from pathlib import Path

from rtransfer.commands import add_benchmark_args, add_placement_args

EPILOG = """examples:
  rtransfer probe latent --base Qwen/Qwen3-14B-Base --tuned ./sft --benchmarks math500,coqa \
      --data-dir ../shared/benchmarks --out probes/sft
  rtransfer probe latent --base B --tuned T --suite lab --pooling paper --json
  rtransfer probe tokens --base B --tuned T --suite lab --samples 50 --out probes/t
  rtransfer probe tokens --base B --tuned T --benchmarks math500 --responses runs/sft --data-dir ../shared/benchmarks
  rtransfer probe tokens --base B --tuned T --suite lab --direction both --json
  rtransfer probe weights --base Qwen/Qwen3-14B-Base --tuned ./rl --out probes/rl
  rtransfer probe latent --base lab --tuned studies/lab/models/grpo --suite lab   # lab: the lab base"""

DTYPES = ("auto", "bf16", "fp32", "fp16", "bfloat16", "float32", "float16")


def register(sub) -> None:
    p = sub.add_parser(
        "probe",
        help="latent and token-level drift of a tuned model from its base",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = p.add_subparsers(dest="probe", metavar="PROBE", required=True)
    lat = kinds.add_parser("latent", help="PCA shift of pooled hidden states per layer, and linear CKA")
    _common(lat)
    lat.add_argument("--samples", type=int, default=100, help="texts per benchmark (the first N documents)")
    lat.add_argument("--pooling", choices=("mean", "paper"), default="mean", help="paper: unmasked, pads included")
    lat.add_argument("--max-length", type=int, help="truncate texts to N tokens (default: none; paper pooling: 128)")
    lat.add_argument("--batch-size", type=int, default=8, help="texts per forward pass")
    lat.set_defaults(run=run_latent)
    tok = kinds.add_parser("tokens", help="exact and sampled-token KL, base rank of the answer tokens")
    _common(tok)
    tok.add_argument("--samples", type=int, default=100, help="prompts per benchmark (the first N documents)")
    tok.add_argument("--responses", type=Path, help="take the answers from this run directory (sample 0 per doc)")
    tok.add_argument("--max-new-tokens", type=int, default=512, help="budget of the tuned model's greedy answers")
    tok.add_argument("--batch-size", type=int, default=8, help="prompts per generation batch")
    tok.add_argument("--chunk", type=int, default=256, help="answer positions per log-softmax chunk (memory)")
    tok.add_argument(
        "--direction",
        choices=("reverse", "forward", "both"),
        default="reverse",
        help="reverse: KL(tuned‖base) on the tuned model's answers (the paper's); forward: KL(base‖tuned) on the "
        "base's answers",
    )
    tok.set_defaults(run=run_tokens)
    w = kinds.add_parser("weights", help="share of weights unchanged, relative update norm and rank, per tensor")
    _models(w)
    w.add_argument(
        "--rank-limit", type=int, default=2**22, help="skip the SVD of matrices above N elements (0: no limit)"
    )
    w.add_argument("--device", help="where the SVDs run: cpu (default), cuda, ... (a GPU for a large model's ranks)")
    w.add_argument("--out", type=Path, help="write weights.json here")
    w.add_argument("--json", action="store_true", help="print the result as JSON")
    w.set_defaults(run=run_weights)


def _models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, help="the base model: hub id, local directory, lab or lab:quick")
    p.add_argument("--tuned", required=True, help="the tuned model (the same choices)")


def _common(p: argparse.ArgumentParser) -> None:
    _models(p)
    add_benchmark_args(p)
    p.add_argument("--out", type=Path, help="write the JSON (and plots) here")
    p.add_argument("--dtype", choices=DTYPES, default="auto", help="weights' dtype (bf16 leaves the floor unmeasured)")
    add_placement_args(p)
    p.add_argument("--no-noise-floor", action="store_true", help="skip the base vs bf16-rounded-base null pair")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="replicates for the CIs (0: none)")
    p.add_argument("--confidence", type=float, default=0.95, help="CI level")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per benchmark")


def _settings(cls, args, **extra):
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.benchmarks.registry import resolve
    from rtransfer.errors import DataError
    from rtransfer.lab.build import resolve_model

    if not 0 < args.confidence < 1:
        raise DataError(f"--confidence must be between 0 and 1, not {args.confidence}")
    return cls(
        base=resolve_model(args.base),  # "lab", "lab:quick": the lab base's directory
        tuned=resolve_model(args.tuned),
        benchmarks=resolve(args.benchmarks, args.suite),
        data_dir=args.data_dir,
        samples=args.samples,
        dtype=args.dtype,
        device=args.device,
        device_map=args.device_map,
        noise_floor=not args.no_noise_floor,
        seed=args.seed,
        bootstrap=max(0, args.bootstrap),
        confidence=args.confidence,
        batch_size=args.batch_size,
        **extra,
    )


def run_latent(args) -> int:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.probes.pipeline import LatentSettings
    from rtransfer.probes.pipeline import run_latent as latent

    result = latent(_settings(LatentSettings, args, pooling=args.pooling, max_length=args.max_length), args.out)
    _emit(result, args, "latent", ["benchmark", "d", "d_ci", "d_null", "d_split", "cka_min", "n"])
    return 0


def run_tokens(args) -> int:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.probes.pipeline import TokenSettings
    from rtransfer.probes.pipeline import run_tokens as tokens

    extra = {"responses": args.responses, "max_new_tokens": args.max_new_tokens, "chunk": args.chunk}
    result = tokens(_settings(TokenSettings, args, direction=args.direction, **extra))
    columns = ["benchmark", "kl_exact", "kl_exact_ci", "kl_null", "kl_sampled", "mean_rank_shift", "shifted"]
    _emit(result, args, "tokens", columns)
    return 0


def run_weights(args) -> int:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.lab.build import resolve_model
    from rtransfer.probes.pipeline import write_result
    from rtransfer.probes.weights import weight_drift

    base, tuned = resolve_model(args.base), resolve_model(args.tuned)
    result = {"base": base, "tuned": tuned, **weight_drift(base, tuned, rank_limit=args.rank_limit, device=args.device)}
    if args.out:
        write_result(result, args.out, "weights")
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    total = result["total"]
    print(
        f"unchanged {100 * total['unchanged_share']:.2f} % exactly, {100 * total['unchanged_bf16_share']:.2f} % "
        f"within bf16 rounding; relative update norm {total['relative_norm']:.4g} ({total['tensors']} tensors)"
    )
    if result["ranks_skipped"]:
        print(f"ranks not computed for {result['ranks_skipped']} matrices above {result['rank_limit']} elements")
    if result["dtype_note"]:
        print(result["dtype_note"])
    for layer in result["layers"]:
        print(
            f"  layer {layer['layer']:>5}: unchanged {100 * layer['unchanged_share']:6.2f} % "
            f"(bf16 {100 * layer['unchanged_bf16_share']:6.2f} %), relative norm {layer['relative_norm']:.4g}"
        )
    return 0


def _emit(result: dict, args, probe: str, columns: list[str]) -> None:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.probes.pipeline import write_result

    rows = result["rows"]
    if args.out:
        write_result(result, args.out, probe)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    # Forward-KL figures (probe tokens --direction forward|both) get rows of their own in the table.
    rows = [
        *[r for r in rows if "kl_exact" in r or probe != "tokens"],
        *[{"benchmark": f"{r['benchmark']} (fwd)", **r["forward"]} for r in rows if "forward" in r],
    ]

    def cell(c) -> str:
        if c is None:  # not measured (a noise floor in bfloat16), or no CI asked for
            return f"{'—':>16}"
        if isinstance(c, float):
            return f"{c:>16.4g}"
        if isinstance(c, list) and len(c) == 2 and all(isinstance(v, float) for v in c):
            return f"{f'[{c[0]:.3g}, {c[1]:.3g}]':>16}"
        return f"{c!s:>16}"

    print("  ".join(f"{c:>16}" for c in columns))
    for r in rows:
        flat = {**r, **r.get("noise_floor", {}), "cka_min": min(r["cka"]) if "cka" in r else None}
        print("  ".join(cell(flat.get(c)) for c in columns))
    for g in result["groups"]:
        label = f"{g['group']} mean" + (f" ({g['direction']})" if "direction" in g else "")
        values = {c: g.get(c) for c in columns if c != "benchmark"}
        print("  ".join([f"{label:>16}", *(cell(v) for v in values.values())]))
    compute = result["manifest"]["compute"]
    loaded = compute["loaded"]
    print(f"computed in {compute['compute']} (loaded: base {loaded['base']}, tuned {loaded['tuned']})")
    floors = [r.get("noise_floor") for r in rows if r.get("noise_floor")]
    if floors:
        print(f"noise floor: {floors[0]['note']}")
