# The documented entry points. Each target does its own set-up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
## make test runs the suite on this many pytest-xdist workers (most tests wait on servers, brokers and
## subprocesses, so more workers than cores pays); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 4

.PHONY: serve test soak lint bench bench-quick bench-serving bench-scripts install system-deps services topology clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "convhub needs Python 3.11 (spyne 2.14 does not import on 3.12+)"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[server,dev]'
	@touch $(STAMP)

install: $(STAMP)

## Run the service on this machine (embedded SQLite + SQLite broker; no other service needed) with a
## local LibreOffice factory: installed from Debian's packages when run as root on Debian/Ubuntu,
## otherwise one line says how (and the server starts without a factory).
serve: install
	@sh scripts/serve-deps.sh
	$(BIN)/convhub serve $(SERVE_ARGS)

## Everything the tests need that is not Python: LibreOffice, Chromium, RabbitMQ's management API.
system-deps:
	CONVHUB_FACTORY_EXTRA_PACKAGES="abiword gnumeric" sh scripts/install-libreoffice.sh
	sh scripts/install-chromium.sh
	sh scripts/ensure-services.sh
	sh scripts/enable-rabbitmq-management.sh

lint: install
	$(BIN)/ruff check app tasks protocol tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

## The whole suite: lint, architecture contracts, unit, integration and e2e tests.
test: install system-deps
	$(BIN)/lint-imports
	$(BIN)/ruff check app tasks protocol tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

## The long proofs (make test runs their short forms): the hostile corpus on both databases in full
## and 5,000 generated requests per endpoint on SQLite and PostgreSQL (tests/hostile/); 200 header-trickling
## and 200 slow-reading connections against `convhub web` and `convhub serve` (tests/e2e/test_slow_clients.py).
## Process kills: 5,000 jobs per configuration (PostgreSQL + RabbitMQ, PostgreSQL + Redis, embedded)
## while web workers, the web master, Celery workers, beat, factories and `convhub serve`'s whole
## process group are SIGKILLed in turn (tests/soak/test_kill.py; summaries in tests/artifacts/).
## Broker and database loss (tests/soak/test_loss.py, private service instances): Redis and RabbitMQ
## restarted 4 times each, PostgreSQL stopped 20 s, the embedded default's data disk filled; figures in
## tests/artifacts/soak-loss-*.json.
soak: install system-deps
	CONVHUB_SOAK=1 $(BIN)/python -m pytest -p no:cacheprovider -o timeout=1800 -n $(TEST_WORKERS) tests/hostile $(PYTEST_ARGS)
	CONVHUB_SOAK=1 $(BIN)/python -m pytest -p no:cacheprovider -o timeout=1800 tests/e2e/test_slow_clients.py $(PYTEST_ARGS)
	CONVHUB_SOAK=1 $(BIN)/python -m pytest -p no:cacheprovider tests/soak/test_kill.py $(PYTEST_ARGS)
	CONVHUB_SOAK=1 $(BIN)/python -m pytest -p no:cacheprovider -o timeout=1800 tests/soak/test_loss.py $(PYTEST_ARGS)

## Benchmarks: one driver, one table, bench/results/latest.json (numbers are reported, never asserted).
## Extra packages (pgqueuer, granian, ...) go to bench/.extra only, pinned in bench/requirements-extra.txt.
BENCH_EXTRA := bench/.extra/.installed-stamp
$(BENCH_EXTRA): bench/requirements-extra.txt $(STAMP)
	$(BIN)/pip freeze --exclude-editable > bench/.extra-constraints.txt
	$(BIN)/pip install -q --target bench/.extra -c bench/.extra-constraints.txt -r bench/requirements-extra.txt
	@rm -f bench/.extra-constraints.txt
	@touch $(BENCH_EXTRA)

bench: install system-deps $(BENCH_EXTRA)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## Ceilings, dispatch and claim rows only, short windows (under 3 minutes).
bench-quick: install $(BENCH_EXTRA)
	$(BIN)/python bench/run.py --quick $(BENCH_ARGS)

## The serving stacks side by side (gunicorn worker classes, granian, waitress), with and without keep-alive.
bench-serving: install $(BENCH_EXTRA)
	$(BIN)/python bench/run.py --groups serving $(BENCH_ARGS)

## The standalone scripts the driver does not run: fair share under many clients, LibreOffice
## conversions per minute (warm vs cold), how long refusals and timeouts take.
bench-scripts: install system-deps
	mkdir -p bench/results
	$(BIN)/python bench/bench_fairshare.py --out bench/results/fairshare.json
	$(BIN)/python bench/bench_factory.py --quick --out bench/results/factory.json
	$(BIN)/python bench/bench_timeouts.py --out bench/results/timeouts.json

clean:
	rm -rf $(VENV) var bench/results bench/.extra tests/artifacts

-include Makefile.ops.mk
