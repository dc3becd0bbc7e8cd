"""A driver for the fault and concurrency tests, as a process of its own (to be killed):
`python local_driver.py STUDY_DIR STUDY JOBS WORKERS` runs JOBS fake jobs (`jobfns.sleepy`) with
the local executor, prints its summary as JSON and exits with its exit code."""

import json
import sys

import jobfns
from cluster_jobfns import make_jobs

from benchmark.executors.local import LocalExecutor
from benchmark.store import ResultsStore

if __name__ == "__main__":  # the spawned workers import this module too
    root, study, n, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    summary = LocalExecutor(workers=workers, job_fn=jobfns.sleepy).run(
        make_jobs(study, list(range(n))), ResultsStore(root), show_progress=False)
    print(json.dumps({"done": summary.done, "skipped": summary.skipped, "failed": summary.failed}))
    sys.exit(summary.exit_code)
