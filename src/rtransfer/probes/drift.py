"""How far a trained model has drifted from its base at each evaluated point of its training (every evaluated
checkpoint and the final model): the x axes of the drift law (`rtransfer.drift_law`). Four measures per point:

  forward_kl       KL(π_base ‖ π_point) on the TRAINING prompts (the math train split the arm trained on), the
                   measure "RL's Razor" (arXiv 2509.04259) finds to predict forgetting: exact over the vocabulary,
                   per token of the base's greedy answers, mean over answers (`tokens.score_answer`, roles swapped);
  reverse_kl       KL(π_point ‖ π_base) on the benchmarks' prompts, on the point's own answers from its evaluation
                   records (the token probe's measure), mean over the benchmarks;
  latent_d         the PCA shift d of pooled hidden states on the benchmarks' texts (the latent probe's), mean over
                   the benchmarks;
  weights_changed  the share of weights whose bfloat16 value changed (`weights.weight_drift`), 0 to 1.
The two KLs carry a bootstrap CI over their prompts; d does not (its bootstrap refits the PCA per replicate, about
half of this probe's time on the lab): the law's own CIs resample the points, and the latent probe gives each final
model's d with its CI. No noise floor: the law compares the points with each other, and the token and latent probes
give each final model's floor.

The base's greedy answers and hidden states are computed once (per compute dtype) and every point is read against
them; one point's model is in memory at a time.
"""

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rtransfer.errors import DataError
from rtransfer.probes.latent import pca_shift, pooled_states
from rtransfer.probes.models import same_vocabulary
from rtransfer.probes.pipeline import (
    ProbeSettings,
    engines_of,
    manifest,
    messages_of,
    percentile_ci,
    responses_of,
    tasks_of,
    user_text,
)
from rtransfer.probes.tokens import answer_ids, greedy_answers, score_answer, summary_replicates
from rtransfer.probes.weights import weight_drift
from rtransfer.train.data import load_queries

MEASURES = ("forward_kl", "reverse_kl", "latent_d", "weights_changed")


@dataclass(frozen=True)
class DriftPoint:
    step: int
    weights: str  # the model's directory at that step
    answers: str  # its evaluation's run directory (the reverse KL scores its answers)


@dataclass
class DriftSettings(ProbeSettings):
    points: list[DriftPoint] = field(default_factory=list)
    queries: str | None = None  # the training prompts' source (train.data.load_queries; None: the lab's math split)
    prompts: int = 64  # training prompts the forward KL is measured on
    max_new_tokens: int = 512  # the base's answer budget on them
    batch_size: int = 8
    chunk: int = 256


def run_drift(settings: DriftSettings) -> dict[str, Any]:
    """Every point's four measures (module docstring), in step order."""
    if not settings.points:
        raise DataError("no point to measure the drift of")
    queries = load_queries(settings.queries, settings.seed, settings.prompts)  # data first, then models
    questions = [[{"role": "user", "content": q.prompt}] for q in queries]
    tasks = tasks_of(settings)
    docs = {name: task.load(settings.data_dir, settings.seed) for name, task in tasks.items()}  # once, for every point
    texts = {name: [user_text(messages_of(tasks[name], d)) for d in docs[name][: settings.samples]] for name in tasks}
    generated = [name for name, task in tasks.items() if task.kind == "generate"]
    by_dtype: dict[str, dict[str, Any]] = {}  # compute dtype -> the base's answers and states
    rows = []
    for point in sorted(settings.points, key=lambda p: p.step):
        base, tuned, compute = engines_of(replace(settings, tuned=point.weights))
        same_vocabulary(base.tokenizer, tuned.tokenizer)
        if compute["compute"] not in by_dtype:
            by_dtype[compute["compute"]] = _base_side(base, questions, texts, settings)
        of_base = by_dtype[compute["compute"]]
        row: dict[str, Any] = {"step": point.step, "model": point.weights}
        forward = [score_answer(base.model, tuned.model, p, a, settings.chunk) for p, a in of_base["answers"]]
        row.update(_kl("forward_kl", forward, settings))
        reverse = []
        for name in generated:
            for _, messages, response in responses_of(point.answers, name, docs[name], tasks[name], settings.samples):
                prompt, answer = answer_ids(tuned, tuned.render(messages), response)
                reverse.append(score_answer(tuned.model, base.model, prompt, answer, settings.chunk))
        row.update(_kl("reverse_kl", reverse, settings) if generated else {"reverse_kl": None})
        row.update(_latent(of_base["states"], tuned, texts, settings))
        del base, tuned
        total = weight_drift(settings.base, point.weights, rank_limit=1)["total"]  # rank_limit 1: no SVD, shares only
        row["weights_changed"] = 1.0 - total["unchanged_bf16_share"]
        row["compute"] = compute
        rows.append(row)
    return {"manifest": manifest(settings, "drift"), "points": rows}


def _base_side(base: Any, questions: list, texts: dict[str, list[str]], settings: DriftSettings) -> dict[str, Any]:
    """The base's greedy answers to the training prompts (as token ids) and its pooled states on the texts."""
    rendered = [base.render(m) for m in questions]
    answers = greedy_answers(base, rendered, settings.max_new_tokens, settings.batch_size)
    if not any(answers):
        raise DataError("the base answers every training prompt with nothing: no forward KL to measure")
    states = {n: pooled_states(base.model, base.tokenizer, t, batch_size=settings.batch_size) for n, t in texts.items()}
    return {"answers": [(base.encode(r), a) for r, a in zip(rendered, answers, strict=True)], "states": states}


def _kl(name: str, scores: list, settings: DriftSettings) -> dict[str, Any]:
    """The token-mean KL over answers (answers with no token left out), with its CI over the answers."""
    scores = [s for s in scores if len(s.tokens)]
    if not scores:
        return {name: None}
    out: dict[str, Any] = {name: float(np.mean([s.kl.mean() for s in scores])), f"{name}_answers": len(scores)}
    if settings.bootstrap:
        replicates = summary_replicates(scores, settings.bootstrap, settings.seed)["kl_exact"]
        out[f"{name}_ci"] = percentile_ci(replicates, settings.confidence)
    return out


def _latent(base_states: dict[str, np.ndarray], tuned: Any, texts: dict[str, list[str]], settings) -> dict[str, Any]:
    """d per benchmark, and its mean over the benchmarks."""
    d = []
    for name, t in texts.items():
        states = pooled_states(tuned.model, tuned.tokenizer, t, batch_size=settings.batch_size)
        d.append(pca_shift(base_states[name], states)["d"])
    return {"latent_d": float(np.mean(d))}
