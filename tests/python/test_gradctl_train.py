"""gradctl train over a real server: an MLP on sklearn's digits, per-step
losses against PyTorch, schedules, divergence, checkpoints and --resume, and
the metrics CSVs and SVG plot it writes."""

import csv
import re
import signal
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from gradctl_runs import gradctl, load_json, start_gradctl, wait_for

STEPS_PER_EPOCH = 45  # 1438 training samples in batches of 32


@pytest.fixture
def server(quick_server):
    """One thread a worker: small calls, and a machine whose cores are busy."""
    return quick_server


def train(server, digits, out, *extra):
    return gradctl(server, "train", "--graph", digits / "digits-mlp.json",
                   "--data", digits / "digits-train.npz", "--map", "x=images",
                   "--loss", "loss", "--batch-size", 32, "--out", out, *extra)


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def torch_mlp(digits):
    """The graph's parameters as torch tensors (the same initial values)."""
    g = load_json(digits / "digits-mlp.json")
    return {k: torch.tensor(np.array(v["floatValues"], np.float32).reshape(
        [int(d) for d in v["shape"]]), requires_grad=True) for k, v in g["parameters"].items()}


def torch_loss(p, x, y):
    h = torch.relu(x @ p["W1"].T + p["b1"])
    return torch.nn.functional.cross_entropy(h @ p["W2"].T + p["b2"], y)


def test_mlp_on_digits_reaches_95_percent_held_out(server, digits, tmp_path):
    # SGD with momentum annealed to 0: the last epochs settle (96-97% for
    # several seeds), so the bar does not hang on one epoch's luck.
    run = train(server, digits, tmp_path, "--epochs", 10, "--shuffle", "--seed", 2,
                "--optimizer", "sgd", "--lr", 0.2, "--momentum", 0.9,
                "--lr-schedule", "cosine", "--val", digits / "digits-val.npz",
                "--accuracy-of", "logits", "--save", tmp_path / "params.npz")
    assert run.returncode == 0, run.stderr
    epochs = rows(tmp_path / "epochs.csv")
    assert [int(e["epoch"]) for e in epochs] == list(range(1, 11))
    accuracy = float(epochs[-1]["val_accuracy"])
    print(f"held-out accuracy after 10 epochs: {accuracy:.2%}")
    assert accuracy >= 0.95, epochs[-1]
    assert f"accuracy {100 * accuracy:.2f}%" in run.stdout
    steps = rows(tmp_path / "steps.csv")
    assert len(steps) == 10 * STEPS_PER_EPOCH
    assert float(epochs[-1]["train_loss"]) < float(epochs[0]["train_loss"]) / 3
    # The saved parameters are the session's last ones: they score the same.
    with np.load(tmp_path / "params.npz") as z:
        p = {k: torch.tensor(z[f"parameters/{k}"]) for k in ("W1", "b1", "W2", "b2")}
        assert int(z["step"]) == 10 * STEPS_PER_EPOCH
    val = np.load(digits / "digits-val.npz")
    logits = torch.relu(torch.tensor(val["images"]) @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]
    assert abs((logits.argmax(1).numpy() == val["labels"]).mean() - accuracy) < 1e-9
    check_plot(tmp_path / "curves.svg", epochs, steps)


def series_values(panel, polyline):
    """A polyline's points mapped back to data coordinates."""
    left, top = float(panel.get("data-left")), float(panel.get("data-top"))
    w, h = float(panel.get("data-width")), float(panel.get("data-height"))
    x0, x1 = float(panel.get("data-x-min")), float(panel.get("data-x-max"))
    y0, y1 = float(panel.get("data-y-min")), float(panel.get("data-y-max"))
    values = []
    for point in polyline.get("points").split():
        px, py = map(float, point.split(","))
        values.append((x0 + (px - left) / w * (x1 - x0), y0 + (top + h - py) / h * (y1 - y0)))
    return values


