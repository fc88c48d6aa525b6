# Foldflow: `make demo` and `make test` are the two commands (README.md).
# Everything runs from .venv; `make setup` creates it from pyproject.toml + constraints.txt.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.foldflow-installed

JAEGER_VERSION ?= v1.75.0
# Every process the tests start writes its coverage data here (absolute: they run elsewhere).
COVERAGE := COVERAGE_FILE=$(CURDIR)/.coverage

.PHONY: setup tools jaeger test coverage-report lint demo soak stack-up stack-down stack-status constraints vendor-htmx

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# The whole suite against real Kafka and PostgreSQL (the session fixture starts the
# local stack when nothing answers on FOLDFLOW_KAFKA_BOOTSTRAP / FOLDFLOW_DATABASE_URL),
# measured: line and branch coverage of the suite and of every service process it starts,
# reported with its floors (pyproject.toml, [tool.foldflow.coverage]); a test failure or
# a missed floor fails the run. The tests that restart the shared broker or PostgreSQL
# (marker `exclusive`) run first and alone. The rest then runs in $(TEST_WORKERS) pytest
# processes, a file per process at a time and one chaos test at a time (tests/conftest.py):
# most of a test's time is waiting on Kafka's group joins and commits, not on the CPU.
TEST_WORKERS ?= 2
test: setup tools
	@rm -f .coverage .coverage.*
	@$(COVERAGE) $(PY) -m coverage run -m pytest -m exclusive; alone=$$?; \
	  $(COVERAGE) $(PY) -m coverage run -m pytest -n $(TEST_WORKERS) --dist loadgroup \
	    -m "not exclusive"; rest=$$?; \
	  $(COVERAGE) $(PY) .ci/coverage_report.py; floors=$$?; \
	  [ $$alone -eq 0 ] && [ $$rest -eq 0 ] && [ $$floors -eq 0 ]

# The report of the last `make test` again (or of a partial run under `coverage run`).
coverage-report: setup
	$(COVERAGE) $(PY) .ci/coverage_report.py

# Prometheus (promtool), Alertmanager and Chromium from Debian's packages, so the dashboard,
# rule and alert tests run against real ones and the console's browser tests drive a real
# Chromium (Playwright's own browser download is not used), and Jaeger built once from the
# Go module proxy for the trace test; whatever cannot be had, its tests skip and say so.
TOOLS := prometheus prometheus-alertmanager chromium
tools: jaeger
	@missing=""; for tool in $(TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	  || echo "not installed:$$missing: the tests that need them will skip"; }

jaeger:
	@deploy/local/build-jaeger.sh $(JAEGER_VERSION)

# Not part of `make test`: the scaled-out system (3 orchestrators, 3 workers, 2 projectors,
# 2 gateways) under steady load with a random instance SIGKILLed every minute, for
# SOAK_MINUTES; a table, a plot and the raw samples land in bench/runs/soak-*.
SOAK_MINUTES ?= 30
soak: setup
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench]'
	$(PY) -m foldflow.bench.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

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

# The console's htmx, vendored into the package (served by the gateway, shipped in the
# wheel; no CDN). To move to another version, change both lines and run this target.
HTMX_VERSION := 2.0.11
HTMX_SHA256  := d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717
vendor-htmx:
	@dir=$$(mktemp -d) && cd $$dir && npm pack -q htmx.org@$(HTMX_VERSION) >/dev/null \
	  && tar xzf htmx.org-$(HTMX_VERSION).tgz \
	  && echo "$(HTMX_SHA256)  package/dist/htmx.min.js" | sha256sum -c --quiet - \
	  && cp package/dist/htmx.min.js $(CURDIR)/gateway/ui/static/htmx.min.js \
	  && cp package/LICENSE $(CURDIR)/gateway/ui/static/LICENSE.htmx && rm -rf $$dir
