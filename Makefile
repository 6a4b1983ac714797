# Two entry points that do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast conformance clean

$(STAMP): pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints-dev.txt -e ".[test,torch,cuda,serve,ray,tune]"
	touch $(STAMP)

# The main job on a shipped example: inspect, compile, and run it.
demo: $(STAMP)
	$(PY) examples/make_example.py examples/build
	$(VENV)/bin/compile inspect examples/build/tiny_cnn.onnx --input-shape image=2,3,32,32
	$(VENV)/bin/compile examples/build/tiny_cnn.onnx --target llvm --input-shape image=2,3,32,32 -o examples/build/tiny_cnn.cmod
	$(VENV)/bin/compile run examples/build/tiny_cnn.cmod --inputs examples/build/tiny_cnn_input.npz -o examples/build/tiny_cnn_out.npz

# Whole suite (CPU only; GPU tests are marked `cuda` and skip without one). Two pytest
# workers on two cores: one BLAS thread each, or numpy's matmuls fight over the cores.
TEST_ENV := OPENBLAS_NUM_THREADS=1

test: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -n 2 -q

test-fast: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -n 2 -q -m "not slow"

clean:
	rm -rf $(VENV) examples/build
