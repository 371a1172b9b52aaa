#!/usr/bin/env bash
# Stop the single-node Slurm cluster started by tools/slurm_start.sh: cancel its jobs, stop slurmd,
# slurmctld and the private munged by their pid files, then remove DIR (the job records in
# DIR/jobcomp.txt too) unless BRAINRECON_SLURM_KEEP=1.
#
# Usage: bash tools/slurm_stop.sh [DIR]     (default $BRAINRECON_SLURM_DIR or /tmp/brainrecon-slurm)
set -uo pipefail
dir=${1:-${BRAINRECON_SLURM_DIR:-/tmp/brainrecon-slurm}}
say() { echo "slurm_stop: $*" >&2; }
[ -d "$dir" ] || {
  say "nothing to stop ($dir absent)"
  exit 0
}

# Running: the process exists and is not a zombie (a daemon whose parent has not reaped it yet).
running() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

stop_pid() { # pid file, name
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  if running "$pid"; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then
      kill -9 "$pid" 2>/dev/null
    fi
    say "stopped $2 ($pid)"
  fi
  rm -f "$1"
}

if [ -f "$dir/slurm.conf" ] && [ -f "$dir/slurmctld.pid" ] &&
  kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
  SLURM_CONF=$dir/slurm.conf scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
fi
stop_pid "$dir/slurmd.pid" slurmd
stop_pid "$dir/slurmctld.pid" slurmctld
stop_pid "$dir/munge/munged.pid" munged
if [ "${BRAINRECON_SLURM_KEEP:-0}" = 1 ]; then
  say "kept $dir"
else
  rm -rf "$dir"
fi
