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

.PHONY: setup system-deps lab instructor test test-fast lessons lessons-check bench lint screenshots \
	clean-venv hub hub-proxy hub-roster hub-grade

# PyTorch comes first and pinned. On Linux PyPI's wheel is the CUDA build (GBs of NVIDIA
# libraries), so it comes from PyTorch's CPU index when that answers within 15 s, else from PyPI.
# A CUDA build: `make TORCH_INDEX=https://download.pytorch.org/whl/cu126`; PyPI's: `make TORCH_INDEX=`.
# macOS: PyPI (no CUDA wheels there).
TORCH := torch==2.13.0
ifeq ($(shell uname -s),Linux)
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
endif

# Create .venv and install everything; a stamp keeps re-runs instant until pyproject.toml changes.
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_INDEX)" ] && timeout 15 $(PY) -c 'import sys, urllib.request; \
			urllib.request.urlopen(sys.argv[1], timeout=10)' '$(TORCH_INDEX)/torch/' 2>/dev/null; then \
		echo "$(TORCH) from $(TORCH_INDEX)"; \
		$(PY) -m pip install --quiet '$(TORCH)' --extra-index-url '$(TORCH_INDEX)'; \
	else \
		echo "$(TORCH) from PyPI$(if $(TORCH_INDEX), ($(TORCH_INDEX) did not answer))"; \
		$(PY) -m pip install --quiet '$(TORCH)'; \
	fi
	$(PY) -m pip install --quiet -e '.[test,hub]'
	@touch $@

# System packages some tests need (Debian/Ubuntu): Chromium (browser suite), PostgreSQL (shared
# gradebook), Node.js and npm (the hub). Root installs the missing ones; without them those
# tests skip and say why. `make test` runs this first when root.
system-deps:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -z "$$missing" ]; then \
		echo "system packages: all present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else \
		echo "system packages missing:$$missing (as root: make system-deps); their tests will skip"; \
	fi

# Learners: copy each lesson into workspace/ (never overwriting your work) and open JupyterLab there.
lab: setup
	$(PY) -m attnlab.workspace lessons workspace
	@# learners see Validate, not formgrader or the create-assignment tools (etc/jupyter/learner)
	cd workspace && JUPYTER_CONFIG_PATH=$(CURDIR)/etc/jupyter/learner ../$(BIN)/jupyter lab $(LAB_FLAGS) START_HERE.ipynb

# Instructors: JupyterLab at the course root with formgrader and the create-assignment tools.
instructor: setup
	JUPYTER_CONFIG_PATH=$(CURDIR)/etc/jupyter/instructor \
	JUPYTER_PATH=$(CURDIR)/etc/jupyter/instructor/data $(BIN)/jupyter lab $(LAB_FLAGS)

# Regenerate lessons/ from solutions/ (nbgrader generate_assignment).
lessons: setup
	$(PY) -m autograder build

lessons-check: setup
	$(PY) -m autograder build --check

test: setup $(if $(filter 0,$(shell id -u)),system-deps hub-proxy)
	$(PY) -m autograder build --check
	$(PY) -m pytest -n 2 --dist loadgroup --ignore=tests/test_hub.py
	@# the class on JupyterHub: one hub, its steps in order, in a process of its own
	$(PY) -m pytest tests/test_hub.py

test-fast: setup
	$(PY) -m pytest -n 2 -m "not notebook and not browser"

lint: setup
	$(BIN)/ruff check autograder attnlab tests benchmarks hub

# Refresh the README's explorer screenshots (assets/NN_x/explorer.png) in a real Chromium.
screenshots: setup
	ATTNLAB_SCREENSHOTS=$(CURDIR)/assets $(PY) -m pytest tests/test_browser.py -k explorer_responds -p no:cacheprovider

# Re-measure everything in BENCHMARKS.md (lessons, attention memory, grade vs nbgrader).
bench: setup
	$(PY) benchmarks/run.py
	$(PY) benchmarks/check_overhead.py
	$(PY) benchmarks/attention_memory.py
	$(PY) benchmarks/grading.py --solutions

# --- A class on JupyterHub (hub/; README "Teaching a class on JupyterHub"), as root --------
HUB_DIR ?= /srv/attention-lab
ROSTER ?= $(HUB_DIR)/roster.csv
HUB_IP ?= 127.0.0.1
HUB_PORT ?= 8000
HUB_MEM ?= 2G
HUB_CULL ?= 3600
CHP := $(VENV)/node/node_modules/.bin/configurable-http-proxy

# The roster's accounts, then JupyterHub in the foreground (Ctrl-C stops it; state stays on disk).
hub: setup hub-proxy
	@[ "$$(id -u)" = 0 ] || { echo "make hub: run as root (it creates the class's system users)"; exit 2; }
	@[ -f "$(ROSTER)" ] || { echo "make hub: no roster at $(ROSTER) (see hub/roster.example.csv; ROSTER=file)"; exit 2; }
	$(PY) hub/roster.py $(ROSTER) --hub-dir $(HUB_DIR)
	cd $(HUB_DIR)/state && ATTNLAB_HUB_DIR=$(HUB_DIR) ATTNLAB_HUB_IP=$(HUB_IP) ATTNLAB_HUB_PORT=$(HUB_PORT) \
		ATTNLAB_MEM_LIMIT=$(HUB_MEM) ATTNLAB_CULL_TIMEOUT=$(HUB_CULL) ATTNLAB_CHP=$(CURDIR)/$(CHP) \
		$(CURDIR)/$(BIN)/jupyterhub -f $(CURDIR)/hub/jupyterhub_config.py

# configurable-http-proxy from npm, into the project's environment (installed once).
hub-proxy: $(CHP)
$(CHP):
	@command -v npm >/dev/null || { echo "make hub-proxy: npm is missing (as root: make system-deps)"; exit 2; }
	npm install --silent --no-audit --no-fund --prefix $(VENV)/node 'configurable-http-proxy@^5'

# Mid-term: add the line to the roster, then this (the running hub admits the new learner).
hub-roster: setup
	$(PY) hub/roster.py $(ROSTER) --hub-dir $(HUB_DIR)

# Grade a lesson's collected submissions (`nbgrader collect` first) in root's sandbox, then
# hand the files back to the instructors: `make hub-grade LESSON=01`.
hub-grade: setup
	$(PY) -m autograder grade $(HUB_DIR)/course/submitted --course $(HUB_DIR)/course \
		--lesson $(LESSON) --out $(HUB_DIR)/course/graded
	chown -R --reference=$(HUB_DIR)/course $(HUB_DIR)/course

clean-venv:
	rm -rf $(VENV)

# `make -s print-LAB_FLAGS`: show a variable (the browser suite reads the real flags this way)
print-%:
	@echo $($*)
