"""On-policy distillation (method `opd`; Agarwal et al. 2306.13649, "GKD"): each step the student samples one
answer per prompt from its current weights, the teacher scores every token of it, and the loss is the per-token
divergence between their next-token distributions (reverse KL at the recipe's default beta = 1). On-policy like
GRPO, with a dense teacher signal like SFT: the fourth corner of the study's {off, on}-policy × {teacher, reward}
grid.

TRL's DistillationTrainer does all of it (sampling with HF generate or vLLM, the chunked divergence, DDP, ZeRO-3,
FSDP, checkpoints); this module gives it rtransfer's recipe, data, training directory and teacher. The lab's
teacher is a program, which has no logits: `teacher = "lab"` is the lab teacher *model* of the lab base, the base's
mid-training with the program's traces (lab/build.py, TeacherConfig), shipped for the default base.
"""

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rtransfer.errors import DataError
from rtransfer.lab.build import build_teacher
from rtransfer.runs import fingerprint
from rtransfer.train import ranks
from rtransfer.train.config import DistillRecipe
from rtransfer.train.data import Query, data_record
from rtransfer.train.grpo import grpo_dataset, sampled_count
from rtransfer.train.outputs import TrainDir, chat_kwargs, fit, load_model, log_callback, trainer_arguments
from rtransfer.train.sizing import vllm_arguments


def teacher_model(recipe: DistillRecipe, base: str) -> str:
    """The recipe's teacher as a model dir or hub id: `lab` is the lab teacher model of the lab base `base`,
    built by the main process (the others wait), shipped for the default base."""
    if recipe.teacher != "lab":
        return recipe.teacher
    if not (Path(base) / "lab_build.json").exists():
        raise DataError(f"teacher = lab distils into a lab base only, and {base} is none: set teacher=MODEL")
    if ranks.is_main():
        build_teacher(base)
    ranks.wait_for_everyone()
    return str(build_teacher(base))


def check_vocabulary(teacher: str, base: str) -> None:
    """The divergence compares the two next-token distributions id by id: the teacher's tokenizer must be the
    student's (TRL checks the vocabulary's size only). Tokenizers only: before minutes of loading a model."""
    from transformers import AutoTokenizer

    if AutoTokenizer.from_pretrained(teacher).get_vocab() != AutoTokenizer.from_pretrained(base).get_vocab():
        raise DataError(f"the teacher {teacher} has another tokenizer than the student: distillation needs one")


def distill_trainer(
    base: str, queries: Sequence[Query], recipe: DistillRecipe, target: TrainDir, teacher: str, callbacks=()
):
    """TRL's DistillationTrainer from `base` to `teacher` on the prompts of `queries`, writing into `target`."""
    from trl import DistillationConfig, DistillationTrainer

    args = DistillationConfig(  # before the models load (zero.Init)
        **trainer_arguments(recipe, target, recipe.max_steps),
        temperature=recipe.temperature,
        top_p=recipe.top_p,
        max_completion_length=recipe.max_completion_length,
        chat_template_kwargs=chat_kwargs(recipe),
        beta=recipe.beta,
        **vllm_arguments(recipe),
    )
    check_vocabulary(teacher, base)
    model, tokenizer = load_model(base, recipe)
    # Inference only: bf16 on a GPU whatever the student's dtype (on the CPU load_model keeps fp32).
    teacher_net, _ = load_model(teacher, replace(recipe, model_dtype="bfloat16"))
    return DistillationTrainer(
        model=model,
        teacher_model=teacher_net,
        args=args,
        train_dataset=grpo_dataset(queries),
        processing_class=tokenizer,
        callbacks=[log_callback(target), *callbacks],
    )


def train_distill(base: str, queries: Sequence[Query], recipe: DistillRecipe, out: Path, callbacks=()) -> Path:
    """Distil `recipe.teacher` into `base` on the prompts of `queries`, into the training directory `out`;
    resumes from its newest checkpoint. The teacher's fingerprint is part of the run's data: a resumed run with
    another teacher is refused, as one with other queries is."""
    teacher = teacher_model(recipe, base)
    local = Path(teacher).exists()
    data = data_record(queries, "queries") | {
        "teacher": teacher,
        "teacher_fingerprint": fingerprint(Path(teacher)) if local else None,
    }
    target = TrainDir(out)
    step = target.start(recipe, base, data)
    if step is None:  # this run has finished before
        return target.path
    trainer = distill_trainer(base, queries, recipe, target, teacher, callbacks)
    return fit(target, trainer, step, sampled_count)
