#!/usr/bin/env bash
# Stop the cluster that scripts/slurm/up.sh started in STATE_DIR and leave nothing behind:
# cancel every job, wait for an empty queue, shut slurmctld and slurmd down, stop munged,
# then stop leftovers by their recorded PID only (never by name).
#
#   scripts/slurm/down.sh STATE_DIR
set -uo pipefail

[ $# -ge 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
[ -d "$1" ] || { echo "down.sh: no such folder $1" >&2; exit 0; }
D=$(cd "$1" && pwd -P)
export SLURM_CONF=$D/slurm.conf
export PATH="$PATH:/usr/sbin:/sbin"

pid_of() { cat "$D/run/$1.pid" 2>/dev/null; }
# A recorded daemon is alive when its PID exists and still names this cluster's folder
# (a PID reused by an unrelated process is never touched).
alive() {
    local pid
    pid=$(pid_of "$1") || return 1
    [ -n "$pid" ] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$D/"
}
# wait_gone SECONDS NAME...: wait until none of the named daemons is alive.
wait_gone() {
    local deadline=$(( $(date +%s) + $1 )); shift
    while :; do
        local any=""
        for d in "$@"; do alive "$d" && any=yes; done
        [ -z "$any" ] && return 0
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
stop() {  # stop NAME: TERM, then KILL, by recorded PID
    alive "$1" || return 0
    kill -TERM "$(pid_of "$1")" 2>/dev/null
    wait_gone 5 "$1" && return 0
    echo "down.sh: $1 ignored SIGTERM, killing it" >&2
    kill -KILL "$(pid_of "$1")" 2>/dev/null
    wait_gone 5 "$1"
}

# The watchdog (up.sh --watch) first, unless it is the one running us.
if [ "$(pid_of watchdog)" != "$PPID" ] && [ "$(pid_of watchdog)" != "$$" ]; then stop watchdog; fi

if alive slurmctld && [ -f "$SLURM_CONF" ]; then
    jobs=$(timeout 15 squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        # shellcheck disable=SC2086
        timeout 15 scancel $jobs 2>/dev/null
        deadline=$(( $(date +%s) + 30 ))
        while [ -n "$(timeout 15 squeue -h -o %A 2>/dev/null)" ]; do
            [ "$(date +%s)" -lt "$deadline" ] || { echo "down.sh: jobs still queued after 30s" >&2; break; }
            sleep 0.3
        done
    fi
    timeout 15 scontrol shutdown >/dev/null 2>&1
    wait_gone 15 slurmctld slurmd || echo "down.sh: daemons still up after scontrol shutdown" >&2
fi
stop slurmd
stop slurmctld

if alive munged; then
    timeout 10 munged --stop --socket="$D/munge/munge.socket" >/dev/null 2>&1
    wait_gone 5 munged
fi
stop munged

left=""
for d in watchdog slurmctld slurmd munged; do
    if alive "$d"; then left="$left $d"; else rm -f "$D/run/$d.pid"; fi
done
[ -z "$left" ] || { echo "down.sh: still running:$left" >&2; exit 1; }