def check_plot(path, epochs, steps):
    ns = {"svg": "http://www.w3.org/2000/svg"}
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    panels = {p.get("data-title"): p for p in root.iterfind(".//svg:g[@class='panel']", ns)}
    assert set(panels) == {"Loss", "Accuracy"}
    expected = {
        ("Loss", "train-loss"): [float(e["train_loss"]) for e in epochs],
        ("Loss", "val-loss"): [float(e["val_loss"]) for e in epochs],
        ("Accuracy", "train-accuracy"): [float(e["train_accuracy"]) for e in epochs],
        ("Accuracy", "val-accuracy"): [float(e["val_accuracy"]) for e in epochs],
        ("Loss", "train-loss-step"): [float(s["loss"]) for s in steps],
    }
    for (title, series), want in expected.items():
        panel = panels[title]
        line = panel.find(f"svg:polyline[@data-series='{series}']", ns)
        assert line is not None, series
        got = series_values(panel, line)
        assert len(got) == len(want), series
        span = float(panel.get("data-y-max")) - float(panel.get("data-y-min"))
        for (x, y), v in zip(got, want):
            assert abs(y - v) <= 0.002 * span, (series, x, y, v)
        if series != "train-loss-step":
            assert [round(x) for x, _ in got] == list(range(1, len(want) + 1))
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "validation" in texts and "epoch" in texts


