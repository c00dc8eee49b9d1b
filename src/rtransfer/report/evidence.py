"""The report's evidence sections: training curves, latent and token probes, example answers, the manifest."""

import json

import numpy as np

from rtransfer.benchmarks.names import GROUPS, display, group_of
from rtransfer.report import plots
from rtransfer.report.collect import ReportData
from rtransfer.report.document import Block, Code, Details, Figure, Section, Table, Text
from rtransfer.report.tables import fmt, fmt_sig, fmt_sig_ci
from rtransfer.runs import RunDir

CHAT_THINKING = {True: "on", False: "off", None: "default"}
EXAMPLES_PER_BENCHMARK = 2
ANSWER_CHARS = 700  # longer answers are cut, and say so


def training(data: ReportData, results=None) -> Section:
    if not data.logs:
        return Section("training", "Training curves", [Text("No training logs: this study trained no model.")])
    caption = (
        "log.jsonl per tuned model against the optimiser step. One training run per model and seed, so the curves "
        "have no CI: the seeds' curves side by side show the spread. The band around the mean reward is ± its "
        "standard deviation over the step's rollouts (the spread of rewards, not an uncertainty of the mean)."
    )
    blocks = []
    png = plots.training_curves(data.logs)
    if png:
        blocks.append(Figure("training", png, caption, "training curves"))
    rows = []
    for model, log in data.logs.items():
        info = data.training.get(model) or {}
        first, last = log[0], log[-1]
        rows.append(
            [
                model,
                data.models[model].method,
                str(info.get("steps", last["step"])),
                fmt(info.get("seconds")),
                fmt_sig(first.get("loss")),
                fmt_sig(last.get("loss")),
                fmt_sig(last.get("reward_mean")),
                fmt(last.get("completion_length")),
            ]
        )
    header = ["model", "method", "steps", "seconds", "first loss", "last loss", "last reward", "last length (tokens)"]
    blocks.append(Table("training", header, rows, "First and last logged values; seconds from train.json."))
    return Section("training", "Training curves", blocks)


def latent(data: ReportData, results=None) -> Section:
    probed = {m: p["latent"] for m, p in data.probes.items() if "latent" in p}
    if not probed:
        return Section("latent", "Latent PCA shift", [Text("No latent probe was run in this study.")])
    blocks: list[Block] = []
    rows = []
    for model, result in probed.items():
        caption = (
            f"{model} vs its base: per layer, the mean of the texts' pooled hidden states projected on the base's "
            "first two principal axes (the base sits at shift 0). d: distance between the two centroids over "
            "layers, with its bootstrap CI over texts (PCA refit per replicate); noise floor: d of the base against "
            "its own bf16-rounded copy."
        )
        blocks.append(Figure(f"latent_{model}", plots.pca_panels(result["rows"]), caption, f"PCA shift of {model}"))
        for r in result["rows"]:
            floor = r.get("noise_floor") or {}
            cka = r.get("cka") or []
            rows.append(
                [
                    model,
                    r["benchmark"],
                    fmt_sig(r["d"]),
                    fmt_sig_ci(r.get("d_ci")),
                    _floor(floor, "d_null"),
                    fmt_sig(floor.get("d_split")),
                    fmt(sum(cka) / len(cka), 4) if cka else "—",
                    str(r.get("n", "")),
                ]
            )
        for g in result.get("groups", []):
            rows.append([model, f"{g['group']} (mean)", fmt_sig(g["d"]), fmt_sig_ci(g.get("d_ci")), "", "", "", ""])
    header = ["model", "benchmark", "d", "d CI", "noise floor d", "split-half d", "mean CKA", "texts"]
    caption = (
        "d with its bootstrap CI; noise floor d: base vs its bf16-rounded copy, measured where the models compute in "
        "float32 or float16 ('not measured' in bfloat16, which is its own rounding); split-half d: base on one half "
        "of the texts vs the other half (how far d moves from the texts alone). Units: hidden-state units."
    )
    blocks.append(Table("latent", header, rows, caption))
    summary = f"Per-benchmark panels and table: {len(probed)} probed model(s), {len(rows)} rows"
    return Section("latent", "Latent PCA shift", [*latent_summary(probed), Details(summary, blocks)])


def latent_groups(model: str, result: dict) -> list[dict]:
    """The latent probe's own per-group summary (`groups`: d is the mean of the group's per-benchmark d, its CI the
    percentile CI of that mean over replicates in which every benchmark is resampled, probes.pipeline.
    group_summaries), with the group's noise floor d and split-half d taken the same way: the mean over the same
    benchmarks. A floor is one measurement, so it has no CI; None where a benchmark's floor was not measured."""
    by_name = {r["benchmark"]: r for r in result["rows"]}
    out = []
    for g in result.get("groups", []):
        members = [by_name[b] for b in g["benchmarks"]]
        floors = {k: _mean([(r.get("noise_floor") or {}).get(k) for r in members]) for k in ("d_null", "d_split")}
        out.append(
            {"model": model, "group": g["group"], "benchmarks": g["benchmarks"], "d": g["d"], "d_ci": g.get("d_ci")}
            | {"floor": floors["d_null"], "split": floors["d_split"]}
        )
    return out


