# Two entry points on a fresh machine: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
# The torch asked for when none is installed. On this project's CPU machines pip finds this exact wheel on
# disk; any looser spec would let pip pick a multi-GB CUDA build. Override it on your own machine if needed.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint clean screenshot

# A torch that the chosen Python already has (say, a CUDA build on a GPU box) is respected: the venv then
# sees the system site-packages, and pip treats torch as satisfied instead of replacing it.
$(BIN)/python:
	@if $(PYTHON) -c "import torch" >/dev/null 2>&1; then \
		echo "rtransfer: keeping the torch installed for $(PYTHON)"; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
		$(PYTHON) -m venv $(VENV); \
	fi

$(VENV)/.installed-%: $(BIN)/python pyproject.toml
	@$(BIN)/python -c "import torch" >/dev/null 2>&1 || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$*]"
	@touch $@

# The embedded default: the lab study (docs/study.md). The shipped lab base is trained five ways on the lab's math
# (off-policy SFT think and no-think, on-policy SFT, GRPO, on-policy distillation), every model is scored on the lab
# suite, then the TI with CIs, the probes, the drift law and the report (studies/lab/report.html). A rerun reuses every finished stage; a killed one resumes.
demo: $(VENV)/.installed-models
	$(BIN)/rtransfer study lab --out studies/lab

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# A report rendered in headless Chromium (Debian's package, installed here when missing) to a PNG; fails on any
# console message or external reference. REPORT=path/to/report.html renders that one instead of a quick study's.
REPORT ?=
SCREENSHOT ?= docs/report-screenshot.png
screenshot: $(VENV)/.installed-models
	@command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium)
	$(BIN)/python bench/report_screenshot.py $(REPORT) --out $(SCREENSHOT)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
