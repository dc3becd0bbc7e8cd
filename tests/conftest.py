import os
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Worker processes are spawned: they must find the test helpers and the package.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
)
sys.path.insert(0, str(Path(__file__).parent))


def wait_for(predicate, timeout: float, what: str):
    """Polls `predicate` until it returns something truthy (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def tiny_spec(study: str = "tiny", **changes) -> dict:
    """A study that trains for a few steps and evaluates one cheap metric: seconds per job."""
    spec = {
        "study": study,
        "datasets": [{"name": "dsprites_full", "source": "procedural"}],
        "methods": {"beta_vae": {"beta": [1, 4]}},
        "seeds": [0, 1],
        "training": {"steps": 4, "batch_size": 8, "checkpoint_every": 2},
        "evaluation": {"metrics": ["mig"], "representations": ["mean"],
                       "overrides": {"mig": {"num_train": 200}}},
        "figures": {"view_points": 100},  # t-SNE maps of 100 codes: a second, not a quarter minute
    }
    spec.update(changes)
    return spec


@pytest.fixture
def write_spec(tmp_path):
    def write(spec: dict, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


_exit_status: list[int] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _exit_status.append(int(exitstatus))


def pytest_unconfigure(config):
    """Leave without the interpreter's final teardown once the results are reported.

    In one of three full CI-style runs the interpreter segfaulted in teardown after "349 passed"
    (exit 139): native threads that the Ray and Slurm executor tests leave in this process (Ray's
    in-process core worker, submitit/torch) are finalised in an undefined order. The outcome is
    decided by then; `os._exit` keeps pytest's exit status and skips that teardown.
    """
    if _exit_status and ("ray" in sys.modules or "submitit" in sys.modules):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[0])
