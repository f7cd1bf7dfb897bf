# The two commands: `make demo` and `make test`. Both create or update .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# tcmalloc about doubles torch's CPU training speed: `make` installs Debian's libtcmalloc-minimal4 where apt
# works (target tcmalloc) and preloads it when it is there (looked up when a recipe runs, so after installing)
TCMALLOC = $(shell ls /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib/libtcmalloc_minimal.so.4 2>/dev/null | head -n 1)
RUN = $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC) ,)$(PY)
SET ?=
# the web service (make serve): gunicorn's settings are in aml_config/gunicorn.conf.py, the app's in the environment
HOST ?= 127.0.0.1
PORT ?= 5000
WORKERS ?= 2
GUNICORN := HOST=$(HOST) PORT=$(PORT) WORKERS=$(WORKERS) $(VENV)/bin/gunicorn -c aml_config/gunicorn.conf.py
# the bundle the service loads: MODEL_DIR if set, else the results folder of the dataset that SET names
BUNDLE_DIR = $${MODEL_DIR:-$$($(DATASET_DIRS) | cut -f3)}

# where the dataset that SET names keeps its images and its results
DATASET_DIRS = $(PY) -c 'import sys, PARAMETERS; from libraries import layout, settings; p = layout.dataset_paths(settings.parse(PARAMETERS, sys.argv[1:])[0]); print(p.images, p.proc, p.bundle, sep=chr(9))' $(SET)

.PHONY: demo run params test test-fast benchmark serve browser tcmalloc venv clean

venv: $(STAMP) tcmalloc

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP) tcmalloc
	$(RUN) scripts/0_downloadData.py $(SET)
	$(RUN) scripts/1_prepareData.py $(SET)
	$(RUN) scripts/2_refineDNN.py $(SET)
	$(RUN) scripts/3_runDNN.py $(SET)
	$(RUN) scripts/4_trainSVM.py $(SET)
	$(RUN) scripts/5_evaluate.py $(SET)
	@echo "starting the web service on $(HOST):$(PORT), calling it with scripts/6_callWebservice.py, stopping it"
	@MODEL_DIR="$(BUNDLE_DIR)" $(GUNICORN) --log-level warning --access-logfile /dev/null & pid=$$!; \
	  $(PY) scripts/6_callWebservice.py --url http://$(HOST):$(PORT)/score --wait 60 $(SET); status=$$?; \
	  kill -TERM $$pid; wait $$pid; exit $$status

# your own data: scripts 1-5 (0-5 when the images folder does not exist yet: a URL list downloads it), e.g.
#   make run SET="--set datasetName=mine"
run: $(STAMP) tcmalloc
	@dirs=$$($(DATASET_DIRS)) || exit 1; IFS="$$(printf '\t')"; set -- $$dirs; \
	  if [ ! -d "$$1" ]; then echo "$$1 does not exist: scripts/0_downloadData.py downloads it if a URL list names its images"; \
	    $(RUN) scripts/0_downloadData.py $(SET) || exit 1; fi
	$(RUN) scripts/1_prepareData.py $(SET)
	$(RUN) scripts/2_refineDNN.py $(SET)
	$(RUN) scripts/3_runDNN.py $(SET)
	$(RUN) scripts/4_trainSVM.py $(SET)
	$(RUN) scripts/5_evaluate.py $(SET)
	@IFS="$$(printf '\t')"; set -- $$($(DATASET_DIRS)); echo; echo "results: $$2"; echo "report:  $$2/report.html"; \
	  echo "serve the model:   make serve SET=\"$(SET)\""; \
	  echo "predict a folder:  $(PY) scripts/predict.py FOLDER $(SET)"

# every parameter in effect, after the overrides in SET
params: $(STAMP)
	@$(PY) scripts/1_prepareData.py --print-params $(SET)

serve: $(STAMP)
	MODEL_DIR="$(BUNDLE_DIR)" $(GUNICORN)

test: $(STAMP) tcmalloc browser
	$(RUN) -m pytest -ra $(PYTEST_ARGS)

# Debian's chromium and its driver, for the upload-page test; where they cannot be installed, that test is skipped
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "installing Debian's chromium and chromium-driver for the upload-page test"; \
	  { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }; } || \
	  echo "could not install chromium (needs root and Debian's package registry): the browser test will be skipped"; \
	fi

# Debian's tcmalloc, preloaded by the commands above; where it cannot be installed they run with glibc's malloc
tcmalloc:
	@if [ -z "$(TCMALLOC)" ]; then \
	  echo "installing Debian's libtcmalloc-minimal4 (about 2x faster training on the CPU)"; \
	  { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1; }; } || \
	  echo "could not install libtcmalloc-minimal4 (needs root and Debian's package registry): running without it"; \
	fi

test-fast: $(STAMP) tcmalloc
	$(RUN) -m pytest -ra -m "not slow" $(PYTEST_ARGS)

benchmark: $(STAMP) tcmalloc
	$(RUN) benchmarks/featurize.py
	$(RUN) benchmarks/refine.py
	$(RUN) benchmarks/backbones.py
	$(RUN) benchmarks/ray_featurize.py
	$(RUN) benchmarks/feature_cache.py
	$(RUN) benchmarks/service.py

clean:
	rm -rf $(VENV) build *.egg-info
