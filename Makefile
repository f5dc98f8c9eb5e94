# Set-up and entry points. `make install` creates .venv/ in the repo root (idempotent);
# `make demo` and `make test` install first when needed.
VENV       := .venv
PYTHON     := $(VENV)/bin/python
# PyTorch is installed before the package so that pip takes the build pinned here (on the
# project's CI machines this resolves to a local CPU wheel). Users with CUDA may override it,
# e.g. `make install TORCH_SPEC=torch` or install their own torch first: an installed torch
# is kept as it is.
TORCH_SPEC ?= torch==2.13.0
STAMP      := $(VENV)/.installed

.PHONY: install demo test bench benchmark clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -e ".[test]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/sdfcar demo --out demo_output --overwrite

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) benchmarks/projector_speed.py

# The full quality/speed/robustness suite (resumable; about 1 hour on 2 CPU cores), then
# docs/benchmarks.md is regenerated from benchmarks/results/.
benchmark: install
	$(PYTHON) benchmarks/run.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
