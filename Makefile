# The README's commands. Each works on a fresh clone with only python3: the venv is made on demand.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DB ?= $(CURDIR)/.demo/faithflow-demo.db
HOST ?= 127.0.0.1
PORT ?= 8000
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: demo test serve bench lint docs install clean

$(BIN)/faithflow: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(BIN)/faithflow

install: $(BIN)/faithflow

demo: install
	@mkdir -p $(dir $(DEMO_DB))
	@rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	@FAITHFLOW_DATABASE_URL=sqlite:///$(DEMO_DB) $(BIN)/faithflow demo

# Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set: the test workers and every
# `faithflow` subprocess a test starts would otherwise compile the package (and pytest rewrite
# every test module) anew. --dist loadgroup: tests marked xdist_group("…") (fixtures that are
# costly to make and shared by a whole file) stay on one worker; the rest spread as usual.
test: install
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

serve: install
	$(BIN)/faithflow db upgrade
	$(BIN)/faithflow serve --host $(HOST) --port $(PORT)

bench: install
	$(BIN)/python bench/bench_startup.py
	$(BIN)/python bench/bench_backfill.py
	$(BIN)/python bench/bench_subs_automate.py
	$(BIN)/python bench/bench_webhook_ingest.py
	$(BIN)/python bench/bench_dns_probe.py
	$(BIN)/python bench/bench_domains.py
	$(BIN)/python bench/bench_dunning.py
	$(BIN)/python bench/bench_dispatch.py
	$(BIN)/python bench/bench_volunteers.py
	$(BIN)/python bench/bench_sla.py
	$(BIN)/python bench/bench_moderation.py
	$(BIN)/python bench/bench_retention.py
	$(BIN)/python bench/bench_tallies.py
	$(BIN)/python bench/bench_streams.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check faithflow_ops receiver
	$(BIN)/mypy
	$(BIN)/lint-imports

# Regenerate what is generated from the code (tests fail when these drift).
docs: install
	$(BIN)/python -m faithflow_ops.cli.reference > docs/cli.md
	$(BIN)/faithflow jobs crontab > crontab.example
	$(BIN)/faithflow jobs render-yaml > render.yaml
	$(BIN)/faithflow slo rules > ops/prometheus/slo-rules.yml
	$(BIN)/faithflow slo dashboard > ops/grafana/slo-dashboard.json

clean:
	rm -rf .demo .pytest_cache .mypy_cache .ruff_cache
