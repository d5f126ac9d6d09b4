# eekit: two commands on a fresh machine with Python 3.11.
#   make lab   - set up .venv (first time only) and start JupyterLab on notebooks/
#   make test  - set up .venv (first time only) and run every unit test and every notebook under nbval
#   make test-fast - unit tests only (no notebooks, browser or slow tests): the quick edit-test loop

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.eekit-installed
PORT   ?= 8888
# the core and the command-line errors, type-checked with mypy --strict by `make lint` (tests/test_lint.py runs the same)
TYPED  := eekit/models eekit/criteria.py eekit/profile.py eekit/runtime.py eekit/validate.py eekit/cli.py eekit/intervals.py
# Jupyter refuses to run as root unless told; containers and CI machines often are root
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test test-fast lint install clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	@touch $(STAMP)

# torch threads pinned to the CPUs this machine or container really has (binder/cpus, as binder/start does);
# JupyterLab's news toast off (binder/overrides.json), or it covers the dashboards' right edge
lab: $(STAMP)
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@cp binder/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$$(binder/cpus)} \
		$(BIN)/jupyter lab --notebook-dir=notebooks --no-browser --ip=127.0.0.1 --port=$(PORT) $(ROOT_FLAG)

# OMP_NUM_THREADS=1: one thread, as the shipped outputs were made; the nbval flags: compare outputs of cells marked NBVAL_CHECK_OUTPUT,
# use this environment's kernel, fail a hung cell after 300 s.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests notebooks \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=300 \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# The edit-test loop: unit tests only (no notebooks, solutions, browser or slow tests), well under 90 s on 2 cores.
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -m "not slow and not notebook and not browser" \
		-p no:cacheprovider -q

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy --strict $(TYPED)

clean:
	rm -rf $(VENV) eekit.egg-info
