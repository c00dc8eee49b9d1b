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
            loss = super()._compute_loss(model, inputs)
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            nll = -(self._token_logps * inputs["completion_mask"]).sum() / normalizer
            return loss + (nll - loss).detach()

    return OnPolicySFTTrainer


def train_onpolicy(
    base: str, queries: Sequence[Query], recipe: OnPolicyRecipe, out: Path, callbacks: Sequence = ()
) -> Path:
    """Train `base` on its own correct answers into the training directory `out`; resumes from a checkpoint."""
    return train_queries(onpolicy_trainer, base, queries, recipe, out, callbacks)
