"""The probe stages as library calls (`run_latent`, `run_tokens`, `run_weights`), which `rtransfer probe` and the
study share: texts or prompts from the benchmarks, the models, the measures with their noise floors and bootstrap
CIs, per-benchmark rows and per-group summaries, and a result file with a manifest.

Both models run in one compute dtype (`models.load_pair`), recorded in the manifest as `compute` with the dtypes
they loaded in and where they were placed. The noise floor is the base against its bf16-rounded copy; where that
copy is the base itself (bf16 compute) the floor is not measured, and the row says so (`measured: false`, a null
value and the reason) rather than claiming a 0.

CIs are percentile intervals over `bootstrap` replicates: latent d resamples the texts (paired: the same texts for
both models) and refits the base's PCA on each replicate; the token measures resample the prompts. A group's
figure is the mean over its probed benchmarks, each benchmark resampled independently within a replicate.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtransfer.benchmarks.names import GROUPS, group_of
from rtransfer.benchmarks.registry import get_task
from rtransfer.errors import DataError
from rtransfer.probes.latent import d_replicates, pca_shift, plot_latent, pooled_states, split_half_d
from rtransfer.probes.models import load_pair, rounded_copy, same_vocabulary
from rtransfer.probes.tokens import CI_FIELDS, answer_ids, greedy_answers, score_answer, summarize, summary_replicates
from rtransfer.records import now
from rtransfer.runs import RunDir, fingerprint, versions
from rtransfer.transfer import percentile_interval

DIRECTIONS = ("reverse", "forward", "both")


@dataclass
class ProbeSettings:
    base: str
    tuned: str
    benchmarks: list[str]
    data_dir: Path | None = None
    samples: int = 100  # the first N documents per benchmark
    dtype: str = "auto"
    device: str | None = None
    device_map: str | None = None
    thinking: bool | None = None  # the chat template's enable_thinking for both models (None: its default)
    noise_floor: bool = True
    seed: int = 0
    bootstrap: int = 1000  # replicates for the CIs (0: none)
    confidence: float = 0.95


@dataclass
class LatentSettings(ProbeSettings):
    pooling: str = "mean"
    max_length: int | None = None
    batch_size: int = 8


@dataclass
class TokenSettings(ProbeSettings):
    responses: Path | None = None  # answers from a run directory's records instead of generating
    max_new_tokens: int = 512
    batch_size: int = 8
    chunk: int = 256
    # reverse: KL(tuned‖base) on the tuned model's answers (the paper's); forward: KL(base‖tuned) on the base's
    # answers; both.
    direction: str = "reverse"


def percentile_ci(values: np.ndarray, confidence: float) -> list[float] | None:
    """transfer.percentile_interval, as the list a result file holds."""
    ci = percentile_interval(values, confidence)
    return list(ci) if ci else None


def manifest(settings: ProbeSettings, probe: str) -> dict[str, Any]:

    models = {}
    for role in ("base", "tuned"):
        name = getattr(settings, role)
        models[role] = {"model": name, "fingerprint": fingerprint(name) if Path(name).exists() else None}
    settings_dict = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()}
    return {
        "probe": probe,
        "models": models,
        "settings": settings_dict,
        "versions": versions(),
        "created": now(),
    }


def write_result(result: dict[str, Any], out: Path, probe: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{probe}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return path


def tasks_of(settings: ProbeSettings) -> dict[str, Any]:

    if settings.samples < 1:
        raise DataError(f"--samples must be at least 1, not {settings.samples}")
    return {n: get_task(n) for n in settings.benchmarks}


def messages_of(task, doc) -> list[dict[str, str]]:
    if task.kind == "generate":
        return task.prompt(doc)
    return task.choices(doc)[0]  # a log-likelihood task: its context is the prompt


def user_text(messages: list[dict[str, str]]) -> str:
    """The raw benchmark text of a prompt: its (last) user message, without system prompt or template."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else messages[-1]["content"]


def engines_of(settings: ProbeSettings):
    """The base's and the tuned model's engines in one compute dtype, and the record of dtypes and placement."""
    return load_pair(
        settings.base,
        settings.tuned,
        dtype=settings.dtype,
        device=settings.device,
        device_map=settings.device_map,
        thinking=settings.thinking,
    )


