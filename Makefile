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

# The embedded default: the lab's base model (shipped with rtransfer, so no training here), scored on the lab
# suite (a resumable run under runs/demo), then the paper's Transferability Index, reported vs recomputed.
demo: $(VENV)/.installed-models
	$(BIN)/rtransfer lab build
	$(BIN)/rtransfer eval --model "$$($(BIN)/rtransfer lab build --json | $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["path"])')" --suite lab --out runs/demo/lab-base
	$(BIN)/rtransfer ti --paper

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
