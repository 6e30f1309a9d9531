import os
import subprocess

import pytest

import gs

MAKE_DATASETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                             "tools", "make-datasets.py")


@pytest.fixture(scope="session")
def server():
    """One gradserve for the session; tests must leave it healthy."""
    s = gs.Server()
    yield s
    assert s.alive(), f"gradserve died during the tests: {s.output()}"
    s.close()


@pytest.fixture(scope="session")
def quick_server():
    """A gradserve for the many small requests of the session and stream
    suites: two workers of one thread each (OpenMP teams only cost time at
    these sizes, and much of it when the machine's cores are busy)."""
    s = gs.Server("--workers=2", "--threads_per_worker=1")
    yield s
    assert s.alive(), f"gradserve died during the tests: {s.output()}"
    s.close()


@pytest.fixture
def start_server():
    """Starts servers with flags (one thread per worker unless the flags say
    otherwise, as for quick_server); checks and closes them after the test."""
    started = []

    def start(*flags):
        if not any(f.startswith("--threads_per_worker") for f in flags):
            flags = ("--threads_per_worker=1", *flags)
        s = gs.Server(*flags)
        started.append(s)
        return s

    yield start
    for s in started:
        assert s.alive(), f"gradserve died during the test: {s.output()}"
        s.close()


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """tools/make-datasets.py's output: digits-train.npz, digits-val.npz and
    digits-mlp.json in one directory (its path)."""
    out = tmp_path_factory.mktemp("datasets")
    subprocess.run(["/usr/bin/python3", MAKE_DATASETS, "--out", str(out)], check=True,
                   capture_output=True, timeout=120)
    return out
