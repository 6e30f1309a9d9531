"""Helpers for the gradctl batch/train suites: running gradctl, the graphs and
data sets they use, reading their journals."""

import json
import os
import re
import subprocess
import time

import numpy as np
from google.protobuf import json_format

import gs
from gradserve.v1 import graph_pb2


def gradctl(server, *args, timeout=300):
    """Runs gradctl against `server` (a gs.Server or an address)."""
    address = server if isinstance(server, str) else server.address
    return subprocess.run([gs.GRADCTL, f"--server={address}", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def start_gradctl(server, *args):
    address = server if isinstance(server, str) else server.address
    return subprocess.Popen([gs.GRADCTL, f"--server={address}", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def load_graph(path):
    with open(path) as f:
        return json_format.Parse(f.read(), graph_pb2.Graph())


def write_graph(g, path):
    with open(path, "w") as f:
        f.write(json_format.MessageToJson(g))
    return path


def slow_graph(path, width=384, depth=4, seed=0):
    """x [N, width] through `depth` Linear layers and a Sum: a job that keeps a
    one-thread worker busy for tens of milliseconds at N = 256."""
    rng = np.random.default_rng(seed)
    nodes, params, value = [], {}, "x"
    for i in range(depth):
        params[f"W{i}"] = rng.normal(scale=width ** -0.5, size=(width, width))
        nodes.append(gs.node(f"fc{i}", "Linear", [value, f"W{i}"], [f"h{i}"]))
        value = f"h{i}"
    nodes.append(gs.node("sum", "Mean", [value], ["loss"]))
    return write_graph(gs.graph(nodes, inputs=["x"], parameters=params), path)


def slow_data(path, jobs, batch=256, width=384, seed=1):
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.normal(size=(jobs * batch, width)).astype(np.float32))
    return path


def journal(out_dir):
    """{"ok": [job, ...], "failed": [job, ...], "reduced": bool, "attempts": {job: n}}
    from a batch journal, entries in file order."""
    entries = {"ok": [], "failed": [], "reduced": False, "attempts": {}}
    with open(os.path.join(out_dir, "journal.log")) as f:
        lines = f.read().split("\n")
    assert lines[0].startswith("gradctl batch journal v1"), lines[0]
    for line in lines[1:]:
        if line == "reduced":
            entries["reduced"] = True
        elif line.startswith("ok "):
            job = int(line.split()[1])
            entries["ok"].append(job)
            entries["attempts"][job] = int(re.search(r"attempts=(\d+)", line).group(1))
        elif line.startswith("failed "):
            entries["failed"].append(int(line.split()[1]))
    return entries


def ok_count(out_dir):
    try:
        return len(journal(out_dir)["ok"])
    except (FileNotFoundError, AssertionError):
        return 0


def wait_for(predicate, timeout=60, what="a condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def job_file(out_dir, job):
    return os.path.join(out_dir, f"job-{job:06d}.npz")


def read_job(out_dir, job):
    with np.load(job_file(out_dir, job)) as z:
        return {k: z[k] for k in z.files}


def load_json(path):
    with open(path) as f:
        return json.load(f)
