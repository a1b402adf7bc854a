# Two commands a newcomer needs:  `make demo`  and  `make test`.  Both create .venv/ from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU build of torch first: an open `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	HNSWLIB_NO_NATIVE=1 $(BIN)/python -m pip install -q -e ".[test,bench]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/similar-cases demo

# Python versions (docs/slicer.md): the module file must import on Slicer 5.6/5.8's Python 3.9 to say which Slicer
# it needs; the library (and the worker) need 3.10 (Slicer >= 5.10 bundles 3.12).
VERMIN := $(BIN)/vermin --no-tips --violations --eval-annotations --feature union-types

test: $(STAMP)
	$(BIN)/ruff check SimilarCaseRetrieval Testing benchmarks
	$(VERMIN) -t=3.9- SimilarCaseRetrieval/SimilarCaseRetrieval.py
	$(VERMIN) -t=3.10- SimilarCaseRetrieval/SimilarCaseRetrievalLib
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-archive demo-output
