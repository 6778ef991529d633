# Two commands on a fresh machine: `make demo` and `make test` (both run `make setup` first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup data prometheus java kafka-jars kafka milvus test test-unit lint demo train bench bench-e2e bench-vectors bench-encoder \
	bench-recbole clean

setup: $(STAMP)

# torch first, from the pinned CPU wheel: an unpinned torch pulls several GB of CUDA wheels.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]" torch==2.13.0
	touch $(STAMP)

# The stream tests replay ml-100k: fetch it (once, from PyPI) before the tests, which talk only to loopback.
data: setup
	$(BIN)/iu data fetch ml-100k

# The observability test runs a real Prometheus and promtool: Debian's package (sudo when not root).
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null || { \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; }

# Apache Kafka runs from its jars on Maven Central: a JDK and Maven from Debian where missing.
java:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -qq --no-install-recommends default-jdk-headless maven >/dev/null || { \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends default-jdk-headless maven \
	    >/dev/null; }; }

# Kafka's broker jars (ops/kafka/pom.xml) into var/kafka/lib, once.
kafka-jars: setup java
	$(BIN)/python -m ops.kafka fetch

# The production stack on this machine: a 3-node Apache Kafka cluster (NODES=1 for one) and a Milvus
# server, each in the foreground until Ctrl-C; each prints the IU_* settings that point a worker at it.
NODES ?= 3
kafka: kafka-jars
	$(BIN)/python -m ops.kafka run --nodes $(NODES)

milvus: setup
	$(BIN)/milvus-server --data var/milvus-server --proxy-port 19530

test: setup data prometheus kafka-jars
	$(BIN)/ruff check .
	$(BIN)/pytest

# The quick loop: pure logic and in-process checks (pytest marker `unit`), under a minute; no data, broker
# or Milvus needed. `make test` runs these and the `integration` tests.
test-unit: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -m unit

lint: setup
	$(BIN)/ruff check .

# Broker, milvus-lite, a model (trained first if missing), a worker, a replay of ml-100k, a summary.
demo: setup
	$(BIN)/iu demo

# Benchmarks (not timed tests): each prints a table; add --record to append it to ops/bench/RESULTS.md.
bench: bench-e2e bench-vectors bench-encoder

bench-e2e: data
	$(BIN)/python -m ops.bench.e2e

bench-vectors: setup
	$(BIN)/python -m ops.bench.vectors

bench-encoder: setup
	$(BIN)/python -m ops.bench.encoder

bench-recbole: setup
	$(BIN)/python -m ops.bench.recbole_peer --model var/models/ml-100k

clean:
	rm -rf $(VENV) var *.egg-info
