"""GRPO with TRL's GRPOTrainer; the reward is the math grader's correctness of the final answer.

The reward calls rtransfer.grading.math.grade_math, the grader of the math benchmarks: math-verify runs in its
killable worker processes, never under SIGALRM (which fails off the main thread). Prompts are conversational, so
TRL renders them with the model's chat template as the evaluation engine does (`enable_thinking` only when set).
"""

from collections.abc import Sequence
from pathlib import Path

from rtransfer.grading.math import grade_math
from rtransfer.train.config import GRPORecipe
from rtransfer.train.data import Query, data_hash
from rtransfer.train.outputs import TrainDir, chat_kwargs, fit, load_model, log_callback, trainer_arguments


def completion_text(completion) -> str:
    """A TRL completion as text: a string, or the assistant message of a conversational completion."""
    return completion if isinstance(completion, str) else "".join(m["content"] for m in completion)


def correctness_reward(completions, answer, **_) -> list[float]:
    """1.0 for a completion whose final answer the math grader accepts, else 0.0 (TRL reward signature)."""
    return [grade_math(completion_text(c), gold).score for c, gold in zip(completions, answer, strict=True)]


def grpo_dataset(queries: Sequence[Query]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": q.prompt}], "answer": q.answer} for q in queries])


def grpo_trainer(base: str, queries: Sequence[Query], recipe: GRPORecipe, target: TrainDir, callbacks: Sequence = ()):
    """TRL's GRPOTrainer on `queries` with the correctness reward, writing checkpoints and logs into `target`."""
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = load_model(base)
    vllm = {"use_vllm": recipe.use_vllm, "vllm_mode": recipe.vllm_mode}
    if recipe.vllm_server_base_url:
        vllm["vllm_server_base_url"] = recipe.vllm_server_base_url
    args = GRPOConfig(
        **trainer_arguments(recipe, target, recipe.max_steps),
        num_generations=recipe.rollouts,
        beta=recipe.beta,
        epsilon=recipe.epsilon,
        epsilon_high=recipe.epsilon_high,
        loss_type=recipe.loss_type,
        scale_rewards=recipe.scale_rewards,
        num_iterations=recipe.num_iterations,
        steps_per_generation=recipe.steps_per_generation,
        temperature=recipe.temperature,
        top_p=recipe.top_p,
        max_completion_length=recipe.max_completion_length,
        mask_truncated_completions=recipe.mask_truncated_completions,
        chat_template_kwargs=chat_kwargs(recipe),
        **vllm,
    )
    return GRPOTrainer(
        model=model,
        reward_funcs=correctness_reward,
        args=args,
        train_dataset=grpo_dataset(queries),
        processing_class=tokenizer,
        callbacks=[log_callback(target), *callbacks],
    )


def train_grpo(base: str, queries: Sequence[Query], recipe: GRPORecipe, out: Path, callbacks: Sequence = ()) -> Path:
    """Train `base` with GRPO on `queries` into the training directory `out`; resumes from its newest checkpoint."""
    target = TrainDir(out)
    step = target.start(recipe, base, {"queries": len(queries), "hash": data_hash(q.__dict__ for q in queries)})
    if step is None:  # this run has finished before
        return target.path
    return fit(target, grpo_trainer(base, queries, recipe, target, callbacks), step)
