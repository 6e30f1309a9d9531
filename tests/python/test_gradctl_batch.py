"""gradctl batch over real server processes: results against direct Compute
calls, --reduce against one full-batch call, retries under a full queue, a
server killed and restarted and a client killed mid-run, each finishing
after --resume with every job's result exactly once."""

import json
import os
import re
import signal
import subprocess

import numpy as np
import pytest

import gs
from gradctl_runs import (gradctl, journal, job_file, load_graph, ok_count, read_job,
                          slow_data, slow_graph, start_gradctl, wait_for, write_graph)

DIGITS_JOBS = 8  # 1438 training samples in batches of 200


@pytest.fixture
def server(quick_server):
    """One thread a worker: small calls, and a machine whose cores are busy."""
    return quick_server


def direct(server, g, feeds, loss="loss"):
    return server.compute(gs.compute_request(g, feeds=feeds, loss=loss))


def digits_batch(server, digits, out, *extra):
    return gradctl(server, "batch", "--graph", digits / "digits-mlp.json",
                   "--data", digits / "digits-train.npz", "--map", "x=images",
                   "--batch-size", 200, "--loss", "loss", "--out", out, *extra)


def assert_exactly_once(out, jobs):
    """Every job has one result file and one "ok" line, none two."""
    ok = journal(out)["ok"]
    assert sorted(ok) == list(range(jobs)), ok
    for job in range(jobs):
        assert os.path.exists(job_file(out, job)), job
    assert not os.path.exists(job_file(out, jobs))


def assert_jobs_equal_direct(server, out, g, data, batch, jobs):
    for job in range(jobs):
        rows = slice(job * batch, (job + 1) * batch)
        expect = direct(server, g, {"x": data["x"][rows]})
        got = read_job(out, job)
        for name, value in expect.gradients.items():
            gs.assert_same(got[f"gradients/{name}"], value, f"job {job} {name}")
        gs.assert_same(got["outputs/loss"], expect.outputs["loss"], f"job {job} loss")


def test_results_equal_one_compute_per_job(server, digits, tmp_path):
    run = digits_batch(server, digits, tmp_path / "out", "--concurrency", 3)
    assert run.returncode == 0, run.stderr
    assert f"{DIGITS_JOBS} ok, 0 failed" in run.stdout, run.stdout
    assert re.search(r"latency p50 [\d.]+ ms, p99 [\d.]+ ms", run.stdout), run.stdout
    assert_exactly_once(tmp_path / "out", DIGITS_JOBS)
    g = load_graph(digits / "digits-mlp.json")
    data = np.load(digits / "digits-train.npz")
    for job in range(DIGITS_JOBS):
        rows = slice(job * 200, (job + 1) * 200)
        expect = direct(server, g, {"x": data["images"][rows], "labels": data["labels"][rows]})
        got = read_job(tmp_path / "out", job)
        assert int(got["samples"]) == len(data["labels"][rows])
        for name in ("W1", "b1", "W2", "b2"):
            gs.assert_same(got[f"gradients/{name}"], expect.gradients[name], f"{job}/{name}")
        gs.assert_same(got["outputs/logits"], expect.outputs["logits"], f"{job}/logits")
        gs.assert_same(got["outputs/loss"], expect.outputs["loss"], f"{job}/loss")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reduce_equals_the_full_batch_gradient(server, digits, tmp_path, reduction):
    g = load_graph(digits / "digits-mlp.json")
    for n in g.nodes:
        if n.op == "CrossEntropyLoss":
            n.attributes["reduction"].s = reduction
    path = write_graph(g, tmp_path / "g.json")
    run = gradctl(server, "batch", "--graph", path, "--data", digits / "digits-train.npz",
                  "--map", "x=images", "--batch-size", 200, "--loss", "loss",
                  "--fetch", "loss", "--out", tmp_path / "out", "--reduce", reduction)
    assert run.returncode == 0, run.stderr
    data = np.load(digits / "digits-train.npz")
    full = direct(server, g, {"x": data["images"], "labels": data["labels"]})
    with np.load(tmp_path / "out" / "reduced.npz") as r:
        assert int(r["samples"]) == len(data["labels"])
        np.testing.assert_allclose(r["outputs/loss"], full.outputs["loss"], rtol=2e-6)
        for name, value in full.gradients.items():
            np.testing.assert_allclose(r[f"gradients/{name}"], value, rtol=1e-4,
                                       atol=1e-6 * np.abs(value).max(), err_msg=name)
    # The per-job files were folded in and removed; the journal says so.
    assert not os.path.exists(job_file(tmp_path / "out", 0))
    assert journal(tmp_path / "out")["reduced"]
    again = gradctl(server, "batch", "--graph", path, "--data", digits / "digits-train.npz",
                    "--map", "x=images", "--batch-size", 200, "--loss", "loss",
                    "--fetch", "loss", "--out", tmp_path / "out", "--reduce", reduction,
                    "--resume")
    assert again.returncode == 0 and "reduced already" in again.stdout, again.stdout


