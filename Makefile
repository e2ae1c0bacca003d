# Attention Lab: the whole command surface.  `make lab` and `make test` are all a new user needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# nbgrader calls alembic from PATH: put the environment first
export PATH := $(CURDIR)/$(BIN):$(PATH)
PORT ?= 8888
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
LAB_FLAGS := --ServerApp.port=$(PORT) --ServerApp.port_retries=50 $(ROOT_FLAG) \
	--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate

.PHONY: setup lab instructor test test-fast lessons lessons-check bench lint screenshots clean-venv

# Create .venv and install everything; a stamp keeps re-runs instant until pyproject.toml changes.
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# torch first and pinned: the CPU wheel, never a multi-GB CUDA build pulled in by a range
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

# Learners: copy each lesson into workspace/ (never overwriting your work) and open JupyterLab there.
lab: setup
	$(PY) -m attnlab.workspace lessons workspace
	@# learners see Validate, not formgrader or the create-assignment tools (etc/jupyter/learner)
	cd workspace && JUPYTER_CONFIG_PATH=$(CURDIR)/etc/jupyter/learner ../$(BIN)/jupyter lab $(LAB_FLAGS) START_HERE.ipynb

# Instructors: JupyterLab at the course root with formgrader and the create-assignment tools.
instructor: setup
	JUPYTER_CONFIG_PATH=$(CURDIR)/etc/jupyter/instructor $(BIN)/jupyter lab $(LAB_FLAGS)

# Regenerate lessons/ from solutions/ (nbgrader generate_assignment).
lessons: setup
	$(PY) -m autograder build

lessons-check: setup
	$(PY) -m autograder build --check

test: setup
	$(PY) -m autograder build --check
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: setup
	$(PY) -m pytest -n 2 -m "not notebook and not browser"

lint: setup
	$(BIN)/ruff check autograder attnlab tests benchmarks

# Refresh the README's explorer screenshots (assets/NN_x/explorer.png) in a real Chromium.
screenshots: setup
	ATTNLAB_SCREENSHOTS=$(CURDIR)/assets $(PY) -m pytest tests/test_browser.py -k explorer_responds -p no:cacheprovider

# Re-measure everything in BENCHMARKS.md (lessons, attention memory, grade vs nbgrader).
bench: setup
	$(PY) benchmarks/run.py
	$(PY) benchmarks/attention_memory.py
	$(PY) benchmarks/grading.py --solutions

clean-venv:
	rm -rf $(VENV)

# `make -s print-LAB_FLAGS`: show a variable (the browser suite reads the real flags this way)
print-%:
	@echo $($*)
