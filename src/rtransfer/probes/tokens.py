"""Token-level drift between a base and a tuned model on the tuned model's answers (Huan et al., Fig. 4).

Both models score the same answer by teacher forcing on the same prompt. Per answer position t (token y_t):
  * kl        exact KL(π_tuned ‖ π_base) over the full vocabulary at that prefix;
  * logratio  log p_tuned(y_t) − log p_base(y_t), the authors' sampled-token estimator (`kl_sampled`);
  * rank      the rank of y_t under the base (1 = the base's argmax; ties count in y_t's favour).
Memory stays bounded for long answers: each model runs its backbone once (no KV cache), and the vocabulary
projection and log-softmax are computed a chunk of positions at a time, so two full (positions × vocabulary) tensors
never exist. The three measures are computed where the base's head is (the GPU on a GPU) and only the three
per-position vectors cross to the CPU: a 256 × 152K float32 chunk is 156 MB, copied twice per chunk before.
"""

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtransfer.engines.base import SamplingParams
from rtransfer.errors import DataError
from rtransfer.probes.models import forward_mode

POSITION_BINS = (0, 16, 64, 256, 1024)  # answer-position bins for rank shift by position: [0,16), [16,64), ...


@dataclass
class AnswerScores:
    tokens: list[int]  # the answer's token ids
    kl: np.ndarray  # per position, exact KL(tuned ‖ base)
    logratio: np.ndarray  # per position, log p_tuned(y_t) − log p_base(y_t)
    rank: np.ndarray  # per position, y_t's rank under the base (1 = top)


def _final_hidden(model: Any, ids: list[int], start: int) -> Any:
    """The last hidden state (after the final norm) at positions start.. of `ids`: the backbone alone, so the
    vocabulary projection can be done in chunks."""
    import torch

    device = next(model.parameters()).device
    with forward_mode():
        # use_cache=False: one pass over a known sequence; a KV cache would only hold memory.
        out = model.base_model(input_ids=torch.tensor([ids], device=device), use_cache=False)
    return out.last_hidden_state[0, start:]


def score_answer(
    tuned: Any, base: Any, prompt_ids: Sequence[int], answer_ids: Sequence[int], chunk: int = 256
) -> AnswerScores:
    """Per-position KL, log-ratio and base rank of one answer (see the module docstring)."""
    import torch

    if not answer_ids:
        empty = np.zeros(0)
        return AnswerScores([], empty, empty, np.zeros(0, dtype=np.int64))
    ids = list(prompt_ids) + list(answer_ids)
    start = len(prompt_ids) - 1  # position p predicts token p + 1
    h_t = _final_hidden(tuned, ids, start)[: len(answer_ids)]
    h_b = _final_hidden(base, ids, start)[: len(answer_ids)]
    head_t, head_b = tuned.get_output_embeddings(), base.get_output_embeddings()
    device = head_b.weight.device  # the measures are computed here; a device map may put the tuned head elsewhere
    y_all = torch.tensor(list(answer_ids), device=device)
    kls, ratios, ranks = [], [], []
    with forward_mode():
        for s in range(0, len(answer_ids), chunk):
            lt = torch.log_softmax(head_t(h_t[s : s + chunk].to(head_t.weight.device)).float(), dim=-1).to(device)
            lb = torch.log_softmax(head_b(h_b[s : s + chunk].to(device)).float(), dim=-1)
            if lt.shape != lb.shape:
                raise DataError(f"base and tuned vocabulary sizes differ ({lb.shape[-1]} vs {lt.shape[-1]})")
            kl, ratio, rank = _position_measures(lt, lb, y_all[s : s + chunk])
            kls.append(kl)
            ratios.append(ratio)
            ranks.append(rank)
    # Three vectors of the answer's length cross to the CPU, once; nothing of the vocabulary does.
    return AnswerScores(
        list(answer_ids),
        torch.cat(kls).cpu().double().numpy(),
        torch.cat(ratios).cpu().double().numpy(),
        torch.cat(ranks).cpu().numpy(),
    )


def _position_measures(lt: Any, lb: Any, y: Any) -> tuple[Any, Any, Any]:
    """Per position of a chunk, from the two models' log-probabilities (positions × vocabulary, on one device) and
    the answer tokens: exact KL(tuned ‖ base), the log-ratio of the answer token, and its rank under the base."""
    kl = (lt.exp() * (lt - lb)).sum(-1).clamp(min=0)  # clamp: rounding can dip a zero below it
    lb_y = lb.gather(-1, y.unsqueeze(-1))
    ratio = (lt.gather(-1, y.unsqueeze(-1)) - lb_y).squeeze(-1)
    rank = (lb > lb_y).sum(-1) + 1
    return kl, ratio, rank


