"""run(TeacherSpec): a teacher model's solutions to the training queries, rejection-sampled into
DIR/traces/<name>.jsonl (train.teacher.run_teacher; its answers are records in <name>.jsonl.run/, so a killed
teacher resumes), through the server the spec starts when it names one."""

from pathlib import Path

from rtransfer.engines.base import SamplingParams
from rtransfer.engines.factory import make_engine
from rtransfer.errors import RtransferError
from rtransfer.jobs import say
from rtransfer.jobs.serving import through_server
from rtransfer.specs import TeacherSpec
from rtransfer.train.data import load_queries
from rtransfer.train.teacher import run_teacher


class TeacherError(RtransferError):
    pass


def run(spec: TeacherSpec) -> dict:
    queries = load_queries(spec.queries, spec.seed, spec.max_queries)  # before a server starts: bad data fails fast
    params = SamplingParams(temperature=spec.temperature, top_p=spec.top_p, max_new_tokens=spec.max_new_tokens)
    name = spec.model.name
    with through_server(spec.serve, spec.engine, name, spec.logs) as engine:
        result = run_teacher(
            make_engine(engine),
            queries,
            Path(spec.out),
            samples=spec.samples,
            params=params,
            seed=spec.seed,
            progress=lambda done, total: done >= total and say(f"  {name}: {done}/{total} answers"),
        )
    say(f"  {name}: {result.accepted} of {result.total} answers kept (correct and finished)")
    if not result.accepted:
        raise TeacherError(f"teacher {name}: no answer was correct and finished; the SFT arms would have no data")
    return {"accepted": result.accepted, "total": result.total}
