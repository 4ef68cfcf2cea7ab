# runner: common tasks. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
EXP ?= experiments/quickstart.toml
VENV := .venv
PY := $(VENV)/bin/python
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RUNNER := $(TARGET_DIR)/release/runner
TB_LOGDIR ?= runs
TB_HOST ?= 127.0.0.1
TB_PORT ?= 6006

.PHONY: help build release run test check fmt clippy tensorboard

help:
	@echo "make run        build (release) and run $(EXP)"
	@echo "make test       run the whole test suite (installs the Python readers it needs into $(VENV))"
	@echo "make check      validate every file in experiments/"
	@echo "make build      debug build;  make release  optimized build"
	@echo "make tensorboard  TensorBoard on $(TB_LOGDIR)/ at http://$(TB_HOST):$(TB_PORT)/ (installs it into $(VENV))"

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

# TensorBoard on the run folders; TB_LOGDIR, TB_HOST, TB_PORT override.
tensorboard: $(VENV)/.installed
	@mkdir -p $(TB_LOGDIR)
	@echo "TensorBoard on $(TB_LOGDIR)/: http://$(TB_HOST):$(TB_PORT)/  (Ctrl-C stops it)"
	$(VENV)/bin/tensorboard --logdir $(TB_LOGDIR) --host $(TB_HOST) --port $(TB_PORT)

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --all-targets -- -D warnings
