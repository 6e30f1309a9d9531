"""Client-side benchmarks of gradserve's stateful API, from the Python client
(grpcio) against a local server, with baselines measured in the same run:

- TrainStep of the 784-256-10 MLP (batch 64, SGD momentum) vs PyTorch's
  forward + backward + optimizer.step() in this process, same threads;
- Compute with session_id vs stateless Compute (weights in every request) of
  the same MLP;
- ComputeStream of 1000 small requests vs 1000 sequential unary Computes;
- the tiny 3-layer graph, cached, vs an empty call (Health/Check);
- the Linear 256x1024->1024 fwd+bwd (x, W, b, dY in; y, dW, db, dx out)
  with every tensor in same-host shared memory, vs gradserve in-process
  (gradserve_bench --in_process_only=linear, the C++ bench's number) and vs
  the same Compute with the tensors in the messages over TCP.

Medians of --reps timed repetitions after --warmup. Run by `make bench`
with Debian's /usr/bin/python3."""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from google.protobuf import text_format

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import gs  # noqa: E402
from gradserve.v1 import session_pb2 as spb  # noqa: E402

pb = gs.pb


def median_ms(f, reps, warmup):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def process_cpu_ms(pid):
    """CPU time of process `pid`'s live threads so far, in ms (nanosecond
    counters in /proc/<pid>/task/*/schedstat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:  # the thread ended
            pass
    return total / 1e6


def interleaved(fs, reps, warmup, server_pid):
    """For each of `fs`, timed in turn within every repetition (on a busy
    machine, load that comes and goes then hits them alike): the median wall
    time and the mean CPU time per call of the server and of this process,
    in ms."""
    for _ in range(warmup):
        for f in fs:
            f()
    wall = [[] for _ in fs]
    cpu = [[0.0, 0.0] for _ in fs]
    for _ in range(reps):
        for f, w, c in zip(fs, wall, cpu):
            server, client = process_cpu_ms(server_pid), time.process_time()
            start = time.perf_counter()
            f()
            w.append((time.perf_counter() - start) * 1000)
            c[0] += process_cpu_ms(server_pid) - server
            c[1] += (time.process_time() - client) * 1000
    return [(float(np.median(w)), c[0] / reps, c[1] / reps) for w, c in zip(wall, cpu)]


def mlp(rng):
    params = {"W1": rng.normal(0, 0.05, (256, 784)), "b1": np.zeros(256),
              "W2": rng.normal(0, 0.05, (10, 256)), "b2": np.zeros(10)}
    params = {k: v.astype(np.float32) for k, v in params.items()}
    g = gs.graph([gs.node("fc1", "Linear", ["x", "W1", "b1"], ["h"]),
                  gs.node("relu", "ReLU", ["h"], ["a"]),
                  gs.node("fc2", "Linear", ["a", "W2", "b2"], ["logits"]),
                  gs.node("loss", "CrossEntropyLoss", ["logits", "labels"], ["L"])],
                 inputs=["x", "labels"], parameters=params)
    x = rng.normal(size=(64, 784)).astype(np.float32)
    labels = rng.integers(0, 10, 64).astype(np.int64)
    return g, params, x, labels


def torch_train_step_ms(params, x, labels, threads, reps, warmup):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.SGD(p.values(), lr=0.01, momentum=0.9)
    xt, lt = torch.tensor(x), torch.tensor(labels)

    def step():
        opt.zero_grad(set_to_none=True)
        h = F.relu(F.linear(xt, p["W1"], p["b1"]))
        F.cross_entropy(F.linear(h, p["W2"], p["b2"]), lt).backward()
        opt.step()
    return median_ms(step, reps, warmup)


def train_step_bench(server, threads, args):
    rng = np.random.default_rng(0)
    g, params, x, labels = mlp(rng)
    created = server.rpc.CreateSession(spb.CreateSessionRequest(
        graph=g, optimizer=spb.Optimizer(sgd=spb.SGD(lr=0.01, momentum=0.9))))
    request = spb.TrainStepRequest(session_id=created.session.session_id, loss="L")
    request.feeds["x"].CopyFrom(gs.tensor(x))
    request.feeds["labels"].CopyFrom(gs.tensor(labels))
    ours = median_ms(lambda: server.rpc.TrainStep(request, timeout=60),
                     args.reps, args.warmup)
    theirs = torch_train_step_ms(params, x, labels, threads, args.reps, args.warmup)
    print(f"{'TrainStep MLP 784-256-10 b64':40s} {ours:9.3f} ms   PyTorch in-process "
          f"{theirs:9.3f} ms   gradserve/PyTorch {ours / theirs:6.2f}x")

    stateless = gs.compute_request(g, feeds={"x": x, "labels": labels}, loss="L")
    with_session = pb.ComputeRequest(session_id=created.session.session_id, loss="L")
    with_session.feeds["x"].CopyFrom(gs.tensor(x))
    with_session.feeds["labels"].CopyFrom(gs.tensor(labels))
    a = median_ms(lambda: server.rpc.Compute(with_session, timeout=60), args.reps, args.warmup)
    b = median_ms(lambda: server.rpc.Compute(stateless, timeout=60), args.reps, args.warmup)
    print(f"{'Compute MLP, session_id vs stateless':40s} {a:9.3f} ms   stateless "
          f"{b:9.3f} ms   session/stateless {a / b:6.2f}x")


def tiny(rng):
    return gs.tiny_compute_request(rng)


def small_calls_bench(server, args):
    rng = np.random.default_rng(1)
    request = tiny(rng)
    # The serialized empty grpc.health.v1.HealthCheckRequest is no bytes.
    health = server.channel.unary_unary("/grpc.health.v1.Health/Check")
    empty = median_ms(lambda: health(b"", timeout=10), args.reps * 10, args.warmup)
    cached = median_ms(lambda: server.rpc.Compute(request, timeout=10),
                       args.reps * 10, args.warmup)
    print(f"{'tiny 3-layer, cached, over gRPC':40s} {cached:9.3f} ms   empty call "
          f"{empty:9.3f} ms   tiny/empty {cached / empty:6.2f}x")

    n = 1000

    def unary():
        for _ in range(n):
            server.rpc.Compute(request, timeout=60)

    def stream():
        count = sum(1 for _ in server.rpc.ComputeStream(iter([request] * n), timeout=120))
        assert count == n

    reps = max(3, args.reps // 10)
    u = median_ms(unary, reps, 1)
    s = median_ms(stream, reps, 1)
    print(f"{'1000 tiny Computes: stream vs unary':40s} {s:9.1f} ms   unary    "
          f"{u:9.1f} ms   throughput {u / s:6.2f}x")
    u, s = (gradctl_calls_per_s(server, request, n, stream, reps) for stream in (False, True))
    print(f"{'  the same from the C++ client (gradctl)':40s} {n * 1000 / s:9.1f} ms   unary    "
          f"{n * 1000 / u:9.1f} ms   throughput {s / u:6.2f}x")


def gradctl_bench(server, request, directory, *flags):
    """The `gradctl bench` command line sending `request` (its graph, feeds,
    fetch and loss written into `directory`) with `flags`."""
    graph = os.path.join(directory, "graph.pbtxt")
    with open(graph, "w") as f:
        f.write(text_format.MessageToString(request.graph))
    command = [os.path.join(gs.BUILD_DIR, "client", "gradctl"), "--server", server.address,
               "bench", "--graph", graph, *map(str, flags)]
    if request.loss:
        command += ["--loss", request.loss]
    for name in request.fetch:
        command += ["--fetch", name]
    for name, value in request.feeds.items():
        np.save(os.path.join(directory, name + ".npy"), gs.to_numpy(value))
        command += ["--feed", f"{name}={os.path.join(directory, name + '.npy')}"]
    return command


def gradctl_calls_per_s(server, request, n, stream, reps):
    """The median calls/s of `gradctl bench` sending `request` n times,
    over one ComputeStream or as sequential unary calls."""
    with tempfile.TemporaryDirectory() as d:
        command = gradctl_bench(server, request, d, "-n", n, *(["--stream"] if stream else []))
        rates = []
        for _ in range(reps):
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            rates.append(float(out.split(" calls/s")[0].rsplit(" ", 1)[1]))
    return float(np.median(rates))


def in_process_ms(case, threads, args):
    """gradserve_bench's in-process median for `case` (core Compute: build,
    compile and run, no server) and its CPU ms per run; None when it cannot
    run."""
    bench = os.path.join(gs.BUILD_DIR, "tests", "bench", "gradserve_bench")
    done = subprocess.run([bench, f"--in_process_only={case}", f"--threads={threads}",
                           f"--reps={args.reps}", f"--warmup={args.warmup}"],
                          capture_output=True, text=True)
    try:
        median, cpu = (float(v) for v in done.stdout.split()[-2:])
        return median, cpu
    except ValueError:
        print(f"gradserve_bench --in_process_only={case} failed: {done.stderr.strip()}")
        return None


def linear_shared_memory_bench(server, threads, args):
    rng = np.random.default_rng(2)
    W = rng.normal(0, 0.1, (1024, 1024)).astype(np.float32)
    b = rng.normal(0, 0.1, 1024).astype(np.float32)
    x = rng.normal(size=(256, 1024)).astype(np.float32)
    dy = rng.normal(size=(256, 1024)).astype(np.float32)
    g = gs.graph([gs.node("fc", "Linear", ["x", "W", "b"], ["y"])], inputs=["x"],
                 parameters={"W": W, "b": b})
    wrt = ["W", "b", "x"]
    plain = gs.compute_request(g, feeds={"x": x}, fetch=["y"], output_gradients={"y": dy},
                               wrt=wrt)
    with gs.SharedMemory(server.rpc, 16 << 20) as m:
        placed = gs.compute_request(g, fetch=["y"], wrt=wrt)
        for field, name, value in ((placed.graph.parameters, "W", W),
                                   (placed.graph.parameters, "b", b),
                                   (placed.feeds, "x", x), (placed.output_gradients, "y", dy)):
            field[name].CopyFrom(m.put(value))
        for name, value in (("y", dy), ("W", W), ("b", b), ("x", x)):
            placed.output_placement[name].CopyFrom(m.place(value.shape))
        inputs = [(m.array(t.shared_memory.offset, v.shape, np.float32), v) for t, v in
                  ((placed.graph.parameters["W"], W), (placed.graph.parameters["b"], b),
                   (placed.feeds["x"], x), (placed.output_gradients["y"], dy))]

        # The two paths compute the same bits.
        want = gs.Result(server.rpc.Compute(plain, timeout=60))
        got = server.rpc.Compute(placed, timeout=60)
        gs.assert_same(m.read(got.outputs["y"]), want.outputs["y"], "y")
        gs.assert_same({k: m.read(v) for k, v in got.gradients.items()}, want.gradients,
                       "gradients")

        def over_shm_with_copies():
            for view, value in inputs:
                view[...] = value
            reply = server.rpc.Compute(placed, timeout=60)
            return [m.read(t) for t in (*reply.outputs.values(), *reply.gradients.values())]

        def over_tcp():
            reply = server.rpc.Compute(plain, timeout=60)
            return [gs.to_numpy(t) for t in (*reply.outputs.values(),
                                             *reply.gradients.values())]

        before = in_process_ms("linear", threads, args)
        measured = interleaved(
            [lambda: server.rpc.Compute(placed, timeout=60), over_shm_with_copies, over_tcp],
            args.reps, args.warmup, server.process.pid)
        after = in_process_ms("linear", threads, args)
    print(f"{'Linear 256x1024->1024 fwd+bwd':40s} {'wall ms':>9s} {'server CPU':>11s} "
          f"{'client CPU':>11s} {'wall/in':>8s} {'CPU/in':>7s}")
    local = None
    if before and after:
        local = ((before[0] + after[0]) / 2, (before[1] + after[1]) / 2)
        print(f"{'  in-process (gradserve_bench)':40s} {local[0]:9.3f} {local[1]:11.3f} "
              f"{'':11s}   (runs before and after: {before[0]:.3f} and {after[0]:.3f} ms)")
    for label, (wall, server_cpu, client_cpu) in zip(
            ("shared memory, call only", "shared memory + client's numpy copies",
             "tensors in messages over TCP"), measured):
        ratios = (f" {wall / local[0]:7.2f}x {(server_cpu + client_cpu) / local[1]:6.2f}x"
                  if local else "")
        print(f"{'  ' + label:40s} {wall:9.3f} {server_cpu:11.3f} {client_cpu:11.3f}{ratios}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    server = gs.Server("--allow_shared_memory")
    try:
        info = server.rpc.GetServerInfo(pb.GetServerInfoRequest())
        threads = info.threads_per_worker
        print(f"client_bench: Python grpcio client, server {info.workers} worker(s) x "
              f"{threads} thread(s), oneDNN {info.onednn_version} on {info.cpu_isa}, "
              f"medians of {args.reps} (PyTorch {threads} thread(s), "
              f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})")
        train_step_bench(server, threads, args)
        small_calls_bench(server, args)
        linear_shared_memory_bench(server, threads, args)
    finally:
        server.close()


if __name__ == "__main__":
    main()
