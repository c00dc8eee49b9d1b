"""run(TrainSpec): one training run (train.run.train), keeping every N-th step's weights when the study
evaluates checkpoints. Under a launcher every process runs this; the trainer decides which one writes."""

from pathlib import Path

from rtransfer.specs import TEACHER_TRACES, TrainSpec
from rtransfer.train.config import from_description
from rtransfer.train.run import TrainJob, keep_step_weights, train

SWITCH = {traces: switch for switch, traces in TEACHER_TRACES.items()}  # ModelRef's spelling -> the teacher's switch


def job(spec: TrainSpec) -> TrainJob:
    return TrainJob(
        method=spec.method,
        model=spec.base,
        out=Path(spec.out),
        data=spec.data,
        thinking=SWITCH.get(spec.teacher_traces or ""),
        recipe=from_description({**spec.recipe, **spec.execution}),
    )


def run(spec: TrainSpec) -> dict:
    callbacks = [keep_step_weights(Path(spec.out), spec.keep_every)] if spec.keep_every else []
    train(job(spec), callbacks)
    return {}
