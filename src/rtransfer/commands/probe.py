"""`rtransfer probe`: how far a tuned model drifted from its base — latent PCA shift and CKA (`probe latent`),
token KL, rank shift and shifted tokens (`probe tokens`). Each result carries a noise floor: the same measure
for the base against its own bf16-rounded copy (see docs/probes.md)."""

import argparse
import json
from pathlib import Path
from typing import Any

from rtransfer.commands import add_benchmark_args, add_placement_args

EPILOG = """examples:
  rtransfer probe latent --base Qwen/Qwen3-14B-Base --tuned ./sft --benchmarks math500,coqa \
      --data-dir ../shared/benchmarks --out probes/sft
  rtransfer probe latent --base B --tuned T --suite lab --pooling paper --json
  rtransfer probe tokens --base B --tuned T --suite lab --samples 50 --out probes/t
  rtransfer probe tokens --base B --tuned T --benchmarks math500 --responses runs/sft --data-dir ../shared/benchmarks"""

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
    tok.set_defaults(run=run_tokens)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, help="the base model (hub id or local directory)")
    p.add_argument("--tuned", required=True, help="the tuned model")
    add_benchmark_args(p)
    p.add_argument("--out", type=Path, help="write the JSON (and plots) here")
    p.add_argument("--dtype", choices=DTYPES, default="auto", help="weights' dtype (fp32 gives a meaningful floor)")
    add_placement_args(p)
    p.add_argument("--no-noise-floor", action="store_true", help="skip the base vs bf16-rounded-base null pair")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per benchmark")


def _tasks(args) -> dict[str, Any]:
    from rtransfer.benchmarks.registry import get_task, resolve
    from rtransfer.errors import DataError

    if args.samples < 1:
        raise DataError(f"--samples must be at least 1, not {args.samples}")
    names = resolve(args.benchmarks, args.suite)
    return {n: get_task(n) for n in names}


def _messages(task, doc) -> list[dict[str, str]]:
    try:
        return task.prompt(doc)
    except NotImplementedError:  # a log-likelihood task: its context is the prompt
        return task.choices(doc)[0]


