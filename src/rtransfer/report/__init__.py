"""Reports from files alone: `build.write_report(STUDY_DIR)` / `build.write_run_report(RUN_DIRS, base, OUT)`.

collect (files → ReportData) · finding (the finding in words) ·
sections, evidence (the report's sections) · plots (PNG figures) · document, html, markdown (rendering) ·
tables (cells for terminal, CSV, LaTeX, Markdown). The numbers are the study's (rtransfer.comparisons computes them
once, in its compare stage): nothing here resamples. See docs/report.md."""
