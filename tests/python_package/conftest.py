"""Fixtures for the gradserve package's tests. They run with the venv that
`make python` installs the package into (build/venv/bin/python) and import
the installed package, never client/python: test_installed checks that."""

import os
import socket
import subprocess
import tempfile
import time

import pytest

import gradserve

BUILD_DIR = os.environ.get(
    "GRADSERVE_BUILD_DIR",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
GRADSERVE = os.path.join(BUILD_DIR, "server", "gradserve")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """build/server/gradserve on a free loopback port; `.address`."""

    def __init__(self, *flags, port=None):
        self.address = f"127.0.0.1:{port or free_port()}"
        fd, self.log_path = tempfile.mkstemp(prefix="gradserve-pkg-", suffix=".log")
        with os.fdopen(fd, "ab") as log:
            self.process = subprocess.Popen(
                [GRADSERVE, f"--address={self.address}", "--threads_per_worker=1", *flags],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", int(self.address.split(":")[1])),
                                              timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gradserve did not start: {self.output()}")
                time.sleep(0.05)

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def close(self):
        self.process.terminate()
        code = self.process.wait(timeout=60)
        os.unlink(self.log_path)
        assert code == 0, f"gradserve exited with {code}"


@pytest.fixture(scope="session")
def server():
    s = Server("--workers=2")
    yield s
    s.close()


@pytest.fixture
def client(server):
    with gradserve.Client(server.address) as c:
        yield c


@pytest.fixture
def start_server():
    started = []

    def start(*flags, port=None):
        s = Server(*flags, port=port)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()
