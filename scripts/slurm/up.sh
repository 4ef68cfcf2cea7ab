#!/usr/bin/env bash
# Start a private single-node Slurm cluster on loopback, all its state under STATE_DIR.
#
#   scripts/slurm/up.sh STATE_DIR [--watch PID]
#   eval "$(scripts/slurm/up.sh /tmp/slurm)"     # then sbatch, squeue, ... talk to it
#   scripts/slurm/down.sh /tmp/slurm
#
# Installs nothing: needs the Debian packages slurmctld slurmd slurm-client munge.
# Starts munged, slurmctld and slurmd in the foreground mode under setsid, in the
# background, records their PIDs under STATE_DIR/run, waits until the node is idle and
# prints `export SLURM_CONF=STATE_DIR/slurm.conf` on stdout (everything else on stderr).
# Free ports are picked, so several clusters can run side by side.
# --watch PID: also start a watchdog that runs down.sh once process PID has exited
# (so a killed test run leaves no daemon behind).
# SLURM_LOCAL_EXTRA_CONF: extra slurm.conf lines (e.g. "MaxArraySize=3").
# SLURM_LOCAL_PORT: try this slurmctld port first (slurmd gets the next one).
# Runs the daemons as the current user (tested as root, as in CI).
set -euo pipefail

die() { echo "up.sh: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: $0 STATE_DIR [--watch PID]"
watch_pid=""
if [ $# -ge 3 ] && [ "$2" = "--watch" ]; then watch_pid=$3; fi

export PATH="$PATH:/usr/sbin:/sbin"
missing=""
for bin in munged mungekey munge unmunge slurmctld slurmd scontrol sinfo; do
    command -v "$bin" >/dev/null 2>&1 || missing="$missing $bin"
done
[ -z "$missing" ] || die "missing:$missing (apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge)"

mkdir -p "$1"
D=$(cd "$1" && pwd -P)
case "$D" in *[[:space:]]*) die "STATE_DIR must not contain whitespace: $D";; esac
CONF=$D/slurm.conf
SOCK=$D/munge/munge.socket
mkdir -p "$D/munge" "$D/state" "$D/spool" "$D/log" "$D/run"
chmod 0755 "$D" "$D/munge"
export SLURM_CONF=$CONF

# A recorded daemon is alive when its PID exists and still names this cluster's folder.
alive() {
    local pid
    pid=$(cat "$D/run/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$D/"
}
for d in munged slurmctld slurmd; do
    alive "$d" && die "$d of $D is already running (run down.sh first)"
done

fail() {
    echo "up.sh: $*" >&2
    for log in munged slurmctld slurmd slurmd.out slurmctld.out; do
        [ "${log%.out}" = "$log" ] || { [ -s "$D/log/$log" ] && { echo "--- tail of $D/log/$log" >&2; tail -n 15 "$D/log/$log" >&2; }; continue; }
        [ -s "$D/log/$log.log" ] && { echo "--- tail of $D/log/$log.log" >&2; tail -n 15 "$D/log/$log.log" >&2; }
    done
    "$(dirname "$0")/down.sh" "$D" >&2 || true
    exit 1
}

# wait_for SECONDS DAEMON COMMAND...: poll COMMAND until it succeeds; give up when the
# daemon died or time ran out.
wait_for() {
    local secs=$1 daemon=$2; shift 2
    local deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        alive "$daemon" || fail "$daemon exited during start-up"
        [ "$(date +%s)" -lt "$deadline" ] || fail "$daemon not ready after ${secs}s"
        sleep 0.2
    done
}

# Ports that something listens on (IPv4 and IPv6), in decimal.
listening_ports() {
    awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null \
        | while read -r hex; do echo $(( 16#$hex )); done
}
pick_ports() {
    local used try port
    used=$(listening_ports | sort -u)
    for try in $(seq 1 50); do
        port=$(( 20000 + (RANDOM % 20000) * 2 ))
        if ! grep -qx "$port" <<<"$used" && ! grep -qx "$(( port + 1 ))" <<<"$used"; then
            echo "$port"; return 0
        fi
    done
    die "no free port pair found"
}

# --- munge ---------------------------------------------------------------------------
if [ ! -s "$D/munge/munge.key" ]; then
    mungekey --create --keyfile="$D/munge/munge.key" >/dev/null 2>&1 \
        || dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 0400 "$D/munge/munge.key"
setsid munged --foreground --socket="$SOCK" --key-file="$D/munge/munge.key" \
    --pid-file="$D/run/munged.pid.own" --log-file="$D/log/munged.log" --seed-file="$D/munge/munge.seed" \
    </dev/null >>"$D/log/munged.log" 2>&1 &
echo $! >"$D/run/munged.pid"
munge_ok() { munge -n --socket="$SOCK" | unmunge --socket="$SOCK"; }
wait_for 15 munged munge_ok

# --- slurm.conf ----------------------------------------------------------------------
cpus=$(nproc)
mem_mib=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
ctld_port=${SLURM_LOCAL_PORT:-$(pick_ports)}
write_conf() {
    cat >"$CONF" <<CONF
# Written by scripts/slurm/up.sh: a private single-node cluster on loopback.
ClusterName=local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$1
SlurmdPort=$(( $1 + 1 ))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
MinJobAge=300
ReturnToService=2
CommunicationParameters=NoInAddrAny
MailProg=/bin/true
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid.own
SlurmdPidFile=$D/run/slurmd.pid.own
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
${SLURM_LOCAL_EXTRA_CONF:-}
NodeName=localnode NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=local Nodes=localnode Default=YES MaxTime=INFINITE State=UP
CONF
}

# --- slurmctld (retried on another port if the chosen one was taken meanwhile) --------
ctld_up() { scontrol ping | grep -q 'is UP'; }
started=""
for attempt in 1 2 3; do
    write_conf "$ctld_port"
    : >"$D/log/slurmctld.log"; : >"$D/log/slurmctld.out"   # judge this attempt only
    setsid slurmctld -D -i -f "$CONF" </dev/null >>"$D/log/slurmctld.out" 2>&1 &
    echo $! >"$D/run/slurmctld.pid"
    deadline=$(( $(date +%s) + 20 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if ctld_up >/dev/null 2>&1; then started=yes; break; fi
        alive slurmctld || break
        sleep 0.2
    done
    [ -n "$started" ] && break
    alive slurmctld && fail "slurmctld not ready after 20s"
    if grep -q "slurm_init_msg_engine_port" "$D/log/slurmctld.log" "$D/log/slurmctld.out" 2>/dev/null \
        && ! grep -q "Address already in use" "$D/log/slurmctld.log" "$D/log/slurmctld.out" 2>/dev/null; then
        # Seen inside network namespaces whose loopback only has 127.0.0.1.
        if [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null && ! ip -4 addr show dev lo | grep -q '127\.0\.0\.2/'; then
            echo "up.sh: slurmctld could not listen; adding 127.0.0.2/8 to lo and trying again" >&2
            ip addr add 127.0.0.2/8 dev lo || fail "could not add 127.0.0.2/8 to lo"
            continue
        fi
        fail "slurmctld could not listen (inside a network namespace, try: ip addr add 127.0.0.2/8 dev lo)"
    fi
    grep -q "Address already in use" "$D/log/slurmctld.log" "$D/log/slurmctld.out" 2>/dev/null \
        || fail "slurmctld exited during start-up"
    ctld_port=$(pick_ports)
done
[ -n "$started" ] || fail "slurmctld could not bind a port"

# --- slurmd (started again, twice at most, when it exits during start-up: seen once in
# a test run on a loaded 2-core machine, with nothing in its logs) --------------------
node_idle() { [ "$(sinfo -h -n localnode -o %T)" = "idle" ]; }
for attempt in 1 2 3; do
    setsid slurmd -D -f "$CONF" -N localnode </dev/null >>"$D/log/slurmd.out" 2>&1 &
    slurmd_pid=$!
    echo "$slurmd_pid" >"$D/run/slurmd.pid"
    deadline=$(( $(date +%s) + 30 ))
    ready=""
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if node_idle >/dev/null 2>&1 && alive slurmd; then ready=yes; break; fi
        alive slurmd || break
        sleep 0.2
    done
    [ -n "$ready" ] && break
    alive slurmd && fail "slurmd not ready after 30s"
    status=0
    wait "$slurmd_pid" || status=$?
    why="exit status $status"
    [ "$status" -gt 128 ] && why="killed by signal $(( status - 128 ))"
    [ "$attempt" -lt 3 ] || fail "slurmd exited during start-up ($why), three times"
    echo "up.sh: slurmd exited during start-up ($why); starting it again" >&2
done

if [ -n "$watch_pid" ]; then
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done
                    rm -f "$3/run/watchdog.pid"; exec "$2" "$3"' \
        watchdog "$watch_pid" "$(cd "$(dirname "$0")" && pwd -P)/down.sh" "$D/" \
        </dev/null >>"$D/log/watchdog.log" 2>&1 &
    echo $! >"$D/run/watchdog.pid"
fi

echo "up.sh: cluster up in $D (slurmctld port $ctld_port)" >&2
echo "export SLURM_CONF=$CONF"
