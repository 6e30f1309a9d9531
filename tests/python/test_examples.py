"""The README's worked examples run as a new user runs them."""

import os
import re
import subprocess

import gs

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")


def test_train_session_example_learns(server):
    run = subprocess.run(
        ["/usr/bin/python3", os.path.join(EXAMPLES, "python", "train_session.py"),
         "--server", server.address],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, GRADSERVE_PYTHON_STUBS=os.path.join(gs.BUILD_DIR, "python")))
    assert run.returncode == 0, run.stderr
    losses = [float(v) for v in re.findall(r"loss (\d+\.\d+)", run.stdout)]
    assert len(losses) == 4 and losses[-1] < losses[0] / 10, run.stdout
    assert "checkpoint at step 300" in run.stdout
    accuracy = float(re.search(r"accuracy over 1000 held-out points: (\d+\.\d)%",
                               run.stdout).group(1))
    assert accuracy >= 95, run.stdout


def hessian(server, graph, k):
    return subprocess.run(
        [gs.GRADCTL, f"--server={server.address}", "hessian", "--graph",
         os.path.join(EXAMPLES, graph), "--loss", "f", "--k", str(k)],
        capture_output=True, text=True, timeout=60)


def test_hessian_examples_saddle_and_minimum(server):
    """The README's Analysis examples: x² − y² at (0, 0) is a saddle with
    eigenvalues 2 and −2; x² + y² there is a minimum, both 2."""
    saddle = hessian(server, "saddle.pbtxt", 1)
    assert saddle.returncode == 0, saddle.stderr
    assert saddle.stdout.splitlines() == [
        "exact: every eigenvalue of the whole Hessian", "loss 0, gradient norm 0",
        "largest    2", "smallest   -2", "critical point: saddle"], saddle.stdout
    bowl = hessian(server, "bowl.pbtxt", 2)
    assert bowl.returncode == 0, bowl.stderr
    assert "smallest   2 2" in bowl.stdout and "critical point: minimum" in bowl.stdout
