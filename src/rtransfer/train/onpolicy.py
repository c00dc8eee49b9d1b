"""On-policy SFT (the ICML version's key ablation): each step, the current weights sample `rollouts` answers per
prompt, the math grader keeps the correct, finished ones, and one SFT step trains on them.

Built on TRL's GRPOTrainer rather than a loop of ours, so it runs wherever GRPO runs: several processes (DDP,
ZeRO-3, FSDP), sampling with HF generate or vLLM (colocate or server), TRL's checkpoints and resume. A loop of ours
made accelerate-aware would need its own whole-model gathering for sampling under ZeRO-3 (sharded decoding hangs
when ranks stop at different lengths) and its own vLLM weight sync: both exist in TRL. The loss is GRPO's with:
- advantage = kept ∈ {0, 1}: 1 for a correct, finished answer, 0 otherwise (no group baseline, no scaling);
- only kept answers in the loss mask, truncated answers masked (mask_truncated_completions), so the DAPO token
  normalisation divides by the kept answer tokens of the whole step, across processes: SFT's token mean;
- one optimiser step per generation batch (steps_per_generation = grad_accum), num_iterations 1, β 0: the
  importance ratio is exactly 1, so the clip never acts and the gradient is the NLL gradient of the kept answers.
- the forward and backward pass run on the kept answers alone (`kept_rows`): a rejected answer's loss mask is all
  zero, so it adds nothing to the loss or its gradient, yet it would cost as much compute as a kept one (on the lab,
  about 40 % of each step's answers are rejected).
(With vLLM, TRL's truncated importance-sampling correction still weights tokens by the trainer/sampler
probability ratio, as for GRPO, when the recipe keeps it on.)
"""

from collections.abc import Sequence
from pathlib import Path

from rtransfer.train.config import OnPolicyRecipe
from rtransfer.train.data import Query
from rtransfer.train.grpo import sampling_trainer, train_queries
from rtransfer.train.outputs import TrainDir


def onpolicy_trainer(
    base: str, queries: Sequence[Query], recipe: OnPolicyRecipe, target: TrainDir, callbacks: Sequence = ()
):
    return sampling_trainer(
        _trainer_class(),
        base,
        queries,
        recipe,
        target,
        callbacks,
        beta=0.0,
        loss_type="dapo",  # token sum over the step's kept answer tokens / their count
        scale_rewards="none",
        num_iterations=1,
        mask_truncated_completions=True,
    )


def _trainer_class():
    import torch
    from trl import GRPOTrainer

    class OnPolicySFTTrainer(GRPOTrainer):
        """GRPOTrainer whose advantage is the kept indicator and whose loss mask holds the kept answers only."""

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            self._step_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            return self._step_rewards  # every process's, gathered: the slice below picks this process's

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            n = out["completion_ids"].size(0)
            start = self.accelerator.process_index * n
            correct = self._step_rewards[start : start + n, 0] == 1.0
            # Truncated answers already have an all-zero mask (mask_truncated_completions).
            kept = correct & (out["completion_mask"].sum(dim=1) > 0)
            out["advantages"] = kept.float()
            out["completion_mask"] = out["completion_mask"] * kept.unsqueeze(1).to(out["completion_mask"].dtype)
            out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
            share = self.accelerator.gather(kept.float().mean().reshape(1)).mean()
            self._metrics["train"]["kept_share"].append(share.item())
            return out

        def _get_per_token_logps_and_entropies(self, *args, **kwargs):
            found = super()._get_per_token_logps_and_entropies(*args, **kwargs)
            self._token_logps = found[0]
            return found

        def _compute_loss(self, model, inputs):
            """GRPO's loss (its gradient is the kept answers' NLL gradient), reported as that NLL: the token mean
            of -log p over the step's kept answer tokens, as TRL's SFT reports its loss."""
            # As many rows on every process: the most any of them kept (one at least).
            most = self.accelerator.gather(torch.tensor([kept_count(inputs)], device=self.accelerator.device)).max()
            inputs = kept_rows(inputs, max(int(most), 1))
            loss = super()._compute_loss(model, inputs)
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            nll = -(self._token_logps * inputs["completion_mask"]).sum() / normalizer
            return loss + (nll - loss).detach()

    return OnPolicySFTTrainer


# The micro-batch's per-answer tensors TRL's GRPOTrainer may hand to its loss, and those of them that run along the
# completion's tokens. A batch with any other per-answer tensor is left whole: nothing unknown is cut.
ANSWER_KEYS = frozenset({"prompt_ids", "prompt_mask", "advantages", "completion_ids", "completion_mask"})
TOKEN_KEYS = frozenset(
    {"completion_ids", "completion_mask", "tool_mask", "old_per_token_logps", "ref_per_token_logps"}
    | {"sampling_per_token_logps", "importance_sampling_ratio"}
)


def kept_count(inputs: dict) -> int:
    return int((inputs["completion_mask"].sum(dim=1) > 0).sum())


def kept_rows(inputs: dict, rows: int = 1) -> dict:
    """The micro-batch `inputs` without the answers whose loss mask is all zero, and its completions cut after the
    longest kept answer. The loss is unchanged: dropped rows and columns are masked out, and the DAPO normaliser is
    `num_items_in_batch`, counted over the whole step beforehand. At least `rows` rows stay, the first rejected
    ones filling up: every process then runs a forward and backward pass (DDP, ZeRO-3 and FSDP wait for every
    rank's), and on the same number of rows (TRL gathers a value per row for its clip metrics)."""
    import torch

    mask = inputs["completion_mask"]
    n, width = mask.shape
    per_answer = {k for k, v in inputs.items() if torch.is_tensor(v) and v.dim() > 0 and v.size(0) == n}
    if not per_answer <= ANSWER_KEYS | TOKEN_KEYS:
        return inputs
    keep = mask.sum(dim=1) > 0
    fill = torch.nonzero(~keep).flatten()[: max(rows - int(keep.sum()), 0)]
    keep[fill] = True
    columns = torch.nonzero(mask[keep].any(dim=0))
    length = int(columns.max()) + 1 if columns.numel() else 1
    out = dict(inputs)
    for k in per_answer:
        out[k] = inputs[k][keep]
        if k in TOKEN_KEYS and out[k].dim() > 1 and out[k].size(1) == width:
            out[k] = out[k][:, :length]
    return out


def train_onpolicy(
    base: str, queries: Sequence[Query], recipe: OnPolicyRecipe, out: Path, callbacks: Sequence = ()
) -> Path:
    """Train `base` on its own correct answers into the training directory `out`; resumes from a checkpoint."""
    return train_queries(onpolicy_trainer, base, queries, recipe, out, callbacks)
