# Two commands for a fresh machine: `make demo` and `make test`. Each does its own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install system-deps lint bench clean

demo: $(STAMP)
	$(BIN)/surveillance demo

test: $(STAMP) system-deps
	$(BIN)/pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Real binaries the tests drive: promtool/amtool (rule tests, Alertmanager), Chromium
# (browser tests), pdftoppm (PDF rendering), stunnel4 (the TLS-only broker of the Kafka
# TLS tests). Debian packages; installed when missing.
SYSTEM_BINS := promtool:prometheus amtool:prometheus-alertmanager \
               prometheus-alertmanager:prometheus-alertmanager chromium:chromium \
               pdftoppm:poppler-utils stunnel4:stunnel4
system-deps:
	@missing=""; for pair in $(SYSTEM_BINS); do bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy surveillance

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) .surveillance .pytest_cache .mypy_cache .ruff_cache
