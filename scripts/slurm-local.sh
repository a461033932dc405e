#!/usr/bin/env bash
# A single-node Slurm cluster on this Debian machine, for the sweep tests and for trying
# `noether sweep submit --scheduler slurm` locally (as root):
#   scripts/slurm-local.sh start   # munged + slurmctld + slurmd on localhost
#   scripts/slurm-local.sh stop    # cancels its jobs and stops the daemons
# Needs Debian's packages `slurm-wlm` and `munge`. No cgroups: ProctrackType=linuxproc,
# TaskPlugin=none; no accounting (squeue reports jobs, sacct has nothing here). The
# generated slurm.conf goes to /etc/slurm/slurm.conf (where every Slurm command looks for it)
# unless one is there that this script did not write; state and logs live in
# $NOETHER_SLURM_DIR (default /var/tmp/noether-slurm).
set -euo pipefail

STATE="${NOETHER_SLURM_DIR:-/var/tmp/noether-slurm}"
CONF=/etc/slurm/slurm.conf
MARKER="# written by noether scripts/slurm-local.sh"

die() { echo "slurm-local: $*" >&2; exit 1; }

write_conf() {
    if [[ -f "$CONF" ]] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; not overwriting it"
    fi
    local host cpus mem
    host="$(hostname -s)"
    cpus="$(nproc)"
    # Leave a quarter of the memory to the system (MB).
    mem="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 3 / 4}' /proc/meminfo)"
    mkdir -p /etc/slurm "$STATE/state" "$STATE/spool"
    cat > "$CONF" <<CONF
$MARKER
ClusterName=noether
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
    if pgrep -x munged >/dev/null; then return; fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
}

start() {
    command -v slurmctld >/dev/null || die "slurmctld not found: apt-get install slurm-wlm munge"
    write_conf
    start_munge
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    # Wait (bounded) until the node takes jobs.
    for _ in $(seq 1 60); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "slurm-local: up ($(sinfo -h -o '%D node(s), %c CPUs, state %t'))"
            return
        fi
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    die "the node did not become idle in 60 s; see $STATE/slurmctld.log and $STATE/slurmd.log"
}

stop() {
    scancel --user="$(id -un)" >/dev/null 2>&1 || true
    for daemon in slurmd slurmctld; do
        pkill -x "$daemon" >/dev/null 2>&1 || true
    done
    for _ in $(seq 1 20); do
        pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || { echo "slurm-local: stopped"; return; }
        sleep 0.5
    done
    die "the daemons did not stop"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 start|stop" ;;
esac
