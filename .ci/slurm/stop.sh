#!/usr/bin/env bash
# Stop the single-node Slurm cluster that .ci/slurm/start.sh started. Run as root.
#
# Jobs still queued or running are cancelled first, so no job or slurmstepd outlives the cluster.
# Then only the processes whose PIDs start.sh recorded (/run/ci-slurm/started/*.pid) are signalled,
# and only while each PID still belongs to the expected program: nothing is killed by name.
# Order: slurmd, slurmctld, slurmdbd, mariadbd, munged; SIGTERM, then SIGKILL after
# CI_SLURM_STOP_TIMEOUT seconds (30).
set -uo pipefail
PID_DIR=/run/ci-slurm/started
TIMEOUT=${CI_SLURM_STOP_TIMEOUT:-30}
[ "$(id -u)" -eq 0 ] || { echo "[ci-slurm] ERROR: run as root" >&2; exit 1; }
if ! ls "$PID_DIR"/*.pid >/dev/null 2>&1; then echo "[ci-slurm] nothing to stop (no PIDs in $PID_DIR)"; exit 0; fi

ctld_pid=$(cat "$PID_DIR/slurmctld.pid" 2>/dev/null || true)
if [ -n "$ctld_pid" ] && [ "$(cat "/proc/$ctld_pid/comm" 2>/dev/null)" = slurmctld ]; then
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    echo "[ci-slurm] cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    deadline=$(( $(date +%s) + TIMEOUT ))
    while [ -n "$(squeue -h -t R,CG,S -o %A 2>/dev/null)" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.5; done
  fi
fi

rc=0
for name in slurmd slurmctld slurmdbd mariadbd munged; do
  f=$PID_DIR/$name.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if [ ! -d "/proc/$pid" ]; then
    echo "[ci-slurm] $name (pid $pid) was not running"; rm -f "$f"; continue
  fi
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  if [ "$comm" != "$name" ]; then
    echo "[ci-slurm] pid $pid is now '$comm', not $name: left alone"; rm -f "$f"; continue
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( $(date +%s) + TIMEOUT ))
  while [ -d "/proc/$pid" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
  if [ -d "/proc/$pid" ]; then
    echo "[ci-slurm] $name (pid $pid) ignored SIGTERM for ${TIMEOUT}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || rc=1
    sleep 0.5
  fi
  if [ -d "/proc/$pid" ]; then echo "[ci-slurm] ERROR: $name (pid $pid) is still alive" >&2; rc=1
  else echo "[ci-slurm] stopped $name (pid $pid)"; rm -f "$f"; fi
done
exit $rc
