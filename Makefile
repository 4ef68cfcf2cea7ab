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

BENCH_VENV := bench/.venv
SWEEP_VENV := bench/.venv-sweep
BENCH_PY ?= $(BENCH_VENV)/bin/python
BENCH_JPEGS := bench/work/jpegs
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: help build release run sweep test test-gpu check fmt clippy tensorboard data fashion-bn bench bench-data bench-gpu bench-sweep bench-sweep-replay

help:
	@echo "make run        build (release) and run $(EXP)"
	@echo "make test       run the whole test suite (installs the Python readers it needs into $(VENV))"
	@echo "make check      validate every file in experiments/"
	@echo "make sweep      build (release) and run the sweep of $(EXP)"
	@echo "make build      debug build;  make release  optimized build"
	@echo "make data       install Fashion-MNIST (Debian package dataset-fashion-mnist) for experiments/fashion-mnist.toml"
	@echo "make fashion-bn train experiments/fashion-mnist-bn.toml (conv-BN-ReLU network; needs make data)"
	@echo "make bench      runner vs PyTorch and Keras side by side: training img/s, peak RSS, loader, time to 0.90 (bench/results/)"
	@echo "make bench-sweep one 27-point space as grid, random/TPE+ASHA (rungs 3, 12), random+ASHA (1, 3, 9), random+Hyperband, random+promotion ASHA (4, 16), 4 seeds: epochs trained, best val_accuracy (bench/results/)"
	@echo "make bench-sweep-replay  early-stopping settings, runner's, Optuna's and Syne Tune's, replayed on the curves bench-sweep recorded (minutes)"
	@echo "make bench-data loader images/s against Keras ImageDataGenerator and torchvision, 1 thread and all cores (BENCH_PY=python with both)"
	@echo "make test-gpu   the GPU path end to end: accuracy, CPU/GPU agreement, kill and resume, sweep, out of memory (needs an NVIDIA GPU; DEVICE=wgpu for Vulkan)"
	@echo "make bench-gpu  runner --device cuda vs PyTorch on the GPU: img/s at batch 32 and 256, cold and warm start, GPU memory (needs an NVIDIA GPU)"
	@echo "make tensorboard  TensorBoard on $(TB_LOGDIR)/ at http://$(TB_HOST):$(TB_PORT)/ (installs it into $(VENV))"

build:
	$(CARGO) build

release:
	$(CARGO) build --release

run: release
	$(RUNNER) run $(EXP)

# The batch-norm network on Fashion-MNIST (about 16 minutes on 2 CPU cores).
fashion-bn: release
	$(RUNNER) run experiments/fashion-mnist-bn.toml

sweep: release
	$(RUNNER) sweep $(EXP)

