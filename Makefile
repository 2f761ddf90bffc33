# make run: set up everything and start the API.  make test: the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install demo bench e2e lint clean deploy

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Standard library only: works on a fresh clone, before `make install`.
.env:
	$(PYTHON) scripts/make-env.py .env

# First deploy on a GPU host (docs/operations.md): the API first, the default model into the
# cache through it, then vLLM, so vLLM never starts on a model it cannot find.
deploy: .env
	$(PYTHON) scripts/deploy.py

run: install .env
	$(PY) -m api

test: install
	$(PY) -m pytest -q -p no:cacheprovider

demo: install
	$(PY) -m api.testing.demo

bench: install
	$(PY) bench/bench_download.py
	$(PY) bench/bench_scale.py
	$(PY) bench/bench_bandwidth.py

e2e: install
	bash tests/e2e/run-n8n.sh

lint:
	shellcheck scripts/modelctl scripts/management/*.sh .ci/run .ci/*.sh

clean:
	rm -rf $(VENV) .demo
