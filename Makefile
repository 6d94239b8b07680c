# The two commands a fresh machine needs (README.md):
#   make repro   install into .venv, make sure the datasets in params.yaml are present, run `dvc repro`
#   make test    install into .venv, make sure Fashion-MNIST is present, run the test suite
# Both are idempotent: the install runs again only when pyproject.toml changes.

VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kc-installed

.PHONY: install data repro test bench clean-venv

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

# The end-to-end test runs the real pipeline on Fashion-MNIST, so the data check runs here too.
test: data
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/consistency_speed.py
	$(BIN)/python bench/memory.py

clean-venv:
	rm -rf $(VENV)
