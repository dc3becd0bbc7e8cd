#!/usr/bin/env bash
# Start the engines the Slurm and Ray executor tests run against (tests/test_executor_slurm.py,
# tests/test_executor_ray.py). Run as root from anywhere, before the tests:
#
#   .ci/start_engines.sh            # a real single-node Slurm (.ci/slurm/start.sh), checks Ray
#   .ci/start_engines.sh stop       # stops that Slurm again (.ci/slurm/stop.sh, by recorded PIDs)
#
# Ray needs no daemon here: the Ray tests start their own head (`ray start --head --block`, 2 CPUs,
# loopback only) and a private local Ray, and stop exactly those. The variables below keep every
# Ray process on 127.0.0.1 and quiet; export them in the calling script too if it runs Ray itself.
set -euo pipefail
SLURM_CI=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/slurm

if [ "${1:-start}" = "stop" ]; then
  bash "$SLURM_CI/stop.sh"
  exit 0
fi
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled

t0=$(date +%s)
bash "$SLURM_CI/start.sh"                     # prints READY, or exits 1 with the log's tail
sinfo -h >/dev/null                           # the tests' own check, so a skip here is a failure
echo "start_engines: Slurm ready in $(( $(date +%s) - t0 )) s"

PY=${PYTHON:-python}
if "$PY" -c "import submitit, ray" 2>/dev/null; then
  "$PY" -c "import submitit, ray; print(f'start_engines: submitit {submitit.__version__}, ray {ray.__version__}')"
else
  echo "start_engines: submitit or ray is not importable by $PY: install '.[slurm,ray]' first" >&2
  exit 1
fi
