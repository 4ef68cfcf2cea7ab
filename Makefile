# runner: common tasks. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
EXP ?= experiments/quickstart.toml
VENV := .venv
PY := $(VENV)/bin/python
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RUNNER := $(TARGET_DIR)/release/runner

.PHONY: help build release run test check fmt clippy

help:
	@echo "make run        build (release) and run $(EXP)"
	@echo "make test       run the whole test suite (installs the Python readers it needs into $(VENV))"
	@echo "make check      validate every file in experiments/"
	@echo "make build      debug build;  make release  optimized build"

build:
	$(CARGO) build

release:
	$(CARGO) build --release

run: release
	$(RUNNER) run $(EXP)

check: build
	$(TARGET_DIR)/debug/runner check experiments/*.toml

# Python packages the tests use to read our outputs with the real consumers
# (TensorBoard's EventAccumulator, pandas).
$(VENV)/.installed: requirements-test.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-test.txt
	touch $@

test: $(VENV)/.installed
	RUNNER_TEST_PYTHON=$(abspath $(PY)) $(CARGO) test --locked

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --all-targets -- -D warnings
