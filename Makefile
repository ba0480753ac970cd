# Two commands: `make run` (set up, then serve) and `make test` (set up, the import contracts, the whole test suite).
.PHONY: setup run test lint
PYTEST_ARGS ?=

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/assistant db seed-demo
	.venv/bin/assistant serve

test: setup
	.venv/bin/lint-imports
	.venv/bin/python -m pytest $(PYTEST_ARGS)

lint:
	.venv/bin/ruff check .
