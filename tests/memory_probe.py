"""Runs one job of a spec in this process under an address-space limit (for the memory tests).

    python memory_probe.py SPEC RESULTS LIMIT_BYTES   (LIMIT_BYTES 0: no limit)

Prints one JSON line: the outcome, and this process's peak virtual and resident memory (MiB).
"""

import json
import resource
import sys


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    return -1


def main() -> None:
    spec_path, results, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from benchmark.jobs import run_job
    from benchmark.spec import expand, load_spec
    from benchmark.store import ResultsStore

    spec = load_spec(spec_path)
    job = expand(spec)[0]
    outcome = run_job(job, ResultsStore.for_study(results, spec.study))
    print(json.dumps({"status": outcome.status, "reason": outcome.reason,
                      "vm_peak_mb": _status("VmPeak"), "rss_peak_mb": _status("VmHWM")}))


if __name__ == "__main__":
    main()
