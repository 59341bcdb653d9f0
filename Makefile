# Two entry points: `make serve` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --constraint constraints.txt
HOST ?= 127.0.0.1
PORT ?= 8000
# Debian packages the tests drive for real; installed when missing (apt-get) by scripts/install-system-packages.
TEST_SYSTEM_PACKAGES := chromium

.PHONY: serve test openapi bench install install-test system-packages

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install: $(PY)
	$(PIP) --quiet -e .

install-test: $(PY)
	$(PIP) --quiet -e '.[test]'

serve: install
	EXPLAIN_HOST=$(HOST) EXPLAIN_PORT=$(PORT) $(PY) -m service

system-packages:
	scripts/install-system-packages $(TEST_SYSTEM_PACKAGES)

test: install-test system-packages
	$(PY) -m pytest -q

openapi: install-test
	$(PY) -m service.openapi_export > openapi.yaml

bench: install
	$(PIP) --quiet -e '.[bench]'
	$(PY) bench/throughput.py
	$(PY) bench/request_path.py
	$(PY) bench/fairness.py
	$(PY) bench/visualization.py
