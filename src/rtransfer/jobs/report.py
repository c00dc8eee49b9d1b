"""run(ReportSpec): the study's report, rendered from its files."""

from pathlib import Path

from rtransfer.report.build import write_report
from rtransfer.specs import ReportSpec


def run(spec: ReportSpec) -> dict:
    written = write_report(Path(spec.out))
    return {"html": str(written["html"]), "finding": written.get("finding", [])}
