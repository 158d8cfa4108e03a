#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying `runner sweep --backend slurm`
# and for the integration test that CI runs (tests/slurm_cli.rs).
#
#   scripts/slurm-local.sh up      install slurm-wlm + munge (Debian) if missing, start
#                                  munged, slurmctld and slurmd, wait until the node is idle
#   scripts/slurm-local.sh down    stop the daemons this script started (by their pids)
#   scripts/slurm-local.sh status  print sinfo
#
# SLURM_LOCAL_MAX_ARRAY_SIZE=N lowers the cluster's MaxArraySize (Slurm's default 1001:
# array task ids 0 to 1000) to test how sweeps larger than it are submitted; CI uses 64.
# It takes effect when the daemons start (`down`, then `up`).
#
# Needs root (the daemons run as root, munged as the munge user). State, logs and pid
# files live under $SLURM_LOCAL_DIR (default /tmp/runner-slurm). The cluster's slurm.conf
# is written to /etc/slurm/slurm.conf, where every Slurm command looks for it; an existing
# slurm.conf that this script did not write is never overwritten.
#
# The configuration is the smallest one known to work without cgroups: proctrack/linuxproc,
# task/none, no accounting, select/cons_tres with CR_Core, one node named after `hostname`
# with all of this machine's CPUs.
set -euo pipefail

STATE="${SLURM_LOCAL_DIR:-/tmp/runner-slurm}"
CONF=/etc/slurm/slurm.conf
MARKER="# written by runner's scripts/slurm-local.sh"

die() { echo "slurm-local: $*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (slurmctld and slurmd run as root here)"
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed and apt-get is not available; install them with your package manager"
    echo "slurm-local: installing slurm-wlm and munge from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq slurm-wlm munge >"$STATE/apt.log" 2>&1 \
        || { tail -20 "$STATE/apt.log" >&2; die "apt-get install slurm-wlm munge failed (log: $STATE/apt.log)"; }
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if alive "$STATE/munged.pid"; then return; fi
    if [ ! -s /etc/munge/munge.key ]; then
        if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null
        else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    runuser -u munge -- /usr/sbin/munged --force \
        || die "munged did not start (see /var/log/munge/munged.log)"
    local i
    for i in $(seq 50); do
        [ -s /run/munge/munged.pid ] && break
        sleep 0.1
    done
    [ -s /run/munge/munged.pid ] || die "munged did not write /run/munge/munged.pid"
    cp /run/munge/munged.pid "$STATE/munged.pid"
    munge -n | unmunge >/dev/null || die "munge credentials do not round-trip (munge -n | unmunge failed)"
}

write_conf() {
    if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; refusing to replace a real cluster's configuration"
    fi
    local host cpus mem_mb max_array_size
    host="$(hostname)"
    max_array_size="${SLURM_LOCAL_MAX_ARRAY_SIZE:-1001}"
    case "$max_array_size" in
        ''|*[!0-9]*) die "SLURM_LOCAL_MAX_ARRAY_SIZE must be a whole number (Slurm's default is 1001), not '$max_array_size'" ;;
    esac
    cpus="$(nproc)"
    # The node's memory (90% of what the machine has), so that jobs may ask for some
    # (`--mem 2G`); without it Slurm takes 1 MB and refuses every such request.
    mem_mb="$(awk '/^MemTotal:/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)"
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d"
    cat >"$CONF" <<EOF
$MARKER
ClusterName=runner-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire + 1 seconds before it may start again (default 120);
# 10 keeps the requeue test short.
AuthInfo=cred_expire=10
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# Schedule at once (batch_sched_delay, default 3 s) and as often as every 0.1 s (default
# 2 s): a task that ends frees its CPU for the next within a second, which the test's
# sweep of hundreds of short runs needs (default settings: 3 s a task).
SchedulerParameters=sched_min_interval=100000,batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MinJobAge=3600
KillWait=5
MaxArraySize=$max_array_size
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_idle() {
    local i state
    for i in $(seq 100); do
        state="$(sinfo -h -o %T 2>/dev/null | head -1 || true)"
        case "$state" in
            idle*|mixed*|allocated*) echo "slurm-local: node $(hostname) is $state"; return ;;
        esac
        sleep 0.2
    done
    echo "slurm-local: the node did not become idle (last state: '${state:-none}')" >&2
    tail -20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
    exit 1
}

up() {
    need_root
    mkdir -p "$STATE"
    install_packages
    start_munge
    write_conf
    if ! alive "$STATE/slurmctld.pid"; then
        slurmctld -i >>"$STATE/slurmctld.out" 2>&1 \
            || { tail -20 "$STATE/slurmctld.log" "$STATE/slurmctld.out" >&2 || true; die "slurmctld did not start"; }
    fi
    if ! alive "$STATE/slurmd.pid"; then
        slurmd >>"$STATE/slurmd.out" 2>&1 \
            || { tail -20 "$STATE/slurmd.log" "$STATE/slurmd.out" >&2 || true; die "slurmd did not start"; }
    fi
    wait_idle
}

stop_pid() {
    local name="$1" file="$STATE/$1.pid" pid i
    [ -f "$file" ] || return 0
    pid="$(cat "$file")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
        echo "slurm-local: stopped $name ($pid)"
    fi
    rm -f "$file"
}

down() {
    need_root
    stop_pid slurmd
    stop_pid slurmctld
    stop_pid munged
    if [ -e "$CONF" ] && grep -qF "$MARKER" "$CONF"; then rm -f "$CONF"; fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) sinfo ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
