"""Reports: tables (terminal, CSV, LaTeX, JSON) now; plots and HTML come with the report stage."""
