"""examples/node: an MLP's gradients from Node.js (@grpc/grpc-js and
@grpc/proto-loader from npm) match the same computation done in JavaScript."""

import os
import shutil
import subprocess

from npm_tools import npm_install

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
EXAMPLE = os.path.join(ROOT, "examples", "node")


def test_node_mlp_gradients_match_javascript(server):
    target = npm_install(EXAMPLE, "node-example")
    shutil.copy(os.path.join(EXAMPLE, "mlp_gradients.js"), target)
    done = subprocess.run(["node", "mlp_gradients.js", "--server", server.address,
                           "--proto", os.path.join(ROOT, "proto")],
                          cwd=target, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "every gradient matches"
    assert [line.split()[0] for line in lines[:-1]] == ["L", "dW1", "db1", "dW2", "db2", "dx"]
