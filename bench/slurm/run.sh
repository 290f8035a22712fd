#!/usr/bin/env bash
# A real SLURM run of the workflow on this machine: a one-node cluster from Debian's packages
# (slurmctld + slurmd + munge, localhost only), the Snakemake SLURM executor plugin, and
# `snakemake --profile profiles/slurm --configfile=config/ci.yaml results/table2.csv` through sbatch,
# compared with a local run of the same target. Needs root (apt-get, daemons). Idempotent: every step
# checks what is already there.
#
#   bench/slurm/run.sh            all steps: cluster, plugin, local, slurm, compare
#   bench/slurm/run.sh cluster    install and start the cluster (waits for the node to be idle)
#   bench/slurm/run.sh plugin     pip-install the executor plugin into the venv (pinned in requirements/lock.txt)
#   bench/slurm/run.sh local      the reference: results/table2.csv with --cores 2 in work/slurm-bench/local
#   bench/slurm/run.sh slurm      the same target through sbatch in work/slurm-bench/slurm
#   bench/slurm/run.sh compare    both tables byte for byte, the jobs SLURM ran, both times
#
# Environment: PYTHON (default .venv/bin/python of this checkout, else /work/main/.venv/bin/python),
# BENCH (default work/slurm-bench), CORES (default 2).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=/work/main/.venv/bin/python; fi
fi
BENCH=${BENCH:-$REPO/work/slurm-bench}
CORES=${CORES:-2}
PLUGIN="snakemake-executor-plugin-slurm"
# Jobs run `python -m nuwa` of the interpreter that runs Snakemake (common.smk: PY = sys.executable);
# sbatch --export=ALL (the plugin's default) carries PYTHONPATH, so every job imports this checkout.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$(dirname "$PYTHON"):$PATH"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1   # same threads in both runs: the tables compare byte for byte

log() { printf '[slurm-bench %(%H:%M:%S)T] %s\n' -1 "$*"; }

cluster() {
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
        log "installing slurm-wlm, munge"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            slurm-wlm slurmctld slurmd slurm-client munge
    fi
    # munge: a key, then the daemon (as the munge user, as the Debian unit does)
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "starting munged"
        runuser -u munge -- /usr/sbin/munged
        sleep 1
        munge -n | unmunge >/dev/null
    fi
    # slurm.conf: this machine's node line (slurmd -C reads CPUs, sockets, cores, memory)
    local host node conf
    host=$(hostname -s)
    node=$(slurmd -C | head -1)
    conf=$(sed -e "s|@HOST@|$host|g" -e "s|@NODE@|$node|" "$HERE/slurm.conf.in")
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    if [[ ! -f /etc/slurm/slurm.conf ]] || [[ "$(cat /etc/slurm/slurm.conf)" != "$conf" ]]; then
        log "writing /etc/slurm/slurm.conf ($node)"
        printf '%s\n' "$conf" > /etc/slurm/slurm.conf
        if pgrep -x slurmctld >/dev/null; then scontrol reconfigure || true; fi
    fi
    # the daemons run under nice, and jobs inherit slurmd's priority (PropagatePrioProcess=0)
    if ! pgrep -x slurmctld >/dev/null; then log "starting slurmctld"; nice -n 5 /usr/sbin/slurmctld; fi
    if ! pgrep -x slurmd >/dev/null; then log "starting slurmd"; nice -n 5 /usr/sbin/slurmd; fi
    local state=""
    for _ in $(seq 60); do
        state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
        [[ "$state" == idle || "$state" == mixed || "$state" == allocated ]] && break
        [[ "$state" == down* || "$state" == drain* ]] && scontrol update nodename="$host" state=resume 2>/dev/null || true
        sleep 1
    done
    if [[ "$state" != idle && "$state" != mixed && "$state" != allocated ]]; then
        log "node not up (state '$state'); see /var/log/slurm/slurmctld.log and slurmd.log"; exit 1
    fi
    sinfo
}

