# The two commands of the README: `make demo` and `make test`.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.audioscene-installed
DEMO_OUT ?= demo_output

.PHONY: demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PYTHON) || python3 -m venv $(VENV)
	# torch first and exactly: this pin takes the local CPU wheel; anything else downloads GBs.
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e '.[test]'
	# HEAR's validator, for tests/test_hear.py: without its dependencies (TensorFlow, GBs, is asked
	# for only to recognise TensorFlow models; the test gives it a stand-in)
	$(PYTHON) -m pip install --quiet --no-deps hearvalidator==2021.0.2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/audioscene demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PYTHON) -m pytest -q -n 2

bench: $(STAMP)
	$(PYTHON) -m pip install --quiet -e '.[test,bench]'
	for script in benchmarks/bench_*.py; do $(PYTHON) $$script || exit 1; done
	$(PYTHON) benchmarks/estimate_audioset.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info src/*.egg-info
