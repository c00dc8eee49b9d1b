"""Render a report in headless Chromium to a PNG, and fail on anything the browser complains about.

    python bench/report_screenshot.py [REPORT_HTML] [--out PNG] [--size 1200,3000]

Without REPORT_HTML, a quick study is built first (`rtransfer study --quick`) and its report rendered.
`make screenshot` installs Debian's chromium and runs this.

Checks, each a failure with a one-line reason:
  * the report references nothing but data: URIs and in-page anchors (so nothing can fail to load offline);
  * the browser logs no console message at all: the report has no JavaScript, so any console line (an
    "Uncaught ..." error, a blocked resource, a parse complaint) is a fault. Chromium logs them on stderr as
    `INFO:CONSOLE` / `ERROR:CONSOLE` lines with `--enable-logging=stderr`;
  * the screenshot was written and is a PNG.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CONSOLE = re.compile(r":CONSOLE(?:\(\d+\))?[:\]]|Uncaught ")


def build_quick_report(where: Path) -> Path:
    study = where / "study"
    subprocess.run([sys.executable, "-m", "rtransfer.cli", "study", "--quick", "--out", str(study)], check=True)
    return study / "report.html"


def external_references(html: str) -> list[str]:
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html) + re.findall(r"url\(([^)]*)\)", html)
    return [r[:80] for r in refs if not r.startswith(("data:", "#"))]


def screenshot(report: Path, out: Path, size: str) -> list[str]:
    """Render `report` to `out`; returns the problems found (empty: a clean render)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return ["no chromium on PATH (make screenshot installs it: apt-get install -y chromium)"]
    html = report.read_text(encoding="utf-8")
    problems = [f"external reference {r!r}" for r in external_references(html)]
    if "<script" in html.lower():
        problems.append("the report contains a <script>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
        ]
        cmd += ["--enable-logging=stderr", "--v=0", f"--window-size={size}", f"--screenshot={out}"]
        done = subprocess.run([*cmd, report.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    problems += [f"console: {line.strip()[:200]}" for line in done.stderr.splitlines() if CONSOLE.search(line)]
    if done.returncode != 0:
        problems.append(f"chromium exited with {done.returncode}")
    if not out.exists() or out.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        problems.append(f"no PNG screenshot at {out}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path, help="a report.html (default: build a quick study's)")
    parser.add_argument("--out", type=Path, default=Path("report-screenshot.png"), help="the PNG to write")
    parser.add_argument("--size", default="1200,3000", help="window width,height in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = args.report or build_quick_report(Path(tmp))
        problems = screenshot(report, args.out, args.size)
    for p in problems:
        print(f"report_screenshot: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"screenshot: {args.out} ({args.out.stat().st_size} bytes) of {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
