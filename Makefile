# rramlib: `make book` executes the notebooks and builds the companion book (PROFILE=smoke|quick|paper,
# default quick; FORCE=1 re-executes every notebook; BOOK_ARGS="-p drift_scale 2" passes parameters; JOBS=N runs
# N notebooks at once),
# `make test` runs the tests, `make sweep` runs the quick drift sweep; DATA_ROOT=DIR names the dataset folder
# (e.g. the CIFAR-10 images for PROFILE=cifar); `make record PROFILE=cifar DATA_ROOT=DIR` builds that book
# (cached) and records its results in recorded/cifar/ for the default book.
# All create a local virtual environment (.venv) on first use and install what they need.
PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= quick
PRESETS ?= relative_gaussian ibm_cmo_reram ibm_pcm measured
OUT     ?= results/$(PROFILE)
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.rramlib-installed

BOOK_ARGS ?=
DATA_ROOT ?=
JOBS ?=
BOOK_ENV := $(if $(DATA_ROOT),RRAMLIB_DATA_ROOT=$(abspath $(DATA_ROOT))) $(if $(JOBS),RRAMLIB_BOOK_JOBS=$(JOBS))

.PHONY: install test book record sweep benchmark clean

# aihwkit-lightning: test-only cross-check of rramlib.device.crossbar; --no-deps because its metadata pins torch==2.13.0
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,book,cluster,text]"
	$(PY) -m pip install --quiet --no-deps aihwkit-lightning==2.1.0
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

book: $(STAMP)
	$(BOOK_ENV) $(PY) -m rramlib book --profile $(PROFILE) $(if $(FORCE),--force) $(BOOK_ARGS)

record: $(STAMP)
	$(BOOK_ENV) $(PY) -m rramlib record --profile $(PROFILE) $(BOOK_ARGS)

sweep: $(STAMP)
	mkdir -p $(OUT)
	for preset in $(PRESETS); do \
	  $(PY) -m rramlib sweep --profile $(PROFILE) --preset $$preset --out $(OUT)/sweep_$$preset.json || exit 1; \
	done

benchmark: $(STAMP)
	$(PY) benchmarks/drift_sweep.py

clean:
	rm -rf $(VENV) .rramlib_cache results _build
