#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for running the workflow through
# `snakemake --profile profiles/slurm` in tests (Debian/Ubuntu, as root).
#
#   bash tests/slurm/local_slurm.sh start     install if needed, start munged, slurmctld, slurmd
#   bash tests/slurm/local_slurm.sh stop      cancel every job, stop the daemons this script started
#   bash tests/slurm/local_slurm.sh status    the daemons' PIDs and the node's state
#   bash tests/slurm/local_slurm.sh run CMD   start, run CMD, stop (also when CMD fails)
#   bash tests/slurm/local_slurm.sh install   only install the Debian packages
#
# The cluster: one node named after this host with fake resources (SlurmdParameters=
# config_overrides): $LOCAL_SLURM_CPUS CPUs, $LOCAL_SLURM_MEM_MB MB and $LOCAL_SLURM_GPUS GPUs
# declared as a count-only GRES (no device files), so that the workflow's GPU jobs are scheduled
# and then run on the CPU. Partitions `gpu` (default) and `cpu` both hold the node, as named in
# profiles/slurm/config.yaml. No accounting (sacct does not work): the profile's status command
# is squeue, and MinJobAge=300 keeps finished jobs visible to it.
#
# The config is written to /etc/slurm/slurm.conf (the client commands run inside jobs read that
# path), state and logs go to $LOCAL_SLURM_DIR (default /var/spool/sslzoo-slurm). An existing
# /etc/slurm/slurm.conf not written by this script is never replaced.
#
# Exit status 77: SLURM cannot be run here (not root, no apt-get, a foreign slurm.conf); the
# reason is the last line on stderr. Tests turn it into a skip.
set -euo pipefail

readonly SKIP=77
readonly STATE_DIR=${LOCAL_SLURM_DIR:-/var/spool/sslzoo-slurm}
readonly CPUS=${LOCAL_SLURM_CPUS:-64}
readonly MEM_MB=${LOCAL_SLURM_MEM_MB:-256000}
readonly GPUS=${LOCAL_SLURM_GPUS:-8}
readonly CONF_DIR=/etc/slurm
readonly MARKER="# Written by tests/slurm/local_slurm.sh (a single-node test cluster)."
readonly PACKAGES=(slurmctld slurmd slurm-client munge)
readonly MUNGE_SOCKET=/run/munge/munge.socket.2
NODE=$(hostname -s)
readonly NODE
STARTED=0  # set once `start` has the node idle

say() { echo "local_slurm: $*" >&2; }
skip() { say "$*"; exit "$SKIP"; }

require_root() {
    if [[ $(id -u) -ne 0 ]]; then
        skip "cannot $1: needs root (installs Debian packages, writes /etc/slurm, starts daemons)"
    fi
}

installed() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null
}

install_packages() {
    if installed; then
        return 0
    fi
    require_root "install ${PACKAGES[*]}"
    command -v apt-get >/dev/null || skip "cannot install ${PACKAGES[*]}: no apt-get on this machine"
    # Keep the packages' maintainer scripts from starting the system services: this script
    # starts its own daemons. An existing policy-rc.d (e.g. Docker's) is left as it is.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
    fi
    local apt=(apt-get install -y -q --no-install-recommends "${PACKAGES[@]}") status=0
    say "installing ${PACKAGES[*]}"
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" >"$STATE_DIR/apt.log" 2>&1 || status=$?
    if [[ $status -ne 0 ]]; then  # stale or missing package lists
        status=0
        DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$STATE_DIR/apt.log" 2>&1 \
            && DEBIAN_FRONTEND=noninteractive "${apt[@]}" >>"$STATE_DIR/apt.log" 2>&1 || status=$?
    fi
    if [[ $added_policy -eq 1 ]]; then
        rm -f "$policy"
    fi
    if [[ $status -ne 0 ]]; then
        tail -n 20 "$STATE_DIR/apt.log" >&2
        say "apt-get install ${PACKAGES[*]} failed (log: $STATE_DIR/apt.log)"
        exit 1
    fi
}

