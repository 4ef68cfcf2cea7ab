#!/usr/bin/env bash
# `make test-gpu`: the GPU path checked end to end, on a machine with a GPU.
#
#   bench/gpu_check.sh                  build with --features cuda, then check on cuda:0
#   RUNNER_BIN=path bench/gpu_check.sh  use a runner built elsewhere
#   DEVICE=wgpu bench/gpu_check.sh      the same checks on the wgpu backend
#                                       (any Vulkan driver; lavapipe works, slowly)
#
# Each check prints PASS or FAIL with its figures; the exit code is the
# number of failed checks (0: all passed). Environment:
#   IMAGES   a Fashion-MNIST image folder with train/ and test/ (written by
#            bench/fashion_folder.py; made here from /usr/share/datasets/
#            fashion-mnist when unset)
#   WORK     where runs and logs go (default: a new folder in $TMPDIR)
#   SEEDS    seeds for the accuracy comparisons (default "1 2 3")
#   ACC_EPOCHS  epochs of the quickstart in the accuracy check (default 15,
#            early stopping on: near convergence the seeds vary less)
#   OOM_BATCH  a batch size that cannot fit in GPU memory for the tutorial
#            model at 128x128 (default 8192: about 24 MB of activations and
#            gradients per image, 190 GB in all, more than an H200's 141 GB)
#   SKIP     checks to skip, e.g. "oom"
#
# Checks:
#   accuracy  the quickstart (synthetic, ACC_EPOCHS epochs) and a real-image
#             folder (6 epochs) train on the GPU to the CPU's test accuracy:
#             means over SEEDS within 0.03. The two devices draw different
#             initial weights and dropout masks, so only the distributions
#             can agree (the quickstart's 6-epoch accuracy varies 0.76-0.92
#             over seeds on the CPU alone)
#   forward   one checkpoint evaluated on the CPU and on the GPU: the same
#             class for at least 99.5% of the test images, and the predicted
#             class's probability within 5e-3 (TF32 tensor cores round inputs
#             to 10 mantissa bits)
#   layers    the same for a network with batch norm, average pooling
#             (`same` padding) and global average pooling
#   resume    kill -9 during epoch 3, then --resume: every epoch exactly once
#   sweep     a 2x2 grid sweep, every trial on the GPU, all completed
#   oom       a batch too large for GPU memory: exit 1 with one paragraph
#             naming train.batch_size (no panic dump); a sweep with that
#             trial and a small one goes on and completes the small one
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"
device="${DEVICE:-cuda}"
seeds="${SEEDS:-1 2 3}"
acc_epochs="${ACC_EPOCHS:-15}"
oom_batch="${OOM_BATCH:-8192}"
skip="${SKIP:-}"
work="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/runner-gpu-check.XXXXXX")}"
mkdir -p "$work"
export RUNNER_PLAIN=1
# Each check's kernels are tuned once and kept, as users' runs would.
export RUNNER_KERNEL_CACHE="${RUNNER_KERNEL_CACHE:-$work/kernels}"

what=test-gpu
# shellcheck source=bench/gpu_env.sh
source "$here/gpu_env.sh"

images="${IMAGES:-}"
if [ -z "$images" ]; then
  images="$work/fashion"
  python3 bench/fashion_folder.py "$images" 300 100 || exit 1
fi

failed=0
pass() { echo "PASS $1: $2"; }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
skipped() { [[ " $skip " == *" $1 "* ]] && echo "SKIP $1" ; }
latest() { echo "$1/$(cat "$1/latest")"; }
test_acc() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["test_accuracy"])' "$1/meta.json"; }
# A run that must finish: KILL after $1 seconds (SIGTERM would only ask it
# to finish its epoch).
run() { local limit="$1"; shift; timeout -s KILL "$limit" "$bin" "$@"; }
folder=(--set "data.path=$images/train" --set "data.test_path=$images/test")

