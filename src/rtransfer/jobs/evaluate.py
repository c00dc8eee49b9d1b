"""run(EvalSpec): one model on its benchmarks into its run directory (evaluate.evaluate_spec), through the server
the spec starts when it names one."""

from pathlib import Path

from rtransfer.evaluate import evaluate_spec
from rtransfer.jobs import say
from rtransfer.jobs.serving import through_server
from rtransfer.specs import EvalSpec


def run(spec: EvalSpec) -> dict:
    m = spec.model
    with through_server(spec.serve, spec.engine, m.name, spec.logs) as engine:
        _evaluate(spec, engine)
    return {}


def _evaluate(spec: EvalSpec, engine) -> None:
    m = spec.model
    evaluate_spec(
        engine,
        Path(spec.out),
        spec.suite,
        data_dir=Path(spec.data_dir) if spec.data_dir else None,
        limit=spec.limit,
        name=m.name,
        base=m.base,
        method=m.method,
        progress=lambda benchmark: _progress(m.name, benchmark),
    )


def _progress(name: str, benchmark: str):
    def update(done: int, total: int) -> None:
        if done >= total:
            say(f"  {name}: {benchmark} {done}/{total}")

    return update