def test_per_step_losses_equal_pytorch_over_50_steps(server, digits, tmp_path):
    """Fixed order (no --shuffle), SGD with momentum: the same batches from
    the same initial values give PyTorch's losses."""
    run = train(server, digits, tmp_path, "--epochs", 2, "--optimizer", "sgd", "--lr", 0.05,
                "--momentum", 0.9, "--weight-decay", 1e-4, "--max-steps", 50)
    assert run.returncode == 0, run.stderr
    assert "stopped at step 50 (--max-steps)" in run.stdout
    losses = [float(s["loss"]) for s in rows(tmp_path / "steps.csv")]
    assert len(losses) == 50
    data = np.load(digits / "digits-train.npz")
    x, y = torch.tensor(data["images"]), torch.tensor(data["labels"])
    p = torch_mlp(digits)
    opt = torch.optim.SGD(p.values(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    expected = []
    for step in range(50):
        b = step % STEPS_PER_EPOCH
        rows_ = slice(32 * b, min(32 * (b + 1), len(y)))
        opt.zero_grad()
        loss = torch_loss(p, x[rows_], y[rows_])
        loss.backward()
        opt.step()
        expected.append(loss.item())
    np.testing.assert_allclose(losses, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_learning_rate_schedules_follow_torch(server, digits, tmp_path, schedule):
    extra = ["--lr-step-epochs", 1, "--lr-gamma", 0.5] if schedule == "step" else \
        ["--lr-min", 0.001]
    run = train(server, digits, tmp_path, "--epochs", 3, "--optimizer", "sgd", "--lr", 0.1,
                "--lr-schedule", schedule, "--progress", "off", *extra)
    assert run.returncode == 0, run.stderr
    lrs = [float(s["lr"]) for s in rows(tmp_path / "steps.csv")]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    if schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=3 * STEPS_PER_EPOCH, eta_min=0.001)
    expected = []
    for step in range(3 * STEPS_PER_EPOCH):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        if schedule == "cosine" or (step + 1) % STEPS_PER_EPOCH == 0:
            sched.step()
    np.testing.assert_allclose(lrs, expected, rtol=1e-7)


def test_divergence_is_detected(server, digits, tmp_path):
    run = train(server, digits, tmp_path, "--epochs", 3, "--optimizer", "sgd", "--lr", 1e3,
                "--momentum", 0.9)
    assert run.returncode == 1, run.stdout
    assert re.search(r"training diverged at step \d+ \(epoch 1\)", run.stderr), run.stderr
    assert "learning rate (1000) is likely too high: try --lr 100 or lower" in run.stderr
    assert len(rows(tmp_path / "steps.csv")) < STEPS_PER_EPOCH


def test_resume_from_a_checkpoint_equals_an_unbroken_run(server, digits, tmp_path):
    """Adam (optimizer state), a shuffled order and a cosine schedule: stopped
    mid-epoch and resumed from its checkpoint, the run takes the steps the
    unbroken run takes, bit for bit."""
    common = ["--epochs", 3, "--shuffle", "--seed", 5, "--optimizer", "adam", "--lr", 0.01,
              "--lr-schedule", "cosine", "--val-split", 0.2, "--accuracy-of", "logits",
              "--progress", "off"]
    whole = train(server, digits, tmp_path / "whole", *common,
                  "--save", tmp_path / "whole.npz")
    assert whole.returncode == 0, whole.stderr
    part = train(server, digits, tmp_path / "part", *common, "--max-steps", 60)
    assert part.returncode == 0, part.stderr
    resumed = train(server, digits, tmp_path / "part", *common, "--resume",
                    tmp_path / "part" / "checkpoint.npz", "--save", tmp_path / "part.npz")
    assert resumed.returncode == 0, resumed.stderr
    # 1150 training samples after the split: 36 steps an epoch.
    assert "at step 60 (epoch 2, batch 24)" in resumed.stdout, resumed.stdout
    assert_same_runs(tmp_path / "whole", tmp_path / "part", tmp_path / "whole.npz",
                     tmp_path / "part.npz")


def assert_same_runs(a, b, params_a, params_b):
    with np.load(params_a) as x, np.load(params_b) as y:
        assert sorted(x.files) == sorted(y.files)
        for k in x.files:
            assert x[k].tobytes() == y[k].tobytes(), k
    step_cols = ["step", "epoch", "batch", "lr", "loss", "grad_norm", "accuracy", "warnings"]
    sa, sb = rows(a / "steps.csv"), rows(b / "steps.csv")
    assert [[r[c] for c in step_cols] for r in sa] == [[r[c] for c in step_cols] for r in sb]
    epoch_cols = ["epoch", "step", "lr", "train_loss", "train_accuracy", "val_loss",
                  "val_accuracy", "warnings"]
    ea, eb = rows(a / "epochs.csv"), rows(b / "epochs.csv")
    assert [[r[c] for c in epoch_cols] for r in ea] == [[r[c] for c in epoch_cols] for r in eb]


def test_resume_after_kill_9(server, digits, tmp_path):
    """gradctl killed with SIGKILL while training: its last checkpoint
    resumes to the unbroken run's end."""
    common = ["--epochs", 4, "--shuffle", "--seed", 2, "--optimizer", "sgd", "--lr", 0.05,
              "--momentum", 0.9, "--progress", "off"]
    whole = train(server, digits, tmp_path / "whole", *common, "--save", tmp_path / "w.npz")
    assert whole.returncode == 0, whole.stderr
    args = ["train", "--graph", digits / "digits-mlp.json", "--data",
            digits / "digits-train.npz", "--map", "x=images", "--loss", "loss",
            "--batch-size", 32, "--out", tmp_path / "killed", "--checkpoint-every", 1, *common]
    client = start_gradctl(server, *args)
    checkpoint = tmp_path / "killed" / "checkpoint.npz"
    wait_for(lambda: checkpoint.exists(), what="a checkpoint")
    client.send_signal(signal.SIGKILL)
    client.communicate(timeout=30)
    assert client.returncode == -signal.SIGKILL, "the run ended before the kill"
    with np.load(checkpoint) as z:
        at = int(z["step"])
    assert at < 4 * STEPS_PER_EPOCH
    resumed = gradctl(server, *args, "--resume", checkpoint, "--save", tmp_path / "k.npz")
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {at} " in resumed.stdout
    assert_same_runs(tmp_path / "whole", tmp_path / "killed", tmp_path / "w.npz",
                     tmp_path / "k.npz")


def test_a_checkpoint_resumes_only_its_own_run(server, digits, tmp_path):
    assert train(server, digits, tmp_path, "--epochs", 1, "--optimizer", "sgd",
                 "--lr", 0.1).returncode == 0
    other = train(server, digits, tmp_path / "b", "--epochs", 1, "--optimizer", "sgd",
                  "--lr", 0.2, "--resume", tmp_path / "checkpoint.npz")
    assert other.returncode == 1
    assert "checkpoint of another run" in other.stderr, other.stderr
