# rramlib: `make book` executes the notebooks and builds the companion book (PROFILE=smoke|quick|paper,
# default quick; FORCE=1 re-executes every notebook; BOOK_ARGS="-p drift_scale 2" passes parameters),
# `make test` runs the tests, `make sweep` runs the quick drift sweep.
# All create a local virtual environment (.venv) on first use and install what they need.
PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= quick
PRESETS ?= relative_gaussian ibm_cmo_reram ibm_pcm measured
OUT     ?= results/$(PROFILE)
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.rramlib-installed

BOOK_ARGS ?=

.PHONY: install test book sweep benchmark clean

# aihwkit-lightning: test-only cross-check of rramlib.crossbar; --no-deps because its metadata pins torch==2.13.0
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,book,cluster]"
	$(PY) -m pip install --quiet --no-deps aihwkit-lightning==2.1.0
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

book: $(STAMP)
	$(PY) -m rramlib book --profile $(PROFILE) $(if $(FORCE),--force) $(BOOK_ARGS)

sweep: $(STAMP)
	mkdir -p $(OUT)
	for preset in $(PRESETS); do \
	  $(PY) -m rramlib sweep --profile $(PROFILE) --preset $$preset --out $(OUT)/sweep_$$preset.json || exit 1; \
	done

benchmark: $(STAMP)
	$(PY) benchmarks/drift_sweep.py

clean:
	rm -rf $(VENV) .rramlib_cache results _build