def _user_text(messages: list[dict[str, str]]) -> str:
    """The raw benchmark text of a prompt: its (last) user message, without system prompt or template."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else messages[-1]["content"]


def _engines(args):
    from rtransfer.probes.models import load_engine

    kwargs = {"dtype": args.dtype, "device": args.device, "device_map": args.device_map}
    return load_engine(args.base, **kwargs), load_engine(args.tuned, **kwargs)


# --- latent ------------------------------------------------------------------------------------------------
def run_latent(args) -> int:
    from rtransfer.probes.latent import pca_shift, plot_latent, pooled_states, split_half_d
    from rtransfer.probes.models import rounded_copy

    texts = {
        name: [_user_text(_messages(task, doc)) for doc in task.load(args.data_dir, args.seed)[: args.samples]]
        for name, task in _tasks(args).items()
    }  # data first: fail on a missing file before loading a model
    base, tuned = _engines(args)
    opts = {"pooling": args.pooling, "max_length": args.max_length, "batch_size": args.batch_size}
    base_states = {n: pooled_states(base.model, base.tokenizer, t, **opts) for n, t in texts.items()}
    tuned_states = {n: pooled_states(tuned.model, tuned.tokenizer, t, **opts) for n, t in texts.items()}
    del tuned  # at most two models in memory: the null copy replaces the tuned one
    null_states, note = {}, None
    if not args.no_noise_floor:
        twin, note = rounded_copy(base.model)
        null_states = {n: pooled_states(twin, base.tokenizer, t, **opts) for n, t in texts.items()}
        del twin
    rows = []
    for name in texts:
        result = pca_shift(base_states[name], tuned_states[name])
        row: dict[str, Any] = {"benchmark": name, "base": args.base, "tuned": args.tuned, **opts, **result}
        if name in null_states:
            null = pca_shift(base_states[name], null_states[name])
            row["noise_floor"] = {
                "d_null": null["d"],
                "cka_null": null["cka"],
                "d_split": split_half_d(base_states[name]),
                "note": note,
            }
        rows.append(row)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            plot_latent(result, str(args.out / f"latent_{name}.png"), title=name)
    _emit(rows, args, "latent", ["benchmark", "d", "d_null", "d_split", "cka_min", "n"])
    return 0


# --- tokens ------------------------------------------------------------------------------------------------
def run_tokens(args) -> int:
    from rtransfer.errors import DataError
    from rtransfer.probes.models import rounded_copy, same_vocabulary
    from rtransfer.probes.tokens import answer_ids, greedy_answers, score_answer, summarize

    prompts = {}
    for name, task in _tasks(args).items():
        docs = task.load(args.data_dir, args.seed)
        prompts[name] = [(d.id, _messages(task, d)) for d in docs[: args.samples]]
        if args.responses:
            prompts[name] = _with_responses(args.responses, name, docs, task, args.samples)
    base, tuned = _engines(args)
    same_vocabulary(base.tokenizer, tuned.tokenizer)
    items: dict[str, list[tuple[list[int], list[int]]]] = {}
    for name, entries in prompts.items():
        # The same chat-rendered prompt (the tuned model's template) for both models.
        rendered = [tuned.render(e[1]) for e in entries]
        if args.responses:
            items[name] = [answer_ids(tuned, r, e[2]) for r, e in zip(rendered, entries, strict=True)]
        else:
            answers = greedy_answers(tuned, rendered, args.max_new_tokens, args.batch_size)
            items[name] = [(tuned.encode(r), a) for r, a in zip(rendered, answers, strict=True)]
        if not any(a for _, a in items[name]):
            raise DataError(f"{name}: every answer is empty; nothing to score")
    scores = {n: [score_answer(tuned.model, base.model, p, a, args.chunk) for p, a in v] for n, v in items.items()}
    tokenizer = tuned.tokenizer  # kept for decoding; the tuned weights are freed
    del tuned
    null, note = {}, None
    if not args.no_noise_floor:
        twin, note = rounded_copy(base.model)
        null = {n: [score_answer(twin, base.model, p, a, args.chunk) for p, a in v] for n, v in items.items()}
        del twin

    def decode(t: int) -> str:
        return tokenizer.decode([t])

    rows = []
    for name in items:
        row: dict[str, Any] = {
            "benchmark": name,
            "base": args.base,
            "tuned": args.tuned,
            "answers_from": str(args.responses) if args.responses else "tuned model, greedy",
            **summarize(scores[name], decode),
        }
        if name in null:
            s = summarize(null[name], decode)
            row["noise_floor"] = {"kl_null": s["kl_exact"], "kl_sampled_null": s["kl_sampled"], "note": note}
        rows.append(row)
    _emit(rows, args, "tokens", ["benchmark", "kl_exact", "kl_null", "kl_sampled", "mean_rank_shift", "shifted"])
    return 0


def _with_responses(run_dir: Path, name: str, docs, task, n: int) -> list[tuple[str, Any, str]]:
    """(doc id, prompt messages, answer) from a run directory's records: sample 0 (the lowest) of each doc,
    in the benchmark's document order, the first n docs that have one."""
    from rtransfer.errors import DataError
    from rtransfer.runs import RunDir

    records = {}
    for r in sorted(RunDir(run_dir).records(name), key=lambda r: r.sample):
        if r.response is not None:
            records.setdefault(r.doc_id, r)
    out = []
    for d in docs:
        if d.id in records:
            r = records[d.id]
            messages = r.prompt if isinstance(r.prompt, list) else _messages(task, d)
            out.append((d.id, messages, r.response))
            if len(out) == n:
                break
    if not out:
        raise DataError(f"{run_dir}: no responses for {name}")
    return out


def _emit(rows: list[dict], args, probe: str, columns: list[str]) -> None:
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{probe}.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    print("  ".join(f"{c:>16}" for c in columns))
    for r in rows:
        flat = {**r, **r.get("noise_floor", {}), "cka_min": min(r["cka"]) if "cka" in r else None}
        cells = [flat.get(c) for c in columns]
        print("  ".join(f"{c:>16.4g}" if isinstance(c, float) else f"{c!s:>16}" for c in cells))