check: build
	$(TARGET_DIR)/debug/runner check experiments/*.toml

# Python packages the tests use to read our outputs with the real consumers
# (TensorBoard's EventAccumulator, pandas, onnxruntime with Pillow).
$(VENV)/.installed: requirements-test.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-test.txt
	touch $@

# PyTorch and safetensors, for the check that `runner export --format
# safetensors` loads into an nn.Sequential. Kept apart from the readers
# above (which `make tensorboard` also installs): PyPI's torch wheel brings
# the CUDA libraries with it, about 4 GB, a minute's download here.
$(VENV)/.installed-torch: requirements-test-torch.txt $(VENV)/.installed
	$(VENV)/bin/pip install -q -r requirements-test-torch.txt
	touch $@

# The tests build the wgpu backend too: its tests run the GPU code path
# (cubecl: fusion, autotune, kernel caches, fixed shapes) on any Vulkan
# driver, in CI Mesa's lavapipe on the CPU (apt install mesa-vulkan-drivers).
TEST_FEATURES ?= wgpu

test: $(VENV)/.installed $(VENV)/.installed-torch
	RUNNER_TEST_PYTHON=$(abspath $(PY)) $(CARGO) test --locked --workspace --features "$(TEST_FEATURES)"

# TensorBoard on the run folders; TB_LOGDIR, TB_HOST, TB_PORT override.
tensorboard: $(VENV)/.installed
	@mkdir -p $(TB_LOGDIR)
	@echo "TensorBoard on $(TB_LOGDIR)/: http://$(TB_HOST):$(TB_PORT)/  (Ctrl-C stops it)"
	$(VENV)/bin/tensorboard --logdir $(TB_LOGDIR) --host $(TB_HOST) --port $(TB_PORT)

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

# Fashion-MNIST's IDX files, from Debian's package where apt exists.
data:
	@if [ -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ]; then \
		echo "Fashion-MNIST is installed in $(FASHION_MNIST)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		sudo_cmd=""; [ "$$(id -u)" -ne 0 ] && sudo_cmd="sudo"; \
		$$sudo_cmd apt-get install -y -qq dataset-fashion-mnist || \
			{ $$sudo_cmd apt-get update -qq && $$sudo_cmd apt-get install -y -qq dataset-fashion-mnist; }; \
	else \
		echo "No apt-get here. Download the four Fashion-MNIST files (train-images-idx3-ubyte.gz,"; \
		echo "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)"; \
		echo "into a folder, and set data.path in experiments/fashion-mnist.toml to it"; \
		echo "(or run: runner run experiments/fashion-mnist.toml --set data.path=FOLDER)."; \
		exit 1; \
	fi

# The peers the benchmarks compare against (PyTorch, torchvision, Keras on
# TensorFlow), in a virtual environment of their own.
$(BENCH_VENV)/.installed: bench/requirements.txt
	@echo "installing the benchmark peers (bench/requirements.txt) into $(BENCH_VENV)"
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q -r bench/requirements.txt
	touch $@

# The loaders on 2,000 generated 512x384 JPEGs in 10 classes (written once
# into bench/work/), the tutorial's augmentation, 32x3x128x128 float
# batches: runner, torchvision (default and PIL draft decoding) and Keras's
# ImageDataGenerator, at one thread and at all cores each (bench/bench.py).
bench-data: $(if $(filter $(BENCH_VENV)/bin/python,$(BENCH_PY)),$(BENCH_VENV)/.installed)
	$(CARGO) build --release --bin bench_data
	$(BENCH_PY) bench/bench.py --only data --bench-data $(TARGET_DIR)/release/bench_data

# Everything side by side in one run, one process at a time (bench/bench.py
# says how each figure is made): training throughput on the same images and
# peak RSS (runner through `runner run`, PyTorch and Keras, default and
# tuned), the loaders at 1 thread and all cores, and wall time to 0.90 test
# accuracy on Fashion-MNIST (median of 3 seeds). Prints the tables and
# writes bench/results/<date>-<time>.md. Measure on a quiet machine.
bench: $(if $(filter $(BENCH_VENV)/bin/python,$(BENCH_PY)),$(BENCH_VENV)/.installed)
	@[ -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ] || echo "note: Fashion-MNIST is missing (make data); the time-to-accuracy part will fail"
	$(CARGO) build --release --bin runner --bin bench_data
	$(BENCH_PY) bench/bench.py --runner $(TARGET_DIR)/release/runner --bench-data $(TARGET_DIR)/release/bench_data

# One 27-point space (bench/sweep/: learning rate x dropout x batch size on
# the synthetic shapes, 27 epochs per trial) searched as a grid and as random
# or TPE search with ASHA (stopping or promotion) or Hyperband, on 4 seeds,
# with the release binary: total epochs trained, best val_accuracy, wall
# time, and whether a search gets within 1 point of the grid's best with at
# most 40% of its epochs (bench/sweep.py). Writes
# bench/results/<date>-<time>-sweep.md and the curves to the .csv beside
# it. All six searches: 48m 01s on 2 cores for the 4 seeds, 10m 09s and
# 10m 42s for each of the two seeds that ran with nothing beside them
# (bench/results/2026-12-05-2313-sweep.md).
bench-sweep: release
	python3 bench/sweep.py --runner $(RUNNER)

# Early-stopping settings replayed on the curves that bench-sweep recorded
# (SWEEP_CSV: every bench/results/*-sweep.csv by default): runner's own ASHA
# code in random trial orders (examples/asha_replay.rs), two at a time as
# bench-sweep runs them (with the stopping and the promotion variant) and
# one at a time; runner's TPE proposing the
# trials (200 searches per seed, bench/sweep/tpe-asha.toml's [sweep]);
# synchronous successive halving, every point ranked at every rung (what
# the promotion variant approaches; runner does not run it); Optuna's
# samplers and pruners, one trial at a time (bench/sweep_optuna.py); and
# Syne Tune's ASHA, promotion and stopping type, two at a time
# (bench/sweep_synetune.py).
SWEEP_CSV ?= $(wildcard bench/results/*-sweep.csv)
$(SWEEP_VENV)/.installed: bench/requirements-sweep.txt
	python3 -m venv $(SWEEP_VENV)
	$(SWEEP_VENV)/bin/pip install -q -r bench/requirements-sweep.txt
	touch $@

bench-sweep-replay: $(SWEEP_VENV)/.installed
	$(CARGO) build --release --example asha_replay
	$(TARGET_DIR)/release/examples/asha_replay $(SWEEP_CSV) --orders 500
	$(TARGET_DIR)/release/examples/asha_replay $(SWEEP_CSV) --orders 500 --promotion
	$(TARGET_DIR)/release/examples/asha_replay $(SWEEP_CSV) --orders 500 --parallel 1 \
		--setting asha:1:4 --setting asha:1:3 --setting asha:3:4 --setting hyperband:1:3
	$(TARGET_DIR)/release/examples/asha_replay $(SWEEP_CSV) --orders 200 --tpe bench/sweep/tpe-asha.toml
	$(TARGET_DIR)/release/examples/asha_replay $(SWEEP_CSV) --halving 1:3 --halving 3:4 --halving 4:2
	$(SWEEP_VENV)/bin/python bench/sweep_optuna.py $(SWEEP_CSV)
	$(SWEEP_VENV)/bin/python bench/sweep_synetune.py $(SWEEP_CSV) --orders 500

# The GPU path checked end to end on a machine with a GPU (bench/gpu_check.sh
# lists the checks); builds --features cuda unless RUNNER_BIN names a binary.
test-gpu:
	bench/gpu_check.sh

# runner on CUDA vs PyTorch on the same GPU (tutorial model, batch 32 and
# 256; bench/gpu_bench.py); writes bench/results/gpu-<date>.md.
bench-gpu:
	bench/gpu.sh
