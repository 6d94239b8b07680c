# The two commands a fresh machine needs (README.md):
#   make repro   install into .venv, make sure the datasets in params.yaml are present, run `dvc repro`
#   make test    install into .venv, make sure Fashion-MNIST and sshd are present, run the test suite
# Both are idempotent: the install runs again only when pyproject.toml changes.

VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kc-installed

.PHONY: install data repro test paper-dryrun bench gpu-check clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch and torchvision come together from the package index (the CUDA build, which runs on CPU);
	# a machine-local CPU-only torch wheel listed in PIP_FIND_LINKS cannot load torchvision's ops.
	PIP_FIND_LINKS= $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

data: install
	scripts/ensure_data.sh

# Stage commands run `python`: the venv's, first on PATH.
repro: data
	$(BIN)/python -m kc check params.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# The end-to-end test runs the real pipeline on Fashion-MNIST, so the data check runs here too; it
# pushes to an SSH remote served by its own sshd on 127.0.0.1, so OpenSSH's server is made sure of too.
test: data
	scripts/ensure_sshd.sh
	$(BIN)/python -m pytest -q

# configs/paper.yaml's whole DAG on generated copies of CUB, Stanford Dogs and VOC (CI runs it too).
paper-dryrun: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/paper_dryrun.py

bench: install
	$(BIN)/python bench/consistency_speed.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/stage_overhead.py

# The check of kc's CUDA paths (bench/gpu_check.py: ~1 minute on one H100; exits 0 saying so without
# CUDA). It needs torch, torchvision and numpy only and imports kc from this folder, so it runs on a
# bare GPU machine: no install step, the venv's python when there is one, else python3.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)

gpu-check:
	PYTHONPATH=. $(GPU_PYTHON) bench/gpu_check.py --json gpu_check.json

clean-venv:
	rm -rf $(VENV)
