# Set-up and main entry points. Everything installs into ./.venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all lint-imports bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-binary wasserstein wasserstein
	$(BIN)/pip install --quiet torch==2.13.0    # the CPU build where it lies on disk (pyproject asks torch>=2.5)
	$(BIN)/pip install --quiet -e '.[all,test]'   # core: showers only; all: every extra (pyproject.toml)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)            ## simulate → train → sample → evaluate → report (≈ 10 min on 2 cores)
	$(BIN)/hepgen demo -o hepgen-demo

# Tests run in one worker per core (pytest-xdist; at most 4), a test module's tests in one worker
# (--dist loadscope: module fixtures are built once).  Each worker runs torch on one thread
# (tests/conftest.py), so the workers do not oversubscribe the cores.
XDIST  := -n auto --maxprocesses 4 --dist loadscope

test: $(STAMP)            ## the CI test suite (slow tests excluded; fast tests cover their code paths) + docstring examples
	$(BIN)/python -m pytest -m "not slow" $(XDIST)

lint-imports: $(STAMP)    ## the layer contracts of pyproject.toml ([tool.importlinter])
	$(BIN)/lint-imports

test-all: $(STAMP)
	$(BIN)/python -m pytest $(XDIST)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/bench_sampling.py
	$(BIN)/python benchmarks/bench_inference.py --checkpoint hepgen-demo/run/best.pt -o hepgen-demo/bench

clean:
	rm -rf $(VENV) hepgen-demo .pytest_cache