write_config() {
    if [[ -e $CONF_DIR/slurm.conf ]] && ! grep -qxF "$MARKER" "$CONF_DIR/slurm.conf"; then
        skip "$CONF_DIR/slurm.conf exists and was not written by this script; not replacing it"
    fi
    mkdir -p "$CONF_DIR" "$STATE_DIR/ctld" "$STATE_DIR/slurmd"
    cat >"$CONF_DIR/slurm.conf" <<EOF
$MARKER
ClusterName=sslzoo-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
# no cgroups: they may not be available in a container
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
# no accounting: sacct fails, so clients query job states with squeue; finished jobs stay
# visible to squeue for MinJobAge seconds
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=300
# seconds between SIGTERM and SIGKILL when a job is cancelled or times out
KillWait=5
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# the node's resources are the ones below, whatever the hardware has
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$GPUS State=UNKNOWN
PartitionName=gpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=cpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
    # Fake GPUs: SLURM 22.05 counts a GPU GRES only by its device files, so each "GPU" is a
    # character device with the numbers of /dev/null. Jobs get them scheduled and run on the CPU.
    mkdir -p "$STATE_DIR/dev"
    local i
    for ((i = 0; i < GPUS; i++)); do
        if [[ ! -c $STATE_DIR/dev/gpu$i ]]; then
            rm -f "$STATE_DIR/dev/gpu$i"
            mknod -m 666 "$STATE_DIR/dev/gpu$i" c 1 3 2>/dev/null \
                || skip "cannot create the fake GPU devices (mknod $STATE_DIR/dev/gpu$i failed)"
        fi
    done
    cat >"$CONF_DIR/gres.conf" <<EOF
$MARKER
NodeName=$NODE Name=gpu File=$STATE_DIR/dev/gpu[0-$((GPUS - 1))]
EOF
}

# alive PID NAME: PID runs a program named NAME (not a later process that reused the PID)
alive() { [[ -n ${1:-} && "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]]; }

pid_of() { if [[ -s $1 ]]; then cat "$1"; fi; }

daemon_running() { alive "$(pid_of "$STATE_DIR/$1.pid")" "$1"; }

start_munged() {
    if [[ -S $MUNGE_SOCKET ]] && munge -n </dev/null >/dev/null 2>&1; then
        say "munged already running; using it (and leaving it running)"
        rm -f "$STATE_DIR/munged.pid"
        return 0
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$STATE_DIR/munged.pid"
}

wait_for_idle() {
    local deadline=$((SECONDS + ${LOCAL_SLURM_START_TIMEOUT:-60})) state=""
    while ((SECONDS < deadline)); do
        state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1 || true)
        case $state in
            idle | mixed | allocated) return 0 ;;
            inval*) break ;;
            drain* | down*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    say "node $NODE not idle (state: '${state}'); logs:"
    tail -n 20 "$STATE_DIR/slurmctld.log" "$STATE_DIR/slurmd.log" >&2 || true
    return 1
}

cmd_start() {
    require_root "start a SLURM cluster"
    mkdir -p "$STATE_DIR"
    install_packages
    if daemon_running slurmctld && daemon_running slurmd; then
        say "already running"
        wait_for_idle
        return 0
    fi
    write_config
    # on any failure from here on, stop what was started
    trap '[[ $STARTED -eq 1 ]] || cmd_stop' EXIT
    start_munged
    slurmctld -c  # -c: start from a clean state (no jobs of an earlier run)
    slurmd
    wait_for_idle
    STARTED=1
    trap - EXIT
    say "running: node $NODE, partitions gpu and cpu, $CPUS CPUs, $GPUS GPUs; state in $STATE_DIR"
}

# stop_daemon NAME: stop the daemon whose PID is in $STATE_DIR/NAME.pid (TERM, then KILL after 10 s)
stop_daemon() {
    local file=$STATE_DIR/$1.pid pid
    pid=$(pid_of "$file")
    if alive "$pid" "$1"; then
        kill -TERM "$pid"
        for _ in $(seq 50); do
            alive "$pid" "$1" || break
            sleep 0.2
        done
        if alive "$pid" "$1"; then
            kill -KILL "$pid"
        fi
    fi
    rm -f "$file"
}

cmd_stop() {
    if daemon_running slurmctld; then
        scancel --quiet --user "$(id -un)" 2>/dev/null || true
        # give the jobs' processes KillWait (5 s) to end before slurmd goes away
        for _ in $(seq 40); do
            [[ -z $(squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null) ]] && break
            sleep 0.25
        done
    fi
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
    say "stopped"
}

cmd_status() {
    local name pid
    for name in munged slurmctld slurmd; do
        pid=$(pid_of "$STATE_DIR/$name.pid")
        if alive "$pid" "$name"; then echo "$name running (pid $pid)"; else echo "$name not running"; fi
    done
    sinfo -N -o '%N %P %T %c %m %G' 2>/dev/null || true
}

cmd_run() {
    cmd_start
    # stop at the end, also when the command fails; a cluster that was already running stays
    trap '[[ $STARTED -eq 0 ]] || cmd_stop' EXIT
    "$@"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    install) require_root "install"; mkdir -p "$STATE_DIR"; install_packages ;;
    run) shift; cmd_run "$@" ;;
    *) echo "usage: $0 start|stop|status|install|run CMD..." >&2; exit 2 ;;
esac
