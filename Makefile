# Foldflow: `make demo` and `make test` are the two commands (README.md).
# Everything runs from .venv; `make setup` creates it from pyproject.toml + constraints.txt.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.foldflow-installed

JAEGER_VERSION ?= v1.75.0
# Every process the tests start writes its coverage data here (absolute: they run elsewhere).
COVERAGE := COVERAGE_FILE=$(CURDIR)/.coverage

.PHONY: setup tools jaeger test coverage-report lint demo stack-up stack-down stack-status constraints

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# The whole suite against real Kafka and PostgreSQL (the session fixture starts the
# local stack when nothing answers on FOLDFLOW_KAFKA_BOOTSTRAP / FOLDFLOW_DATABASE_URL),
# measured: line and branch coverage of the suite and of every service process it starts,
# reported with its floors (pyproject.toml, [tool.foldflow.coverage]); a test failure or
# a missed floor fails the run.
test: setup tools
	@rm -f .coverage .coverage.*
	@$(COVERAGE) $(PY) -m coverage run -m pytest; tests=$$?; \
	  $(COVERAGE) $(PY) .ci/coverage_report.py; floors=$$?; \
	  [ $$tests -eq 0 ] && [ $$floors -eq 0 ]

# The report of the last `make test` again (or of a partial run under `coverage run`).
coverage-report: setup
	$(COVERAGE) $(PY) .ci/coverage_report.py

# Prometheus (promtool) and Alertmanager from Debian's packages, so the dashboard, rule and
# alert tests run against real ones, and Jaeger built once from the Go module proxy for the
# trace test; whatever cannot be had, its tests skip and say so.
tools: jaeger
	@command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      prometheus prometheus-alertmanager >/dev/null) \
	  || echo "prometheus/alertmanager not installed: the tests that need them will skip"; }

jaeger:
	@deploy/local/build-jaeger.sh $(JAEGER_VERSION)

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
