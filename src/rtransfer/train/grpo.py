"""GRPO with TRL's GRPOTrainer; the reward is the math grader's correctness of the final answer.

The reward calls rtransfer.grading.math.grade_math, the grader of the math benchmarks: math-verify runs in its
killable worker processes, never under SIGALRM (which fails off the main thread). Prompts are conversational, so
TRL renders them with the model's chat template as the evaluation engine does (`enable_thinking` only when set).
`sampling_trainer` builds the TRL trainer that on-policy SFT shares (train/onpolicy.py): the same rollouts, vLLM
placement, processes and checkpoints, so the two on-policy arms differ only in their loss.

What a run saw (train.json's `seen`, train/outputs.py) is counted by `sampled_count` from each micro-batch: the
query ids of the prompts drawn (a dataset column, which TRL hands to the reward as a keyword it ignores), and the
completions and tokens the loss mask holds (on-policy SFT: the kept answers only).
"""

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtransfer.online import hub_kernels
from rtransfer.train.config import GRPORecipe, SamplingRecipe
from rtransfer.train.data import Query, data_record
from rtransfer.train.outputs import TrainDir, chat_kwargs, fit, load_model, log_callback, trainer_arguments
from rtransfer.train.rewards import completion_text, correctness_reward  # noqa: F401  (the reward, re-exported)
from rtransfer.train.rollouts import engine_rollouts
from rtransfer.train.sizing import vllm_arguments


def grpo_dataset(queries: Sequence[Query]):
    from datasets import Dataset

    return Dataset.from_list(
        [{"prompt": [{"role": "user", "content": q.prompt}], "answer": q.answer, "query_id": q.id} for q in queries]
    )


def sampled_count(rows, batch) -> tuple[list[str], int, int]:
    """What one micro-batch of a sampling method trains on (outputs.Count): the query ids of its generation batch's
    rows, the completions with a loss token, and the loss tokens (the completion mask the loss uses)."""
    mask = batch["completion_mask"]
    return [row["query_id"] for row in rows], int((mask.sum(dim=1) > 0).sum()), int(mask.sum())


def sampling_trainer(
    trainer_class,
    base: str,
    queries: Sequence[Query],
    recipe: SamplingRecipe,
    target: TrainDir,
    callbacks: Sequence = (),
    **loss: Any,
):
    """A TRL GRPOTrainer (or subclass) over `queries` with the correctness reward, writing into `target`; `loss`
    holds the GRPOConfig fields of the method's loss."""
    from trl import GRPOConfig

    args = GRPOConfig(  # before the model loads (zero.Init)
        **trainer_arguments(recipe, target, recipe.max_steps),
        num_generations=recipe.rollouts,
        steps_per_generation=recipe.steps_per_generation,
        temperature=recipe.temperature,
        top_p=recipe.top_p,
        max_completion_length=recipe.max_completion_length,
        chat_template_kwargs=chat_kwargs(recipe),
        # TRL loads the reference model itself (beta > 0); set only then, as TRL warns about it otherwise
        model_init_kwargs=(hub_kernels() or None) if loss.get("beta") else None,
        **vllm_arguments(recipe),
        **loss,
    )
    model, tokenizer = load_model(base, recipe)
    with warnings.catch_warnings():  # TRL calls its documented hook experimental
        warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
        return trainer_class(
            model=model,
            reward_funcs=correctness_reward,
            args=args,
            train_dataset=grpo_dataset(queries),
            processing_class=tokenizer,
            callbacks=[log_callback(target), *callbacks],
            rollout_func=engine_rollouts(recipe) if recipe.sampler == "rtransfer" else None,
        )


def grpo_trainer(base: str, queries: Sequence[Query], recipe: GRPORecipe, target: TrainDir, callbacks: Sequence = ()):
    """TRL's GRPOTrainer on `queries` with the correctness reward, writing checkpoints and logs into `target`."""
    from trl import GRPOTrainer

    return sampling_trainer(
        GRPOTrainer,
        base,
        queries,
        recipe,
        target,
        callbacks,
        beta=recipe.beta,
        epsilon=recipe.epsilon,
        epsilon_high=recipe.epsilon_high,
        loss_type=recipe.loss_type,
        scale_rewards=recipe.scale_rewards,
        num_iterations=recipe.num_iterations,
        mask_truncated_completions=recipe.mask_truncated_completions,
    )


def train_queries(method_trainer, base: str, queries: Sequence[Query], recipe, out: Path, callbacks=()) -> Path:
    """Train `base` on `queries` with `method_trainer` (grpo_trainer, onpolicy_trainer) into the training directory
    `out`; resumes from its newest checkpoint."""
    target = TrainDir(out)
    step = target.start(recipe, base, data_record(queries, "queries"))
    if step is None:  # this run has finished before
        return target.path
    return fit(target, method_trainer(base, queries, recipe, target, callbacks), step, sampled_count)


def train_grpo(base: str, queries: Sequence[Query], recipe: GRPORecipe, out: Path, callbacks: Sequence = ()) -> Path:
    """Train `base` with GRPO on `queries` into the training directory `out`; resumes from its newest checkpoint."""
    return train_queries(grpo_trainer, base, queries, recipe, out, callbacks)