def _mean(values: list) -> float | None:
    return None if not values or None in values else float(np.mean(values))


def _number(x) -> str:
    return "" if x is None else repr(float(x))


def latent_summary(probed: dict[str, dict]) -> list[Block]:
    """One figure before the per-benchmark panels: d per group per probed model with its CI and the floors; its
    data in tables/latent_summary.csv."""
    groups = [g for model, result in probed.items() for g in latent_groups(model, result)]
    if not groups:
        return [Text("The latent results carry no per-group summary (written by an older rtransfer).")]
    rows = [
        [g["model"], g["group"], " ".join(g["benchmarks"]), _number(g["d"])]
        + [_number(b) for b in (g["d_ci"] or (None, None))]
        + [_number(g["floor"]), _number(g["split"])]
        for g in groups
    ]
    header = ["model", "group", "benchmarks", "d", "d CI low", "d CI high", "noise floor d", "split-half d"]
    table = Table("latent_summary", header, rows, "The numbers the latent summary figure draws.")
    caption = (
        "Latent shift d of each probed model per group: the mean of d over the group's probed benchmarks, with the "
        "probe's bootstrap CI of that mean over texts (every benchmark resampled in each replicate). Black tick: the "
        "noise floor d (base vs its bf16-rounded copy), grey dashed tick: split-half d (base on one half of the texts "
        "vs the other), each the mean over the same benchmarks, without a CI; no tick where not measured (bfloat16 "
        "compute). Read a small d against them, not against 0: d is a distance."
    )
    return [Figure("latent_summary", plots.latent_summary(groups), caption, "latent d per group", table)]


def _floor(floor: dict, name: str) -> str:
    """A noise-floor cell: its value, or 'not measured' (a bf16 model is its own bf16 rounding: no floor to
    measure, and 0 would claim one)."""
    return "not measured" if floor.get("measured") is False else fmt_sig(floor.get(name))


def tokens(data: ReportData, results=None) -> Section:
    probed = {m: p["tokens"] for m, p in data.probes.items() if "tokens" in p}
    if not probed:
        return Section("tokens", "Token KL and rank shift", [Text("No token probe was run in this study.")])
    blocks, rows, shifted = [], [], []
    for model, result in probed.items():
        caption = (
            f"{model} on its own greedy answers, scored by both models: exact KL(tuned‖base) per token, mean rank "
            "of the answer token under the base minus 1, share of positions the base ranks worse than 3; error bars: "
            "bootstrap CIs over prompts; black tick: the noise floor (base vs its bf16-rounded copy)."
        )
        blocks.append(Figure(f"tokens_{model}", plots.token_bars(result["rows"]), caption, f"token drift of {model}"))
        for r in result["rows"]:
            floor = _floor(r.get("noise_floor") or {}, "kl_null")
            rows.append(
                [
                    model,
                    r["benchmark"],
                    fmt_sig(r["kl_exact"]),
                    fmt_sig_ci(r.get("kl_exact_ci")),
                    floor,
                    fmt_sig(r["kl_sampled"]),
                    fmt_sig_ci(r.get("kl_sampled_ci")),
                    fmt_sig(r["mean_rank_shift"]),
                    fmt_sig_ci(r.get("mean_rank_shift_ci")),
                    fmt(100 * r["shifted"]),
                    fmt_sig_ci([100 * v for v in r["shifted_ci"]]) if r.get("shifted_ci") else "",
                ]
            )
            top = ", ".join(f"{tok!r}×{n}" for tok, n in r.get("top_shifted_tokens", [])[:12])
            shifted.append([model, r["benchmark"], str(r.get("positions", "")), top or "none shifted (rank > 3)"])
    header = ["model", "benchmark", "KL", "KL CI", "noise floor KL", "sampled |log ratio|", "CI", "mean rank shift"]
    header += ["CI", "shifted %", "shifted CI"]
    caption = (
        "KL in nats per token; 'sampled |log ratio|' is the authors' estimator (labelled as such); rank shift in "
        "ranks; shifted: % of answer positions with base rank > 3. CIs: bootstrap over prompts. Noise floor: "
        "'not measured' where the models compute in bfloat16."
    )
    blocks.append(Table("tokens", header, rows, caption))
    blocks.append(
        Table(
            "shifted_tokens",
            ["model", "benchmark", "positions", "most often shifted tokens (count)"],
            shifted,
            "The answer tokens most often at base rank > 3 (counts are over all answer positions; no CI).",
        )
    )
    summary = f"Per-benchmark panels and tables: {len(probed)} probed model(s), {len(rows)} rows"
    return Section("tokens", "Token KL and rank shift", [Details(summary, blocks)])


