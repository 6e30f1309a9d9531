"""gradctl train --diagnostics over a real server: a deep sigmoid MLP warned
of vanishing gradients (its ReLU twin not), a ReLU layer with a large
negative bias warned of dead units (BatchNorm before it not), each warning
told once however many steps repeat it, the warnings column of the metrics
CSVs, and --resume rewriting them as the unbroken run wrote them."""

import csv
import re

import numpy as np
import pytest

from gradctl_runs import gradctl, write_graph
from test_analysis import biased_relu, deep_mlp


@pytest.fixture
def server(quick_server):
    return quick_server


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def net(tmp_path, kind):
    """The graph file and data set of a network test_analysis diagnoses."""
    rng = np.random.default_rng(0)
    if kind in ("Sigmoid", "ReLU"):
        g, _, feeds = deep_mlp(kind, rng, batch=64)
    else:
        g, feeds = biased_relu(kind == "batch-norm", rng)
    np.savez(tmp_path / f"{kind}.npz", **feeds)
    return write_graph(g, tmp_path / f"{kind}.json"), tmp_path / f"{kind}.npz"


def train(server, tmp_path, kind, out, *extra):
    graph, data = net(tmp_path, kind)
    return gradctl(server, "train", "--graph", graph, "--data", data, "--loss", "L",
                   "--batch-size", 16, "--optimizer", "sgd", "--lr", 0.01,
                   "--progress", "off", "--out", out, *extra)


def warning_lines(stdout):
    return [line for line in stdout.splitlines() if re.match(r"step \d+: (warning|cleared)", line)]


def diagnosed_run(server, tmp_path, kind, epochs, every):
    """A run of 4 steps an epoch with --diagnostics: its outcome, its warning
    lines and its steps.csv rows."""
    run = train(server, tmp_path, kind, tmp_path / "run", "--epochs", epochs, "--diagnostics",
                "--diagnostics-every", every)
    assert run.returncode == 0, run.stderr
    steps = rows(tmp_path / "run" / "steps.csv")
    assert len(steps) == 4 * epochs
    return run, warning_lines(run.stdout), steps


@pytest.mark.parametrize("kind,vanishes", [("Sigmoid", True), ("ReLU", False)])
def test_vanishing_gradients_told_once_and_in_the_csvs(server, tmp_path, kind, vanishes):
    # 3 epochs, every other step diagnosed: 1, 3, ..., 11.
    run, lines, steps = diagnosed_run(server, tmp_path, kind, 3, 2)
    vanishing = [s["warnings"] for s in steps if "vanishing" in s["warnings"]]
    if not vanishes:
        assert lines == [], run.stdout
        assert vanishing == []
        assert "diagnostics at step 11 (the last diagnosed): no warnings" in run.stdout
        return
    # Told at the first step, not again at the five diagnosed after it.
    assert len(lines) == 1, run.stdout
    assert re.fullmatch(r"step 1: warning: gradient norm at 'fc0' is \S+ of that at 'fc9': "
                        r"vanishing gradients", lines[0]), lines[0]
    ratio = float(lines[0].split(" is ")[1].split(" of ")[0])
    assert 0 < ratio < 1e-3
    # In steps.csv at each diagnosed step, only there.
    assert [int(s["step"]) for s in steps if "vanishing" in s["warnings"]] == [1, 3, 5, 7, 9, 11]
    assert all(s["warnings"] == "" for s in steps if int(s["step"]) % 2 == 0)
    assert steps[0]["warnings"] == lines[0].split("warning: ", 1)[1]
    epochs = rows(tmp_path / "run" / "epochs.csv")
    assert [("vanishing gradients" in e["warnings"]) for e in epochs] == [True] * 3
    assert "1 warning(s)" in run.stdout and "(since step 1)" in run.stdout


@pytest.mark.parametrize("kind,dead", [("biased-relu", True), ("batch-norm", False)])
def test_dead_relu_warned_and_batch_norm_clears_it(server, tmp_path, kind, dead):
    run, lines, steps = diagnosed_run(server, tmp_path, kind, 2, 1)
    if dead:
        assert lines == ["step 1: warning: node 'relu1': 100% of ReLU units are dead "
                         "(never positive in this batch of 16)"], run.stdout
        assert all("node 'relu1': 100% of ReLU units are dead" in s["warnings"] for s in steps)
    else:
        assert not any("dead" in line for line in lines), run.stdout
        assert not any("dead" in s["warnings"] for s in steps)


