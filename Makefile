# Two entry points: `make serve` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --constraint constraints.txt
HOST ?= 127.0.0.1
PORT ?= 8000
# Debian packages the tests drive for real; installed when missing (apt-get) by scripts/install-system-packages
# (nginx: the gateway of tests/deploy; kubectl: its kustomize renders deploy/k8s; chromium: tests/page;
# podman, buildah, mmdebstrap: the image built and run by tests/deploy/test_image.py; redis-server: the job store
# of tests/deploy/test_redis_jobs.py and of `make stack STACK_JOBS=redis`).
IMAGE_SYSTEM_PACKAGES := podman buildah mmdebstrap
TEST_SYSTEM_PACKAGES := nginx kubectl chromium redis-server $(IMAGE_SYSTEM_PACKAGES)
# npm tools the tests run (dclint: the compose file's linter), pinned, installed into .tools/ from the npm registry.
TEST_NPM_TOOLS := dclint@3.1.0

.PHONY: serve test docs openapi bench install install-test install-docs lock system-packages npm-tools stack loadtest image

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The client's distribution (clients/python: explain_client, the `explain` command and the wire models that the
# service imports too) is installed with the service, so that the service's dependency on it is met from this tree.
CLIENT := -e ./clients/python

# Runtime dependencies from the lock (requirements.lock: every one pinned with the hashes of its files; `make lock`
# writes it), then this tree's two distributions; the test and docs extras on top, under constraints.txt.
LOCK := requirements.lock

install: $(PY)
	$(PY) -m pip install --quiet --require-hashes --requirement $(LOCK)
	$(PIP) --quiet --no-deps $(CLIENT) -e .

install-test: install
	$(PIP) --quiet $(CLIENT) -e '.[test,docs]'

lock: $(PY)
	$(PY) -m pip install --quiet pip-tools==7.7.0
	$(PY) scripts/lock-requirements

serve: install
	EXPLAIN_HOST=$(HOST) EXPLAIN_PORT=$(PORT) $(PY) -m service

system-packages:
	scripts/install-system-packages $(TEST_SYSTEM_PACKAGES)

npm-tools:
	npm install --prefix .tools --no-audit --no-fund --silent $(TEST_NPM_TOOLS)

test: install-test system-packages npm-tools docs
	$(PY) -m pytest -q

# The documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link or a missing page fails.
install-docs: install
	$(PIP) --quiet $(CLIENT) -e '.[docs]'

docs: install-docs
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

openapi: install-test
	$(PY) -m service.http.openapi_export > openapi.yaml

bench: install
	$(PIP) --quiet -e '.[bench]'
	$(PY) bench/throughput.py
	$(PY) bench/request_path.py
	$(PY) bench/fairness.py
	$(PY) bench/tenants.py
	$(PY) bench/visualization.py
	$(PY) bench/metrics.py
	scripts/install-system-packages nginx redis-server
	$(PY) bench/job_store.py

# The CPU image explain-service:cpu (scripts/build-image: docker when an engine answers, else podman;
# CONTAINER_ENGINE overrides). `make image BASE_IMAGE=localhost/explain-base:bookworm` builds on a local base
# (scripts/make-base-image makes it); TORCH_INDEX_URL and PIP_CERT pass through (see the script).
image:
	BASE_IMAGE="$(BASE_IMAGE)" TORCH_INDEX_URL="$(TORCH_INDEX_URL)" PIP_CERT="$(PIP_CERT)" scripts/build-image

# The deployment's topology without Docker: nginx (deploy/gateway/) on GATEWAY_PORT in front of REPLICAS replicas
# on the next ports, in the foreground; Ctrl+C drains and stops everything. STACK_JOBS=redis keeps the jobs in a
# redis-server started on the port after the replicas' (or in EXPLAIN_JOB_STORE_URL's Redis).
GATEWAY_PORT ?= 8080
REPLICAS ?= 2
STACK_JOBS ?= memory
stack: install
	scripts/install-system-packages nginx $(if $(filter redis,$(STACK_JOBS)),redis-server)
	GATEWAY_PORT=$(GATEWAY_PORT) REPLICAS=$(REPLICAS) STACK_JOBS=$(STACK_JOBS) $(PY) deploy/stack.py

# Locust, headless, against URL (default: the local stack of `make stack`, started separately) for DURATION;
# the HTML report, CSVs, plots and a summary table land in loadtest/out/.
URL ?= http://127.0.0.1:$(GATEWAY_PORT)
DURATION ?= 60s
USERS ?= 16
loadtest: install
	$(PIP) --quiet -e '.[loadtest]'
	mkdir -p loadtest/out
	$(PY) -m locust -f loadtest/locustfile.py --headless --host $(URL) --users $(USERS) --spawn-rate $(USERS) \
		--run-time $(DURATION) --csv loadtest/out/run --csv-full-history --html loadtest/out/report.html \
		--only-summary --exit-code-on-error 0
	$(PY) loadtest/plots.py loadtest/out