def _prompt_text(prompt) -> str:
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return users[-1] if users else json.dumps(prompt, ensure_ascii=False)
    return str(prompt)


def _answer(record) -> str:
    text = record.response if record.response is not None else f"(log-likelihood choice) {record.extracted!r}"
    if len(text) > ANSWER_CHARS:
        text = text[:ANSWER_CHARS] + f" … [{len(text) - ANSWER_CHARS} more characters cut]"
    return text


def examples(data: ReportData, results=None) -> Section:
    models = [m for m in data.models.values() if m.run_dir and m.run_dir.exists()]
    if not models:
        return Section("examples", "Example answers", [Text("No run directories: no records to show.")])
    benchmarks = sorted({s["benchmark"] for s in data.scores}, key=lambda b: (GROUPS.index(group_of(b)), b))
    blocks = [
        Text(
            f"The first {EXAMPLES_PER_BENCHMARK} documents per benchmark that every model answered (sample 0), base "
            "first; grade 1 = correct. Single answers illustrate, they do not measure: the tables above do."
        )
    ]
    for bench in benchmarks:
        records = {m.name: _by_doc(RunDir(m.run_dir), bench) for m in models}
        shared = [d for d in records[models[0].name] if all(d in r for r in records.values())]
        for doc in shared[:EXAMPLES_PER_BENCHMARK]:
            first = records[models[0].name][doc]
            gold = (first.grading or {}).get("gold")
            blocks.append(
                Code(
                    _prompt_text(first.prompt),
                    f"{display(bench)} · {doc} · prompt" + (f" (gold: {gold})" if gold else ""),
                )
            )
            for m in models:
                r = records[m.name][doc]
                blocks.append(Code(_answer(r), f"{m.label} — grade {fmt(r.grade, 2)}"))
    prompts = sum(isinstance(b, Code) for b in blocks) // (1 + len(models))  # a prompt and each model's answer
    summary = f"{prompts} prompts from {len(benchmarks)} benchmarks, with each model's answer"
    return Section("examples", "Example answers", [blocks[0], Details(summary, blocks[1:])])


def _by_doc(run: RunDir, bench: str) -> dict:
    out = {}
    for r in run.records(bench):
        if r.sample == 0:
            out.setdefault(r.doc_id, r)
    return out


def manifest(data: ReportData, results=None) -> Section:
    m = data.manifest
    blocks = []
    if "runs" in m:
        rows = [
            [
                name,
                str(data.models[name].run_dir),
                str(r.get("model")),
                json.dumps(r.get("sampling") or {}),
                str(r.get("seed")),
                str(r.get("rtransfer_version")),
                str(r.get("created")),
            ]
            for name, r in m["runs"].items()
        ]
        header = ["model", "run dir", "model path or id", "sampling", "seed", "rtransfer", "created"]
        return Section("manifest", "Manifest", [Table("runs", header, rows, "The run directories' manifests.")])
    rows = [
        [
            name,
            e.ref.role,
            e.arm,
            e.method,
            e.ref.teacher_traces or "",
            CHAT_THINKING[e.ref.chat_thinking],
            "" if e.ref.seed is None else str(e.ref.seed),
            str(e.run_dir.relative_to(data.root)) if e.run_dir else "",
            str(e.train_dir.relative_to(data.root)) if e.train_dir else "",
        ]
        for name, e in data.models.items()
    ]
    header = ["model", "role", "arm", "method", "teacher traces", "chat thinking", "seed", "run dir", "training dir"]
    caption = (
        "The study's models: teacher traces are the think / no-think traces an SFT arm was trained on; chat "
        "thinking is the chat template's enable_thinking when the model answered (default: the template's own)."
    )
    blocks.append(Table("models", header, rows, caption))
    stages = [
        [s, str(v.get("key", "")), fmt(v.get("seconds")), str(v.get("finished", ""))]
        for s, v in (m.get("stages") or {}).items()
    ]
    blocks.append(Table("stages", ["stage", "key", "seconds", "finished"], stages, "Stage times from the manifest."))
    versions = [[k, str(v)] for k, v in (m.get("versions") or {}).items()]
    blocks.append(Table("versions", ["package", "version"], versions))
    blocks.append(Text(f"Study {m.get('study')}, created {m.get('created')}, seeds {m.get('seeds')}. Config:"))
    blocks.append(Code(json.dumps(m.get("config") or {}, indent=2, ensure_ascii=False), "config"))
    return Section("manifest", "Manifest", blocks)


EVIDENCE_SECTIONS = (training, latent, tokens, examples, manifest)
