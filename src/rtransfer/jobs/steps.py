"""run(StepEvalSpec): the kept checkpoints of a training run, each evaluated as the model's final evaluation is
(the same engine settings, suite and limit) into DIR/evals/step-N: the TI over training steps. The checkpoint of
the last step is the final model, evaluated once already: not again.

A checkpoint is served as the final model is when the study starts servers ([eval.serve]); it is read in process
when the final model is served by a server of the user's ([eval.servers]), which serves the final weights only.
"""

from dataclasses import replace
from pathlib import Path

from rtransfer.jobs import evaluate
from rtransfer.monitor import checkpoint_name
from rtransfer.specs import StepEvalSpec
from rtransfer.train.outputs import final_step
from rtransfer.train.run import kept_steps


def run(spec: StepEvalSpec) -> dict:
    steps = {}
    last = final_step(Path(spec.train_dir))
    for step, weights in kept_steps(Path(spec.train_dir), spec.every):
        if step == last:  # the final model's weights: its own evaluation is that point (jobs.compare.step_rows)
            continue
        template = spec.template
        if template.serve is None:
            engine = replace(template.engine, model=str(weights), engine="hf", base_urls=(), tokenizer=None)
        else:
            engine = replace(template.engine, model=str(weights), tokenizer=str(weights))
        model = replace(template.model, name=checkpoint_name(template.model.name, step), source=str(weights))
        one = replace(template, model=model, engine=engine, out=str(Path(spec.out) / f"step-{step}"))
        evaluate.run(one)
        steps[str(step)] = one.out
    return {"steps": steps}