# ---- accuracy: the same experiments on the CPU and on the GPU
accuracy() {
  local name="$1" exp="$2"; shift 2  # the experiment's name (its runs folder) and file
  local sums=""
  for dev in cpu "$device"; do
    local accs=""
    for s in $seeds; do
      local runs="$work/acc-$name-$dev"
      run 900 run "$exp" --device "$dev" --runs-dir "$runs" --set "experiment.seed=$s" "$@" \
        >"$work/acc-$name-$dev-$s.log" 2>&1 || { fail accuracy "$name on $dev (seed $s) exited $? (log $work/acc-$name-$dev-$s.log)"; return; }
      accs="$accs $(test_acc "$(latest "$runs/$name")")"
    done
    sums="$sums $dev:$(python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; print(f"{sum(v)/len(v):.4f}")' $accs)[$accs ]"
  done
  python3 - "$name" "$sums" <<'EOF' && pass accuracy "$name:$sums" || fail accuracy "$name:$sums (means differ by more than 0.03)"
import re, sys
means = [float(m) for m in re.findall(r":([0-9.]+)\[", sys.argv[2])]
sys.exit(0 if abs(means[0] - means[1]) <= 0.03 else 1)
EOF
}
if ! skipped accuracy; then
  accuracy quickstart experiments/quickstart.toml --set "train.epochs=$acc_epochs"
  accuracy fashion-folder bench/models/fashion_folder.toml "${folder[@]}"
fi

# ---- forward, layers: one checkpoint on both devices
# forward_check CHECK MODEL NAME [run args]: train MODEL on the GPU, then
# evaluate its checkpoint on the CPU and on the GPU and compare.
forward_check() {
  local check="$1" model="$2" name="$3"
  shift 3
  skipped "$check" && return
  local runs="$work/$check"
  if run 900 run "$model" --device "$device" --runs-dir "$runs" "${folder[@]}" "$@" >"$work/$check-train.log" 2>&1; then
    local dir
    dir="$(latest "$runs/$name")"
    for dev in cpu "$device"; do
      run 600 eval "$dir" --device "$dev" >"$work/$check-eval-$dev.log" 2>&1 \
        && cp "$dir/eval/final/predictions.csv" "$work/$check-$dev.csv"
    done
    python3 - "$work/$check-cpu.csv" "$work/$check-$device.csv" "$work/$check.txt" <<'EOF' && pass "$check" "$(cat "$work/$check.txt")" || fail "$check" "$(cat "$work/$check.txt" 2>/dev/null)"
import csv, sys
a = list(csv.DictReader(open(sys.argv[1])))
b = list(csv.DictReader(open(sys.argv[2])))
assert len(a) == len(b) and a, "different row counts"
same = sum(x["predicted_class"] == y["predicted_class"] for x, y in zip(a, b))
diff = max(abs(float(x["probability"]) - float(y["probability"]))
           for x, y in zip(a, b) if x["predicted_class"] == y["predicted_class"])
text = f"{same}/{len(a)} same classes, largest probability difference {diff:.2e}"
open(sys.argv[3], "w").write(text)
sys.exit(0 if same >= 0.995 * len(a) and diff <= 5e-3 else 1)
EOF
  else
    fail "$check" "training exited $? (log $work/$check-train.log)"
  fi
}
forward_check forward bench/models/fashion_folder.toml fashion-folder --set train.epochs=3
# Batch norm (moving statistics in evaluation), average pooling with
# `same` padding and global average pooling, on both devices.
forward_check layers bench/models/fashion_layers.toml fashion-layers --set train.epochs=3

# ---- resume: kill -9 in the middle, then --resume
if ! skipped resume; then
  runs="$work/resume"
  "$bin" run bench/models/fashion_folder.toml --device "$device" --runs-dir "$runs" "${folder[@]}" \
    --set train.epochs=6 >"$work/resume-1.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 1800); do
    m="$(ls "$runs"/fashion-folder/v*/metrics.csv 2>/dev/null | head -1)"
    [ -n "$m" ] && [ "$(wc -l <"$m")" -ge 3 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  dir="$(latest "$runs/fashion-folder")"
  before="$(($(wc -l <"$dir/metrics.csv") - 1))"
  if run 900 run --resume "$dir" >"$work/resume-2.log" 2>&1; then
    epochs="$(cut -d, -f1 "$dir/metrics.csv" | tail -n +2 | tr '\n' ' ')"
    status="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$dir/meta.json")"
    if [ "$epochs" = "0 1 2 3 4 5 " ] && [ "$status" = completed ]; then
      pass resume "killed after $before epoch(s); resumed to epochs [ $epochs], $status"
    else
      fail resume "epochs [ $epochs], status $status"
    fi
  else
    fail resume "--resume exited $? (log $work/resume-2.log)"
  fi
