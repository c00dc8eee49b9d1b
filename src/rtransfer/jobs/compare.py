"""run(CompareSpec): the study's scores.json, ti.json and comparisons.json, with its [ti] settings."""

from pathlib import Path

from rtransfer.specs import CompareSpec
from rtransfer.study.results import write_results


def run(spec: CompareSpec) -> dict:
    return write_results(spec.models, spec.ti, spec.survey, Path(spec.out))
