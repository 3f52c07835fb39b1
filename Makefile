# Daylight: the two commands of a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DAYLIGHT := $(BIN)/daylight
STAMP := $(VENV)/.installed
KAFKA_VERSION ?= $(or $(DAYLIGHT_KAFKA_VERSION),3.9.1)
TEST_PORT ?= 19092
TEST_DATA = .daylight/test-kafka-$(TEST_PORT)
DEMO_DATA := .daylight/kafka-data

.PHONY: install kafka prometheus lint test unit soak bench demo schemas dashboard lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The engine and the detectors' steps compiled to C in place (mypyc; deploy/compile_detectors.py),
# again whenever a source changes.
COMPILED := $(VENV)/.compiled
$(COMPILED): $(STAMP) deploy/compile_detectors.py $(wildcard detectors/*.py detectors/core/*.py)
	$(BIN)/python deploy/compile_detectors.py
	touch $@

install: $(STAMP) $(COMPILED)

kafka: install
	DAYLIGHT_KAFKA_VERSION=$(KAFKA_VERSION) $(DAYLIGHT) broker fetch

# promtool and the Prometheus server, from Debian's package (the rule tests and the live test).
prometheus:
	@command -v promtool > /dev/null 2>&1 && command -v prometheus > /dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus; }

# Throughput, latency and memory against the raw-client ceiling and a Quix Streams peer, on a
# broker of its own; prints one JSON line (docs/PERFORMANCE.md). BENCH_ARGS=--help lists options.
BENCH_PORT ?= 19592
BENCH_DATA = .daylight/bench-kafka-$(BENCH_PORT)
BENCH_VENV := .bench-venv

$(BENCH_VENV)/.installed: tests/bench/quix-constraints.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q -r tests/bench/quix-constraints.txt
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

schemas: install
	$(DAYLIGHT) schemas export

dashboard: install
	$(BIN)/python deploy/grafana/dashboard.py

# Unit tests, then a fresh broker on $(TEST_PORT) for the integration tests; the broker is
# stopped whatever the outcome.
test: install kafka prometheus $(BENCH_VENV)/.installed lint
	rm -rf $(TEST_DATA)
	DAYLIGHT_KAFKA_VERSION=$(KAFKA_VERSION) $(DAYLIGHT) broker start --port $(TEST_PORT) --data-dir $(TEST_DATA)
	status=0; \
	DAYLIGHT_BOOTSTRAP_SERVERS=127.0.0.1:$(TEST_PORT) DAYLIGHT_TEST_BROKER_DATA=$(TEST_DATA) \
	  DAYLIGHT_KAFKA_VERSION=$(KAFKA_VERSION) \
	  $(BIN)/pytest -ra --timeout=600 tests || status=$$?; \
	DAYLIGHT_KAFKA_VERSION=$(KAFKA_VERSION) $(DAYLIGHT) broker stop --port $(TEST_PORT) --data-dir $(TEST_DATA); \
	exit $$status

# 5M events through every agent on a broker of its own: memory, descriptors and state stay flat.
# (`make test` runs the same check on 300k events.)
soak: install kafka
	DAYLIGHT_SOAK_EVENTS=$${DAYLIGHT_SOAK_EVENTS:-5000000} DAYLIGHT_KAFKA_VERSION=$(KAFKA_VERSION) \
	  $(BIN)/pytest -ra -s --timeout=14400 tests/reliability/test_soak.py

bench: install kafka $(BENCH_VENV)/.installed
	rm -rf $(BENCH_DATA)
	DAYLIGHT_KAFKA_VERSION=$(KAFKA_VERSION) $(DAYLIGHT) broker start --port $(BENCH_PORT) --data-dir $(BENCH_DATA)
	status=0; \
	$(BIN)/python -m tests.bench.run --servers 127.0.0.1:$(BENCH_PORT) $(BENCH_ARGS) || status=$$?; \
	DAYLIGHT_KAFKA_VERSION=$(KAFKA_VERSION) $(DAYLIGHT) broker stop --port $(BENCH_PORT) --data-dir $(BENCH_DATA); \
	exit $$status

unit: install
	$(BIN)/pytest -ra -m "not integration" tests

demo: install kafka
	bash deploy/demo.sh

# Re-pin every dependency after changing pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude daylight > constraints.txt
	rm -rf .lock-venv

clean:
	-$(DAYLIGHT) broker stop --port $(TEST_PORT) --data-dir $(TEST_DATA)
	-$(DAYLIGHT) broker stop
	-$(BIN)/python deploy/compile_detectors.py --clean
	rm -rf .daylight $(VENV) $(BENCH_VENV) build