fi

# ---- sweep: 2x2 grid on the GPU
if ! skipped sweep; then
  runs="$work/sweep"
  cat >"$work/sweep.toml" <<EOF
extends = "$root/experiments/quickstart.toml"
[runtime]
device = "$device"
[train]
epochs = 2
[sweep]
strategy = "grid"
metric = "val_accuracy"
[sweep.grid]
"model.dropout" = [0.1, 0.3]
"optimizer.learning_rate" = [1e-3, 2e-3]
EOF
  if run 1800 sweep "$work/sweep.toml" --runs-dir "$runs" >"$work/sweep.log" 2>&1; then
    sweep_dir="$(latest "$runs/quickstart/sweeps")"
    devices="$(grep -ho '"device": *"[^"]*"' "$sweep_dir"/trial-*/meta.json | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
    done_n="$(grep -l '"status": *"completed"' "$sweep_dir"/trial-*/meta.json | wc -l)"
    if [ "$done_n" = 4 ] && ! grep -q '"device": *"cpu"' "$sweep_dir"/trial-*/meta.json; then
      pass sweep "4/4 trials completed; devices:$devices"
    else
      fail sweep "$done_n/4 completed; devices:$devices (log $work/sweep.log)"
    fi
  else
    fail sweep "exited $? (log $work/sweep.log)"
  fi
fi

# ---- oom: a batch too large for the GPU, alone and in a sweep
if ! skipped oom; then
  runs="$work/oom"
  oom=(--set "data.train_size=$oom_batch" --set data.validation_size=0 --set data.test_size=32
       --set train.epochs=1)
  run 900 run bench/models/tutorial.toml --device "$device" --runs-dir "$runs" "${oom[@]}" \
    --set "train.batch_size=$oom_batch" >"$work/oom.log" 2>"$work/oom.err"
  rc=$?
  lines="$(grep -c . "$work/oom.err")"
  if [ "$rc" = 1 ] && grep -q "train.batch_size" "$work/oom.err" \
      && ! grep -qiE "panicked|stack backtrace" "$work/oom.err" && [ "$lines" -le 8 ]; then
    pass oom "exit 1, $lines line(s): $(tr '\n' ' ' <"$work/oom.err" | cut -c1-300)"
  else
    fail oom "exit $rc, $lines line(s) on stderr (want 1, naming train.batch_size, no panic): $(head -c 600 "$work/oom.err")"
  fi
  cat >"$work/oom-sweep.toml" <<EOF
extends = "$root/bench/models/tutorial.toml"
[runtime]
device = "$device"
[data]
train_size = $oom_batch
validation_size = 0
test_size = 32
[sweep]
strategy = "grid"
metric = "accuracy"
[sweep.grid]
"train.batch_size" = [$oom_batch, 32]
EOF
  run 1800 sweep "$work/oom-sweep.toml" --runs-dir "$runs" >"$work/oom-sweep.log" 2>&1
  rc=$?
  sweep_dir="$(latest "$runs/bench-tutorial/sweeps")"
  failed_n="$(grep -l '"status": *"failed"' "$sweep_dir"/trial-*/meta.json 2>/dev/null | wc -l)"
  done_n="$(grep -l '"status": *"completed"' "$sweep_dir"/trial-*/meta.json 2>/dev/null | wc -l)"
  if [ "$failed_n" = 1 ] && [ "$done_n" = 1 ]; then
    pass oom "the sweep went on: 1 trial failed (out of memory), 1 completed; sweep exit $rc"
  else
    fail oom "sweep: $failed_n failed, $done_n completed, exit $rc (log $work/oom-sweep.log)"
  fi
fi

echo "== $failed check(s) failed; logs and runs in $work"
exit "$failed"