def _floor_twin(base_model: Any, wanted: bool) -> tuple[Any | None, dict[str, Any] | None]:
    """The noise floor's rounded copy of the base, and the fields every row's floor starts from: whether it is
    measured and what it measures (or why not). (None, None) when the floor is not asked for."""
    if not wanted:
        return None, None
    twin, note = rounded_copy(base_model)
    return twin, {"measured": twin is not None, "note": note}


def group_summaries(
    rows: list[dict[str, Any]], replicates: dict[str, dict[str, np.ndarray]], fields: tuple[str, ...], confidence
) -> list[dict[str, Any]]:
    """Per group (the paper's Table 2/6 shape): the mean of each field over the group's probed benchmarks, with
    the CI of that mean from the benchmarks' replicates (replicate r of every benchmark averaged)."""
    out = []
    for group in GROUPS:
        members = [r["benchmark"] for r in rows if group_of(r["benchmark"].partition(":")[0]) == group]
        if not members:
            continue
        by_name = {r["benchmark"]: r for r in rows}
        summary: dict[str, Any] = {"group": group, "benchmarks": members}
        for f in fields:
            summary[f] = float(np.mean([by_name[b][f] for b in members]))
            if all(b in replicates and f in replicates[b] for b in members):
                summary[f"{f}_ci"] = percentile_ci(np.mean([replicates[b][f] for b in members], axis=0), confidence)
        out.append(summary)
    return out


# --- latent ------------------------------------------------------------------------------------------------
def run_latent(settings: LatentSettings, plots: Path | None = None) -> dict[str, Any]:

    texts = {
        name: [
            user_text(messages_of(task, doc)) for doc in task.load(settings.data_dir, settings.seed)[: settings.samples]
        ]
        for name, task in tasks_of(settings).items()
    }  # data first: fail on a missing file before loading a model
    base, tuned, compute = engines_of(settings)
    opts = {"pooling": settings.pooling, "max_length": settings.max_length, "batch_size": settings.batch_size}
    base_states = {n: pooled_states(base.model, base.tokenizer, t, **opts) for n, t in texts.items()}
    tuned_states = {n: pooled_states(tuned.model, tuned.tokenizer, t, **opts) for n, t in texts.items()}
    del tuned  # at most two models in memory: the null copy replaces the tuned one
    twin, floor = _floor_twin(base.model, settings.noise_floor)
    null_states = {n: pooled_states(twin, base.tokenizer, t, **opts) for n, t in texts.items()} if twin else {}
    del twin
    rows, replicates = [], {}
    for name in texts:
        result = pca_shift(base_states[name], tuned_states[name])
        row: dict[str, Any] = {"benchmark": name, "base": settings.base, "tuned": settings.tuned, **opts, **result}
        if settings.bootstrap:
            replicates[name] = {
                "d": d_replicates(base_states[name], tuned_states[name], settings.bootstrap, settings.seed)
            }
            row["d_ci"] = percentile_ci(replicates[name]["d"], settings.confidence)
        if floor:
            null = pca_shift(base_states[name], null_states[name]) if name in null_states else {}
            row["noise_floor"] = {
                **floor,
                "d_null": null.get("d"),  # None: not measured (floor["note"] says why), never an unmeasured 0
                "cka_null": null.get("cka"),
                "d_split": split_half_d(base_states[name]),  # the texts' spread: measured in any dtype
            }
        rows.append(row)
        if plots:
            plots.mkdir(parents=True, exist_ok=True)
            plot_latent(result, str(plots / f"latent_{name}.png"), title=name)
    groups = group_summaries(rows, replicates, ("d",), settings.confidence)
    return {"manifest": {**manifest(settings, "latent"), "compute": compute}, "rows": rows, "groups": groups}