def test_diagnostics_every_needs_diagnostics(server, tmp_path):
    run = train(server, tmp_path, "ReLU", tmp_path / "run", "--diagnostics-every", 3)
    assert run.returncode == 2
    assert "--diagnostics-every goes with --diagnostics" in run.stderr


def test_resume_rewrites_the_warnings_as_the_unbroken_run(server, tmp_path):
    """Stopped mid-epoch and resumed, the warnings columns equal the unbroken
    run's, and a warning in force at the checkpoint is not told again."""
    common = ["--epochs", 3, "--diagnostics", "--diagnostics-every", 3, "--shuffle", "--seed", 4]
    whole = train(server, tmp_path, "Sigmoid", tmp_path / "whole", *common)
    assert whole.returncode == 0, whole.stderr
    part = train(server, tmp_path, "Sigmoid", tmp_path / "part", *common, "--max-steps", 6)
    assert part.returncode == 0, part.stderr
    assert len(warning_lines(part.stdout)) == 1
    resumed = train(server, tmp_path, "Sigmoid", tmp_path / "part", *common, "--resume",
                    tmp_path / "part" / "checkpoint.npz")
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 6 " in resumed.stdout
    assert warning_lines(resumed.stdout) == [], resumed.stdout
    assert "(since step 1)" in resumed.stdout
    for name in ("steps.csv", "epochs.csv"):
        a, b = rows(tmp_path / "whole" / name), rows(tmp_path / "part" / name)
        for r in a + b:
            r.pop("seconds", None)
        assert a == b, name
    assert sum("vanishing" in s["warnings"] for s in rows(tmp_path / "whole" / "steps.csv")) == 4


def test_diagnostics_do_not_change_the_run(server, tmp_path):
    """Asking for Diagnostics only observes: the losses, gradient norms and
    final parameters are the same bit for bit."""
    common = ["--epochs", 2, "--save"]
    plain = train(server, tmp_path, "Sigmoid", tmp_path / "a", *common, tmp_path / "a.npz")
    seen = train(server, tmp_path, "Sigmoid", tmp_path / "b", *common, tmp_path / "b.npz",
                 "--diagnostics", "--diagnostics-every", 1)
    assert plain.returncode == 0 and seen.returncode == 0, plain.stderr + seen.stderr
    a, b = rows(tmp_path / "a" / "steps.csv"), rows(tmp_path / "b" / "steps.csv")
    assert [r.pop("warnings") for r in a] == [""] * 8
    assert all("vanishing" in r.pop("warnings") for r in b)
    assert a == b
    assert float(a[-1]["loss"]) != float(a[0]["loss"])  # it did train
    with np.load(tmp_path / "a.npz") as x, np.load(tmp_path / "b.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        assert all(x[k].tobytes() == y[k].tobytes() for k in x.files)


@pytest.mark.parametrize("lr,dies", [(1.0, True), (0.05, False)])
def test_too_high_a_learning_rate_kills_relus(server, digits, tmp_path, lr, dies):
    """The digits MLP is healthy at its start; SGD with lr 1 and momentum 0.9
    kills most of its ReLU units within the first epoch, lr 0.05 none."""
    run = gradctl(server, "train", "--graph", digits / "digits-mlp.json", "--data",
                  digits / "digits-train.npz", "--map", "x=images", "--loss", "loss",
                  "--epochs", 2, "--batch-size", 32, "--optimizer", "sgd", "--lr", lr,
                  "--momentum", 0.9, "--divergence-factor", 0, "--progress", "off",
                  "--diagnostics", "--out", tmp_path)
    assert run.returncode == 0, run.stderr
    steps = rows(tmp_path / "steps.csv")
    assert steps[0]["warnings"] == ""  # step 1: nothing wrong yet
    dead = [line for line in warning_lines(run.stdout) if "ReLU units are dead" in line]
    if not dies:
        assert dead == [], run.stdout
        assert all(s["warnings"] == "" for s in steps)
        return
    assert len(dead) >= 1, run.stdout
    first = re.match(r"step (\d+): warning: node 'act': (\d+)% of ReLU units are dead", dead[0])
    assert first and 1 < int(first.group(1)) <= 45 and int(first.group(2)) >= 50, dead[0]
    # The CSV has it at that step; diagnosed steps are 1, 11, 21, ...
    at = int(first.group(1))
    assert (at - 1) % 10 == 0
    assert "node 'act'" in steps[at - 1]["warnings"]
