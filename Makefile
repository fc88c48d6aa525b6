# Foldflow: `make demo` and `make test` are the two commands (README.md).
# Everything runs from .venv; `make setup` creates it from pyproject.toml + constraints.txt.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.foldflow-installed

.PHONY: setup tools test lint demo soak stack-up stack-down stack-status constraints

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# The whole suite against real Kafka and PostgreSQL (the session fixture starts the
# local stack when nothing answers on FOLDFLOW_KAFKA_BOOTSTRAP / FOLDFLOW_DATABASE_URL).
test: setup tools
	$(PY) -m pytest

# Prometheus (and its promtool) from Debian's packages, so the dashboard and alert-rule
# tests run against a real Prometheus; without it those tests skip and say so.
tools:
	@command -v prometheus >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
	  || echo "prometheus not installed: the Prometheus-backed tests will skip"; }

# Not part of `make test`: the scaled-out system (3 orchestrators, 3 workers, 2 projectors,
# 2 gateways) under steady load with a random instance SIGKILLed every minute, for
# SOAK_MINUTES; a table, a plot and the raw samples land in bench/runs/soak-*.
SOAK_MINUTES ?= 30
soak: setup
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench]'
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

demo: setup
	$(VENV)/bin/foldflow demo

stack-up: setup
	$(VENV)/bin/foldflow stack up

stack-down: setup
	$(VENV)/bin/foldflow stack down

stack-status: setup
	$(VENV)/bin/foldflow stack status

# Re-pin after changing dependencies in pyproject.toml.
constraints: setup
	$(PY) -m pip freeze --exclude-editable | grep -v -i '^foldflow' > constraints.txt.new
	@{ echo '# Pinned versions of every dependency (pip freeze of a working .venv, foldflow excluded).'; \
	   echo '# Regenerate with `make constraints` after changing pyproject.toml.'; \
	   cat constraints.txt.new; } > constraints.txt && rm constraints.txt.new