# --- tokens ------------------------------------------------------------------------------------------------
def run_tokens(settings: TokenSettings) -> dict[str, Any]:

    if settings.direction not in DIRECTIONS:
        raise DataError(f"unknown direction {settings.direction!r} (choose from {', '.join(DIRECTIONS)})")
    if settings.responses and settings.direction != "reverse":
        raise DataError("--responses gives the tuned model's answers: only --direction reverse scores them")
    directions = ("reverse", "forward") if settings.direction == "both" else (settings.direction,)
    prompts = {}
    for name, task in tasks_of(settings).items():
        docs = task.load(settings.data_dir, settings.seed)
        prompts[name] = [(d.id, messages_of(task, d)) for d in docs[: settings.samples]]
        if settings.responses:
            prompts[name] = responses_of(settings.responses, name, docs, task, settings.samples)
    base, tuned, compute = engines_of(settings)
    same_vocabulary(base.tokenizer, tuned.tokenizer)
    # Reverse: KL(tuned‖base) on the tuned model's answers. Forward: KL(base‖tuned) on the base's answers, which
    # later work found to predict forgetting better. Both render the prompt with the tuned model's template.
    rendered = {name: [tuned.render(e[1]) for e in entries] for name, entries in prompts.items()}
    items: dict[tuple[str, str], list[tuple[list[int], list[int]]]] = {}
    for direction in directions:
        writer = tuned if direction == "reverse" else base
        for name, entries in prompts.items():
            if settings.responses:
                pairs = [answer_ids(tuned, r, e[2]) for r, e in zip(rendered[name], entries, strict=True)]
            else:
                answers = greedy_answers(writer, rendered[name], settings.max_new_tokens, settings.batch_size)
                pairs = [(tuned.encode(r), a) for r, a in zip(rendered[name], answers, strict=True)]
            if not any(a for _, a in pairs):
                raise DataError(f"{name}: every {direction} answer is empty; nothing to score")
            items[direction, name] = pairs

    def measure(tuned_model, base_model) -> dict:
        """KL(tuned‖base), ranks under the base, on the tuned model's answers (reverse); the other way round on the
        base's answers (forward)."""
        out = {}
        for (direction, name), pairs in items.items():
            p, q = (tuned_model, base_model) if direction == "reverse" else (base_model, tuned_model)
            out[direction, name] = [score_answer(p, q, prompt, answer, settings.chunk) for prompt, answer in pairs]
        return out

    scores = measure(tuned.model, base.model)
    tokenizer = tuned.tokenizer  # kept for decoding; the tuned weights are freed
    del tuned
    twin, floor = _floor_twin(base.model, settings.noise_floor)
    null = measure(twin, base.model) if twin else {}
    del twin

    def decode(t: int) -> str:
        return tokenizer.decode([t])

    rows, replicates = [], {}
    for name in prompts:
        row: dict[str, Any] = {"benchmark": name, "base": settings.base, "tuned": settings.tuned}
        for direction in directions:
            key = (direction, name)
            summary = summarize(scores[key], decode)
            summary["answers_from"] = (
                str(settings.responses)
                if settings.responses
                else f"{'tuned' if direction == 'reverse' else 'base'} model, greedy"
            )
            if settings.bootstrap:
                reps = summary_replicates(scores[key], settings.bootstrap, settings.seed)
                replicates.setdefault(name, {}).update({f"{direction}:{f}": v for f, v in reps.items()})
                summary.update({f"{f}_ci": percentile_ci(v, settings.confidence) for f, v in reps.items()})
            if floor:
                s = summarize(null[key], decode) if key in null else {}
                # None: not measured (floor["note"] says why), never an unmeasured 0
                summary["noise_floor"] = {**floor, "kl_null": s.get("kl_exact"), "kl_sampled_null": s.get("kl_sampled")}
            if direction == "reverse":  # today's fields stay at the top level
                row.update(summary)
            else:
                row["forward"] = summary
        rows.append(row)
    groups = []
    for direction in directions:
        flat = [
            {
                "benchmark": r["benchmark"],
                **{f"{direction}:{f}": (r if direction == "reverse" else r["forward"])[f] for f in CI_FIELDS},
            }
            for r in rows
        ]
        for g in group_summaries(flat, replicates, tuple(f"{direction}:{f}" for f in CI_FIELDS), settings.confidence):
            groups.append({"direction": direction, **{k.removeprefix(f"{direction}:"): v for k, v in g.items()}})
    return {"manifest": {**manifest(settings, "tokens"), "compute": compute}, "rows": rows, "groups": groups}


def responses_of(run_dir: Path, name: str, docs, task, n: int) -> list[tuple[str, Any, str]]:
    """(doc id, prompt messages, answer) from a run directory's records: sample 0 (the lowest) of each doc,
    in the benchmark's document order, the first n docs that have one."""

    records = {}
    for r in sorted(RunDir(run_dir).records(name), key=lambda r: r.sample):
        if r.response is not None:
            records.setdefault(r.doc_id, r)
    out = []
    for d in docs:
        if d.id in records:
            r = records[d.id]
            messages = r.prompt if isinstance(r.prompt, list) else messages_of(task, d)
            out.append((d.id, messages, r.response))
            if len(out) == n:
                break
    if not out:
        raise DataError(f"{run_dir}: no responses for {name}")
    return out
