#!/usr/bin/env bash
# Start a single-node Slurm cluster on localhost (munge + slurmctld + slurmd) for the cluster test
# (tests/integration/test_slurm.py) and for trying Nipype's SLURM / SLURMGraph plugins by hand.
#
# Usage (as root; installs munge and slurm-wlm with apt when missing):
#   eval "$(bash tools/slurm_start.sh [DIR])"     # exports SLURM_CONF, BRAINRECON_SLURM=1, LOGNAME ...
#   python -m pytest tests/integration/test_slurm.py
#   bash tools/slurm_stop.sh [DIR]
#
# Everything lives in DIR (default $BRAINRECON_SLURM_DIR or /tmp/brainrecon-slurm): slurm.conf,
# a private munged (own socket and key copy), state, spool, logs, pid files and the job records
# (JobCompType=jobcomp/filetxt: one line per finished job in DIR/jobcomp.txt; sacct would need
# slurmdbd). Free ports are picked, so a system Slurm on 6817/6818 is left alone. The export lines
# go to stdout (and DIR/env); progress goes to stderr. Running it again while the cluster is up only
# prints the exports.
set -euo pipefail
dir=${1:-${BRAINRECON_SLURM_DIR:-/tmp/brainrecon-slurm}}
say() { echo "slurm_start: $*" >&2; }
fail() {
  say "FAILED: $*"
  exit 1
}
start=$(date +%s)

[ "$(id -u)" = 0 ] || fail "run as root (it starts munged, slurmctld and slurmd)"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  say "installing munge slurm-wlm with apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends munge slurm-wlm >/dev/null
fi

alive() { # pid file: its process exists and is not a zombie
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null &&
    [ "$(awk '{print $3}' "/proc/$(cat "$1")/stat" 2>/dev/null)" != Z ]
}
if [ -f "$dir/env" ] && alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid" &&
  alive "$dir/munge/munged.pid"; then
  say "already running in $dir"
  cat "$dir/env"
  exit 0
fi
# A half-started or stale cluster in DIR: stop what is left of it, then start afresh.
if [ -d "$dir" ]; then
  bash "$(dirname "$0")/slurm_stop.sh" "$dir" >&2 || true
fi

mkdir -p "$dir"/{state,spool,munge}
dir=$(cd "$dir" && pwd)
chmod 755 "$dir"

# ---- munge: a private daemon with its own socket and key ----
if [ -f /etc/munge/munge.key ]; then
  cp /etc/munge/munge.key "$dir/munge/munge.key"
else
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
fi
chown -R munge:munge "$dir/munge"
chmod 700 "$dir/munge"
chmod 400 "$dir/munge/munge.key"
socket=$dir/munge/munge.socket
runuser -u munge -- /usr/sbin/munged --force --socket="$socket" \
  --key-file="$dir/munge/munge.key" --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" ||
  fail "munged did not start: $(tail -3 "$dir/munge/munged.log" 2>/dev/null)"
for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done
[ -S "$socket" ] || fail "no munge socket at $socket"

# ---- ports, machine size ----
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ctld_port=6817
while ! port_free "$ctld_port" || ! port_free $((ctld_port + 1)); do
  ctld_port=$((ctld_port + 2))
  [ "$ctld_port" -lt 6917 ] || fail "no two free ports in 6817-6917"
done
slurmd_port=$((ctld_port + 1))
cpus=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.85)}' /proc/meminfo)

conf=$dir/slurm.conf
cat >"$conf" <<EOF
# Single-node Slurm on localhost, written by tools/slurm_start.sh
ClusterName=brainrecon
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=300
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$conf

# ---- daemons ----
slurmctld -f "$conf" -i || fail "slurmctld did not start: $(tail -5 "$dir/slurmctld.log")"
slurmd -f "$conf" -N localhost || fail "slurmd did not start: $(tail -5 "$dir/slurmd.log")"
state=
for _ in $(seq 120); do
  state=$(sinfo -h -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.25
done
if [ "$state" != idle ]; then
  tail -5 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
  fail "node state is '$state', not idle"
fi

cat >"$dir/env" <<EOF
export SLURM_CONF=$conf
export BRAINRECON_SLURM=1
export BRAINRECON_SLURM_DIR=$dir
export BRAINRECON_SLURM_JOBCOMP=$dir/jobcomp.txt
export LOGNAME=${LOGNAME:-$(id -un)}
EOF
say "up in $(($(date +%s) - start)) s: node localhost ($cpus CPUs, $mem_mb MB) idle; ports $ctld_port/$slurmd_port; config $conf"
cat "$dir/env"
