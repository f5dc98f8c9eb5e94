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

.PHONY: install demo test test-quick bench benchmark clean monailabel test-monailabel

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -e ".[test]"
	touch $(STAMP)

# MONAI Label app (optional): its own venv, since monailabel needs numpy<2 and pydicom<3.
# The torch installed first is pinned, so pip cannot replace it with a CUDA build.
ML_VENV    := .venv-monailabel
ML_PYTHON  := $(ML_VENV)/bin/python
ML_STAMP   := $(ML_VENV)/.installed

monailabel: $(ML_STAMP)

$(ML_STAMP): pyproject.toml
	test -x $(ML_PYTHON) || python3 -m venv $(ML_VENV)
	$(ML_PYTHON) -c "import torch" 2>/dev/null || $(ML_PYTHON) -m pip install "$(TORCH_SPEC)"
	$(ML_PYTHON) -c "import torch; print('torch==' + torch.__version__)" > $(ML_VENV)/constraints.txt
	# monailabel 0.8.5 needs numpy<2; dicomweb-client 0.61 needs pydicom 3. Said outright,
	# pip resolves them with the XA decoders; left to backtrack, it gives up.
	printf 'numpy<2\ndicomweb-client<0.61\n' >> $(ML_VENV)/constraints.txt
	$(ML_PYTHON) -m pip install -c $(ML_VENV)/constraints.txt -e ".[monailabel]" "pytest>=7.4"
	touch $(ML_STAMP)

test-monailabel: monailabel
	$(ML_PYTHON) -m pytest -q tests/apps/test_monailabel_app.py

demo: install
	$(VENV)/bin/sdfcar demo --out demo_output --overwrite

# The MONAI Label server test runs through .venv-monailabel; when that venv cannot be built
# (no network, say) the test is skipped with the reason printed, and the rest still runs.
test: install
	-$(MAKE) monailabel
	$(PYTHON) -m pytest -q

# The quick subset while developing: no subprocess, Ray, server or full-preset test.
test-quick: install
	$(PYTHON) -m pytest -q -m "not slow"

bench: install
	$(PYTHON) benchmarks/projector_speed.py

# The full quality/speed/robustness suite (resumable; about 1 hour on 2 CPU cores), then
# docs/benchmarks.md is regenerated from benchmarks/results/.
benchmark: install
	$(PYTHON) benchmarks/run.py

clean:
	rm -rf $(VENV) $(ML_VENV) demo_output .pytest_cache
