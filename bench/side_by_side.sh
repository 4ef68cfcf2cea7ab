#!/usr/bin/env bash
# Training-throughput comparison, measured back to back in one session.
#
#   bench/side_by_side.sh WORKLOAD ROUNDS CONFIG...
#
# WORKLOAD: tutorial | fashion. Each CONFIG is one of
#   torch            bench/train_torch.py with $PEER_PY (default bench/.venv/bin/python)
#   keras            bench/train_keras.py with $PEER_PY
#   torch@PYTHON     train_torch.py with another interpreter (e.g. a venv with torch 2.9)
#   runner:BIN[:ENV=VALUE]   a train_step binary (examples/train_step.rs)
# Configs run in turn, ROUNDS times (interleaved, so drifting machine load
# hits all of them alike). Every RESULT line is printed with the load average
# at the time; the machine is shared, so compare ratios within one round.
#
# Environment: STEPS / WARMUP (timed and untimed steps; defaults 5/1 for
# tutorial, 20/3 for fashion), THREADS (2), OPTIMIZER (rmsprop/adam; default:
# rmsprop for tutorial, adam for fashion), PEER_PY.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
workload="$1"; rounds="$2"; shift 2
case "$workload" in
  tutorial) model="$here/models/tutorial.toml"; steps="${STEPS:-5}"; warmup="${WARMUP:-1}"; opt="${OPTIMIZER:-rmsprop}";;
  fashion) model="$here/models/fashion_cnn.toml"; steps="${STEPS:-20}"; warmup="${WARMUP:-3}"; opt="${OPTIMIZER:-adam}";;
  *) echo "workload must be tutorial or fashion" >&2; exit 2;;
esac
threads="${THREADS:-2}"
peer_py="${PEER_PY:-$root/bench/.venv/bin/python}"

for round in $(seq 1 "$rounds"); do
  for cfg in "$@"; do
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    case "$cfg" in
      torch) out="$("$peer_py" "$here/train_torch.py" --workload "$workload" --optimizer "$opt" --steps "$steps" --warmup "$warmup" --threads "$threads" 2>/dev/null | grep RESULT)";;
      torch@*) out="$("${cfg#torch@}" "$here/train_torch.py" --workload "$workload" --optimizer "$opt" --steps "$steps" --warmup "$warmup" --threads "$threads" 2>/dev/null | grep RESULT)";;
      keras) out="$("$peer_py" "$here/train_keras.py" --workload "$workload" --optimizer "$opt" --steps "$steps" --warmup "$warmup" --threads "$threads" 2>/dev/null | grep RESULT)";;
      runner:*)
        IFS=: read -r _ bin envset <<<"$cfg"
        out="$(env ${envset:-} "$bin" "$model" --optimizer "$opt" --steps "$steps" --warmup "$warmup" --threads "$threads" 2>/dev/null | grep RESULT)"
        [ -n "${envset:-}" ] && out="$out env=$envset";;
      *) echo "unknown config $cfg" >&2; exit 2;;
    esac
    echo "round=$round load=[$load] $out"
  done
done
