# The two commands: `make run` (install + start everything) and `make test` (install + test).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install browser run test lint format clean bench bench-quick bench-report bench-torch-venv bench-torch

install: $(STAMP) browser

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "prunekit needs Python >= 3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The UI's browser tests drive Debian's chromium (a browser download is not an option here).
# Installed with apt when missing (as root); where apt is not usable, say so and go on: the
# browser tests then skip with the same message.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium and chromium-driver for the UI's browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
		echo "NOTE: /usr/bin/chromium is missing and apt-get is not usable here (it needs root):" \
			"install Debian's 'chromium' package for the UI's browser tests, which skip without it"; \
	fi

run: install
	$(PY) -m app.launcher

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) -m pytest

# Benchmarks (bench/): every suite, then docs/benchmarks.md; bench-quick is a subset in minutes.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench.run_all

bench-quick: $(BENCH_STAMP)
	$(PY) -m bench.run_all --quick

bench-report: $(BENCH_STAMP)
	$(PY) -m bench.report

# Torch-Pruning side of bench/compare_torch_pruning.py: its own venv (bench/.venv-torch),
# the CPU torch wheel only; never installed into the service venv.
bench-torch-venv:
	bench/torchprune/setup_venv.sh $(PYTHON)

bench-torch: $(BENCH_STAMP) bench-torch-venv
	$(PY) -m bench.compare_torch_pruning

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
