"""run(EvalSpec): one model on its benchmarks into its run directory (evaluate.evaluate_spec)."""

from pathlib import Path

from rtransfer.evaluate import evaluate_spec
from rtransfer.jobs import say
from rtransfer.specs import EvalSpec


def run(spec: EvalSpec) -> dict:
    m = spec.model
    evaluate_spec(
        spec.engine,
        Path(spec.out),
        spec.suite,
        data_dir=Path(spec.data_dir) if spec.data_dir else None,
        limit=spec.limit,
        name=m.name,
        base=m.base,
        method=m.method,
        progress=lambda benchmark: _progress(m.name, benchmark),
    )
    return {}


def _progress(name: str, benchmark: str):
    def update(done: int, total: int) -> None:
        if done >= total:
            say(f"  {name}: {benchmark} {done}/{total}")

    return update
