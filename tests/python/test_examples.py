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
