"""Reports from files alone: `build.write_report(STUDY_DIR)` / `build.write_run_report(RUN_DIRS, base, OUT)`.

collect (files → ReportData) · compare (paired-bootstrap differences) · finding (the finding in words) ·
sections, evidence (the report's sections) · plots (PNG figures) · document, html, markdown (rendering) ·
tables (cells for terminal, CSV, LaTeX, Markdown). See docs/report.md."""