def summarize(scores: Sequence[AnswerScores], decode: Callable[[int], str], top: int = 20) -> dict[str, Any]:
    """Aggregates over answers (answers with no tokens are left out).

    kl_exact     mean over answers of the per-position mean KL (positions first, then prompts, as the paper);
    kl_sampled   mean over answers of |mean log-ratio| — the authors' estimator, abs() per answer;
    mean_rank_shift  mean over all answer positions (pooled) of rank − 1: 0 when the base's top choice is the
                 answer token everywhere;
    unshifted / marginal / shifted  shares of positions with rank 1 / 2–3 / >3;
    top_shifted_tokens  the tokens most often at rank > 3, with counts;
    rank_shift_by_position  mean rank − 1 per bin of answer positions (POSITION_BINS).
    """
    scores = [s for s in scores if len(s.tokens)]
    if not scores:
        raise DataError("no answer has any token to score")
    rank = np.concatenate([s.rank for s in scores])
    shifted_tokens = Counter(decode(t) for s in scores for t, r in zip(s.tokens, s.rank, strict=True) if r > 3)
    position = np.concatenate([np.arange(len(s.tokens)) for s in scores])
    edges = [*POSITION_BINS, np.inf]
    by_position = []
    for lo, hi in itertools.pairwise(edges):
        sel = (position >= lo) & (position < hi)
        if sel.any():
            label = f"{lo}-{int(hi) - 1}" if np.isfinite(hi) else f"{lo}+"
            shift = float((rank[sel] - 1).mean())
            by_position.append({"positions": label, "n": int(sel.sum()), "mean_rank_shift": shift})
    return {
        "kl_exact": float(np.mean([s.kl.mean() for s in scores])),
        "kl_sampled": float(np.mean([abs(s.logratio.mean()) for s in scores])),
        "mean_rank_shift": float((rank - 1).mean()),
        "unshifted": float((rank == 1).mean()),
        "marginal": float(((rank >= 2) & (rank <= 3)).mean()),
        "shifted": float((rank > 3).mean()),
        "top_shifted_tokens": [[tok, n] for tok, n in shifted_tokens.most_common(top)],
        "rank_shift_by_position": by_position,
        "answers": len(scores),
        "positions": int(rank.size),
    }


CI_FIELDS = ("kl_exact", "kl_sampled", "mean_rank_shift", "shifted")


def summary_replicates(scores: Sequence[AnswerScores], replicates: int, seed: int = 0) -> dict[str, np.ndarray]:
    """CI_FIELDS of `summarize` on `replicates` bootstrap samples of the answers (prompts resampled with
    replacement; positions pooled within each replicate as in `summarize`)."""
    scores = [s for s in scores if len(s.tokens)]
    if not scores:
        raise DataError("no answer has any token to score")
    kl = np.array([s.kl.mean() for s in scores])
    sampled = np.array([abs(s.logratio.mean()) for s in scores])
    shift = np.array([float((s.rank - 1).sum()) for s in scores])
    shifted = np.array([float((s.rank > 3).sum()) for s in scores])
    length = np.array([float(len(s.tokens)) for s in scores])
    n = len(scores)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=replicates)
    return {
        "kl_exact": counts @ kl / n,
        "kl_sampled": counts @ sampled / n,
        "mean_rank_shift": (counts @ shift) / (counts @ length),
        "shifted": (counts @ shifted) / (counts @ length),
    }


def answer_ids(engine: Any, prompt_text: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of the rendered prompt and of the answer after it. As the HF engine scores continuations:
    tokenize prompt+answer together and split at the prompt's length, so merges across the seam match running
    text; fall back to tokenizing the answer alone when the prompt's tokens change."""
    prompt_ids = engine.encode(prompt_text)
    whole = engine.encode(prompt_text + answer)
    if whole[: len(prompt_ids)] != prompt_ids:
        return prompt_ids, engine.tokenizer(answer, add_special_tokens=False)["input_ids"]
    return prompt_ids, whole[len(prompt_ids) :]


def greedy_answers(
    engine: Any, prompt_texts: Sequence[str], max_new_tokens: int, batch_size: int = 8
) -> list[list[int]]:
    """The model's greedy answers as token ids, cut before the first end-of-turn token. Ids, not text: a
    decode/encode round trip can change tokens, and the probe must score exactly what the model produced."""

    encoded = [engine.encode(t) for t in prompt_texts]
    params = SamplingParams(max_new_tokens=max_new_tokens)
    step = max(1, batch_size)
    return [ids for s in range(0, len(encoded), step) for ids, _ in engine.generate_ids(encoded[s : s + step], params)]