plugin() {
    if ! "$PYTHON" -c "import snakemake_executor_plugin_slurm" 2>/dev/null; then
        log "installing $PLUGIN (version from requirements/lock.txt)"
        "$PYTHON" -m pip install -c "$REPO/requirements/lock.txt" "$PLUGIN" "$PLUGIN-jobstep"
    fi
    "$PYTHON" -m pip show "$PLUGIN" | grep -i '^version'
}

fresh() {  # an empty run directory holding a copy of config/ (as tests/test_workflow_e2e.py does)
    rm -rf "$1" && mkdir -p "$1" && cp -r "$REPO/config" "$1/config"
}

timed() {  # timed NAME CMD...: the command's output to $BENCH/NAME.log, its seconds to $BENCH/NAME.seconds
    local name=$1 start rc=0; shift
    log "$name: $*"
    start=$(date +%s)
    "$@" > "$BENCH/$name.log" 2>&1 || rc=$?
    echo $(( $(date +%s) - start )) > "$BENCH/$name.seconds"
    log "$name: exit $rc after $(cat "$BENCH/$name.seconds") s (log $BENCH/$name.log)"
    return $rc
}

local_run() {
    mkdir -p "$BENCH" && fresh "$BENCH/local"
    cd "$REPO"
    timed local nice -n 10 "$PYTHON" -m snakemake -s "$REPO/Snakefile" --directory "$BENCH/local" \
        --cores "$CORES" --configfile=config/ci.yaml results/table2.csv
}

slurm_run() {
    mkdir -p "$BENCH" && fresh "$BENCH/slurm"
    cd "$REPO"
    # profiles/slurm as a user runs it (--workflow-profile: it replaces profiles/default, whose
    # default-resources and latency-wait would otherwise override the SLURM profile's), with this
    # cluster's resources on the command line (a command-line option replaces the profile's value):
    # partition debug, no GPUs (so no --gpus), one CPU and 3 GB per job. Status through squeue: without
    # slurmdbd, `sacct` fails ("Slurm accounting storage is disabled") and the plugin loses the jobs.
    # Status checks every 10 s instead of 40 s: ci jobs take seconds.
    timed slurm "$PYTHON" -m snakemake -s "$REPO/Snakefile" --directory "$BENCH/slurm" \
        --workflow-profile profiles/slurm --configfile=config/ci.yaml \
        --default-resources slurm_partition=debug mem_mb=3000 cpus_per_task=1 runtime=60 gpu=0 \
        --set-resources train:gpu=0 \
        --slurm-status-command squeue --slurm-init-seconds-before-status-checks 10 \
        "$@" results/table2.csv
}

compare() {
    local a=$BENCH/local/results/table2.csv b=$BENCH/slurm/results/table2.csv ok=0
    [[ -f $a && -f $b ]] || { log "missing $a or $b: run the local and slurm steps first"; exit 1; }
    if cmp -s "$a" "$b"; then log "results/table2.csv: identical (local vs SLURM)"; else
        log "results/table2.csv differs:"; diff "$a" "$b" || true; ok=1; fi
    local jobs
    jobs=$(grep -c "Job .* has been submitted with SLURM jobid" "$BENCH/slurm.log" || true)
    log "SLURM jobs submitted by snakemake: $jobs; squeue (jobs kept MinJobAge seconds after they end):"
    squeue --states=all -o '%.6i %.12j %.10T %.8M %R' | head -5 || true
    [[ "$jobs" -gt 0 ]] || { log "no sbatch submissions in $BENCH/slurm.log"; ok=1; }
    log "time: local $(cat "$BENCH/local.seconds" 2>/dev/null || echo ?) s, SLURM $(cat "$BENCH/slurm.seconds" 2>/dev/null || echo ?) s"
    return $ok
}

case "${1:-all}" in
    cluster) cluster ;;
    plugin) plugin ;;
    local) local_run ;;
    slurm) shift; slurm_run "$@" ;;
    compare) compare ;;
    all) cluster; plugin; local_run; slurm_run; compare ;;
    *) echo "usage: $0 [all|cluster|plugin|local|slurm|compare]" >&2; exit 2 ;;
esac
