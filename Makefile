# The two commands a user needs are `make demo` and `make test`; both run `make setup` first.
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -n 2

.PHONY: setup demo test lint unit e2e clean

setup:
	@bash tools/setup.sh

demo: setup
	$(BIN)/podlab demo

lint: setup
	$(BIN)/ruff check podlab tests scenarios conftest.py
	$(BIN)/mypy
	cd cmd/podlab-cni && test -z "$$(gofmt -l .)" && GOCACHE=$${GOCACHE:-$${PODLAB_CACHE:-/opt/podlab}/go-build} go vet .

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

unit: setup
	$(BIN)/pytest tests/unit tests/property $(PYTEST_ARGS)

e2e: setup
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

clean: setup
	$(BIN)/podlab clean
