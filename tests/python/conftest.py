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
    s.close()  # fails if it died, or exits with an error (a sanitizer's report)


@pytest.fixture(scope="session")
def quick_server():
    """A gradserve for the many small requests of the session and stream
    suites: two workers of one thread each (OpenMP teams only cost time at
    these sizes, and much of it when the machine's cores are busy)."""
    s = gs.Server("--workers=2", "--threads_per_worker=1")
    yield s
    s.close()  # fails if it died, or exits with an error (a sanitizer's report)


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
        s.close()


@pytest.fixture(autouse=True)
def server_survives(request):
    """A test after which a shared server is dead fails, with its output
    (a sanitizer's report names the bug), not only the tests after it."""
    shared = [request.getfixturevalue(name) for name in ("server", "quick_server")
              if name in request.fixturenames]
    for s in shared:
        if not s.alive():
            pytest.fail("gradserve died in an earlier test (its output is there)")
    yield
    for s in shared:
        assert s.alive(), f"gradserve died during this test:\n{s.output()}"


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """tools/make-datasets.py's output: digits-train.npz, digits-val.npz and
    digits-mlp.json in one directory (its path)."""
    out = tmp_path_factory.mktemp("datasets")
    subprocess.run(["/usr/bin/python3", MAKE_DATASETS, "--out", str(out)], check=True,
                   capture_output=True, timeout=120)
    return out
