# The two commands: `make demo` and `make test`. Both create or update .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# tcmalloc about doubles torch's CPU speed; used when installed (Debian: libtcmalloc-minimal4)
TCMALLOC := $(firstword $(wildcard /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib/libtcmalloc_minimal.so.4))
RUN := $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC) ,)$(PY)
SET ?=

.PHONY: demo test test-fast benchmark venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(RUN) scripts/0_downloadData.py $(SET)
	$(RUN) scripts/1_prepareData.py $(SET)
	$(RUN) scripts/2_refineDNN.py $(SET)
	$(RUN) scripts/3_runDNN.py $(SET)
	$(RUN) scripts/4_trainSVM.py $(SET)
	$(RUN) scripts/5_evaluate.py $(SET)

test: $(STAMP)
	$(RUN) -m pytest -ra $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(RUN) -m pytest -ra -m "not slow" $(PYTEST_ARGS)

benchmark: $(STAMP)
	$(RUN) benchmarks/featurize.py

clean:
	rm -rf $(VENV) build *.egg-info