def manifest_jobs(tmp_path, bad_job):
    """Four jobs of examples/mlp.json; job `bad_job` feeds x of the wrong width."""
    rng = np.random.default_rng(0)
    lines = []
    for job in range(4):
        x = rng.normal(size=(5, 3 if job == bad_job else 4)).astype(np.float32)
        np.save(tmp_path / f"x{job}.npy", x)
        np.save(tmp_path / f"l{job}.npy", np.array([0, 1, 2, 0, 1], dtype=np.int64))
        lines.append(json.dumps({"feeds": {"x": f"x{job}.npy", "labels": f"l{job}.npy"},
                                 "loss": "L", "seed": job}))
    (tmp_path / "jobs.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "jobs.jsonl"


EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")


def test_manifest_bad_job_is_reported_and_the_run_goes_on(server, tmp_path):
    manifest = manifest_jobs(tmp_path, bad_job=2)
    mlp = os.path.join(EXAMPLES, "mlp.json")
    run = gradctl(server, "batch", "--graph", mlp, "--manifest", manifest,
                  "--out", tmp_path / "out", "--concurrency", 2)
    assert run.returncode == 1
    assert re.search(r"job 2 failed: INVALID_ARGUMENT: .*x", run.stderr), run.stderr
    assert "3 ok, 1 failed" in run.stdout, run.stdout
    entries = journal(tmp_path / "out")
    assert sorted(entries["ok"]) == [0, 1, 3] and entries["failed"] == [2]
    # Never retried: the request itself is wrong.
    assert "0 retried" in run.stdout
    g = load_graph(mlp)
    for job in (0, 1, 3):
        feeds = {"x": np.load(tmp_path / f"x{job}.npy"), "labels": np.load(tmp_path / f"l{job}.npy")}
        expect = server.compute(gs.compute_request(g, feeds=feeds, loss="L", seed=job))
        gs.assert_same(read_job(tmp_path / "out", job)["gradients/W1"], expect.gradients["W1"])
    # Fixed, --resume runs only the failed job.
    np.save(tmp_path / "x2.npy", np.ones((5, 4), np.float32))
    again = gradctl(server, "batch", "--graph", mlp, "--manifest", manifest,
                    "--out", tmp_path / "out", "--resume")
    assert again.returncode == 0, again.stderr
    assert "resumed: 3 of 4 jobs were done already; running the other 1" in again.stdout
    assert "ran 1 of 4 jobs" in again.stdout
    assert sorted(journal(tmp_path / "out")["ok"]) == [0, 1, 2, 3]


def test_fail_fast_stops_at_the_first_failure(server, tmp_path):
    manifest = manifest_jobs(tmp_path, bad_job=1)
    run = gradctl(server, "batch", "--graph", os.path.join(EXAMPLES, "mlp.json"),
                  "--manifest", manifest, "--out", tmp_path / "out", "--concurrency", 1,
                  "--fail-fast")
    assert run.returncode == 1
    assert "job 1 failed" in run.stderr
    entries = journal(tmp_path / "out")
    assert entries["ok"] == [0] and entries["failed"] == [1], entries


def test_retries_when_the_queue_is_full(start_server, tmp_path):
    """One worker and no queue: concurrent calls are refused with
    RESOURCE_EXHAUSTED and come back after a backoff until they get in."""
    s = start_server("--workers=1", "--max_queue=0")
    jobs = 12
    g = slow_graph(tmp_path / "slow.json")
    data = slow_data(tmp_path / "data.npz", jobs)
    run = gradctl(s, "batch", "--graph", g, "--data", data, "--batch-size", 256,
                  "--loss", "loss", "--out", tmp_path / "out", "--concurrency", 4,
                  "--backoff", 0.01, "--max-backoff", 0.05, "--retries", 100)
    assert run.returncode == 0, run.stderr
    retries = int(re.search(r"\((\d+) retries\)", run.stdout).group(1))
    assert retries > 0, run.stdout
    attempts = journal(tmp_path / "out")["attempts"]
    assert max(attempts.values()) > 1, attempts
    assert_exactly_once(tmp_path / "out", jobs)
    assert_jobs_equal_direct(s, tmp_path / "out", load_graph(g), np.load(data), 256, jobs)


def test_server_killed_and_restarted_mid_run(start_server, tmp_path):
    """The server dies (kill -9) under a run: the jobs it was to do fail after
    their few retries; a restarted server and --resume finish the rest, each
    job's result once."""
    jobs = 30
    s = gs.Server("--workers=1", "--threads_per_worker=1")
    g = slow_graph(tmp_path / "slow.json")
    data = slow_data(tmp_path / "data.npz", jobs)
    args = ["batch", "--graph", g, "--data", data, "--batch-size", 256, "--loss", "loss",
            "--out", tmp_path / "out", "--concurrency", 2, "--retries", 2,
            "--backoff", 0.05, "--max-backoff", 0.1]
    client = start_gradctl(s, *args)
    wait_for(lambda: ok_count(tmp_path / "out") >= 4, what="4 jobs done")
    s.stop(signal.SIGKILL)
    out, err = client.communicate(timeout=120)
    assert client.returncode == 1, out + err
    assert "UNAVAILABLE" in err and "--resume" in err, err
    done_before = ok_count(tmp_path / "out")
    assert 4 <= done_before < jobs, out
    restarted = gs.Server("--workers=1", "--threads_per_worker=1", port=s.port)
    try:
        run = gradctl(restarted, *args, "--resume")
        assert run.returncode == 0, run.stderr
        assert f"resumed: {done_before} of {jobs} jobs were done already" in run.stdout
        assert_exactly_once(tmp_path / "out", jobs)
        assert_jobs_equal_direct(restarted, tmp_path / "out", load_graph(g), np.load(data),
                                 256, jobs)
    finally:
        restarted.close()
        s.close()


def test_retries_carry_a_run_over_a_quick_restart(tmp_path):
    """With the default retries, a server back within seconds costs retries,
    not failures: the run ends by itself with every result."""
    jobs = 24
    s = gs.Server("--workers=1", "--threads_per_worker=1")
    g = slow_graph(tmp_path / "slow.json")
    data = slow_data(tmp_path / "data.npz", jobs)
    client = start_gradctl(s, "batch", "--graph", g, "--data", data, "--batch-size", 256,
                           "--loss", "loss", "--out", tmp_path / "out", "--concurrency", 2,
                           "--backoff", 0.1)
    restarted = None
    try:
        wait_for(lambda: ok_count(tmp_path / "out") >= 4, what="4 jobs done")
        s.stop(signal.SIGKILL)
        restarted = gs.Server("--workers=1", "--threads_per_worker=1", port=s.port)
        out, err = client.communicate(timeout=120)
        assert client.returncode == 0, out + err
        assert int(re.search(r"\((\d+) retries\)", out).group(1)) > 0, out
        assert_exactly_once(tmp_path / "out", jobs)
    finally:
        if client.poll() is None:
            client.kill()
        if restarted:
            restarted.close()
        s.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_client_killed_mid_run_resumes(start_server, tmp_path, sig):
    """kill -9 (or Ctrl-C) of gradctl mid-run: --resume redoes only the jobs
    without a result; every result once."""
    s = start_server("--workers=1")
    jobs = 30
    g = slow_graph(tmp_path / "slow.json")
    data = slow_data(tmp_path / "data.npz", jobs)
    args = ["batch", "--graph", g, "--data", data, "--batch-size", 256, "--loss", "loss",
            "--out", tmp_path / "out", "--concurrency", 2]
    client = start_gradctl(s, *args)
    wait_for(lambda: ok_count(tmp_path / "out") >= 5, what="5 jobs done")
    client.send_signal(sig)
    out, err = client.communicate(timeout=60)
    done_before = ok_count(tmp_path / "out")
    if sig == signal.SIGINT:
        assert client.returncode == 130, out + err
        assert "--resume" in err, err
    else:
        assert client.returncode == -signal.SIGKILL
    assert done_before < jobs, "the run ended before the signal: make the jobs slower"
    run = gradctl(s, *args, "--resume")
    assert run.returncode == 0, run.stderr
    assert f"resumed: {done_before} of {jobs} jobs were done already" in run.stdout
    assert f"ran {jobs - done_before} of {jobs} jobs" in run.stdout
    assert_exactly_once(tmp_path / "out", jobs)
    assert_jobs_equal_direct(s, tmp_path / "out", load_graph(g), np.load(data), 256, jobs)


def test_a_journal_is_never_overwritten_nor_resumed_by_another_run(server, digits, tmp_path):
    out = tmp_path / "out"
    assert digits_batch(server, digits, out).returncode == 0
    again = digits_batch(server, digits, out)
    assert again.returncode == 1 and "pass --resume" in again.stderr, again.stderr
    other = digits_batch(server, digits, out, "--resume", "--seed", 7)
    assert other.returncode == 1 and "journal of another run" in other.stderr, other.stderr
    # Not worded as a status code: no server was asked.
    assert "FAILED_PRECONDITION" not in other.stderr


def test_progress_lines_and_bar(start_server, tmp_path):
    s = start_server("--workers=1")
    g = slow_graph(tmp_path / "slow.json")
    data = slow_data(tmp_path / "data.npz", 12)
    plain = gradctl(s, "batch", "--graph", g, "--data", data, "--batch-size", 256,
                    "--loss", "loss", "--out", tmp_path / "a", "--progress-every", 0.05)
    assert plain.returncode == 0, plain.stderr
    lines = re.findall(r"^batch: (\d+)/12 .*jobs/s ETA", plain.stdout, re.M)
    assert len(lines) >= 2 and "\r" not in plain.stdout, plain.stdout
    # Bytes: text mode would turn the bar's carriage returns into newlines.
    bar = subprocess.run([gs.GRADCTL, f"--server={s.address}", "batch", "--graph", g,
                          "--data", data, "--batch-size", "256", "--loss", "loss",
                          "--out", tmp_path / "b", "--progress", "bar"],
                         capture_output=True, timeout=120)
    assert bar.returncode == 0
    stdout = bar.stdout.decode()
    assert re.search(r"\rbatch \[#+\.*\] \d+/12", stdout), repr(stdout[:300])
    assert "\rbatch [##############################] 12/12 100%" in stdout
    assert "\n" not in stdout.split("12/12 100%")[0], "the bar is redrawn in place"
