"""The user-facing ratio: fwd+bwd over gRPC from this Python client (grpcio)
divided by PyTorch's fwd+bwd in this process (same threads), for the MLP,
Linear and conv workloads of `make bench`, and their geometric mean.

Three client paths per workload, timed in turn within every repetition (load
that comes and goes on a shared machine hits them alike), PyTorch before them
on its own (its spinning OpenMP threads would slow whatever runs next):
- fastest: the weights held by a session (CreateSession once), the feeds and
  output gradients in a same-host shared-memory region, outputs and
  gradients placed into it (output_placement); the call alone;
- the same with the client's copies: numpy arrays written into the region
  before the call and every result read out of it after;
- plain TCP: a stateless Compute with every tensor in the messages, every
  result turned into numpy.
Every path's results are checked equal to the plain path's before timing.

Medians of --reps repetitions after --warmup. Run by `make bench` with
Debian's /usr/bin/python3, OPENBLAS_NUM_THREADS=1."""

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import gs  # noqa: E402

pb = gs.pb


@dataclass
class Workload:
    name: str
    nodes: list
    inputs: list
    parameters: dict  # name -> float32 array
    feeds: dict  # name -> array
    wrt: list
    loss: str = ""
    output_gradients: dict = field(default_factory=dict)
    fetch: list = field(default_factory=list)


def mlp_workload(rng):
    params = {"W1": rng.normal(0, 0.05, (256, 784)), "b1": np.zeros(256),
              "W2": rng.normal(0, 0.05, (10, 256)), "b2": np.zeros(10)}
    return Workload(
        "MLP 784-256-10, batch 64",
        [gs.node("fc1", "Linear", ["x", "W1", "b1"], ["h"]),
         gs.node("relu", "ReLU", ["h"], ["a"]),
         gs.node("fc2", "Linear", ["a", "W2", "b2"], ["logits"]),
         gs.node("loss", "CrossEntropyLoss", ["logits", "labels"], ["L"])],
        ["x", "labels"], {k: v.astype(np.float32) for k, v in params.items()},
        {"x": rng.normal(size=(64, 784)).astype(np.float32),
         "labels": rng.integers(0, 10, 64).astype(np.int64)},
        wrt=["W1", "b1", "W2", "b2"], loss="L", fetch=["L"])


def linear_workload(rng):
    return Workload(
        "Linear 256x1024->1024",
        [gs.node("fc", "Linear", ["x", "W", "b"], ["y"])], ["x"],
        {"W": rng.normal(0, 0.1, (1024, 1024)).astype(np.float32),
         "b": rng.normal(0, 0.1, 1024).astype(np.float32)},
        {"x": rng.normal(size=(256, 1024)).astype(np.float32)},
        wrt=["W", "b", "x"],
        output_gradients={"y": rng.normal(size=(256, 1024)).astype(np.float32)},
        fetch=["y"])


def conv_workload(rng):
    return Workload(
        "conv 3x3 64->64 56x56 batch 8",
        [gs.node("conv", "Conv2d", ["x", "W", "b"], ["y"], padding=[1, 1])], ["x"],
        {"W": rng.normal(0, 0.05, (64, 64, 3, 3)).astype(np.float32),
         "b": rng.normal(0, 0.05, 64).astype(np.float32)},
        {"x": rng.normal(size=(8, 64, 56, 56)).astype(np.float32)},
        wrt=["W", "b", "x"],
        output_gradients={"y": rng.normal(size=(8, 64, 56, 56)).astype(np.float32)},
        fetch=["y"])


def torch_step(w):
    """PyTorch's fwd+bwd of `w`, gradients left in .grad as PyTorch users
    have them."""
    import torch
    import torch.nn.functional as F
    p = {k: torch.tensor(v, requires_grad=k in w.wrt) for k, v in w.parameters.items()}
    x = torch.tensor(w.feeds["x"], requires_grad="x" in w.wrt)
    if w.loss:
        labels = torch.tensor(w.feeds["labels"])

        def step():
            for t in p.values():
                t.grad = None
            h = F.relu(F.linear(x, p["W1"], p["b1"]))
            F.cross_entropy(F.linear(h, p["W2"], p["b2"]), labels).backward()
        return step
    dy = torch.tensor(w.output_gradients["y"])
    forward = ((lambda: F.linear(x, p["W"], p["b"])) if w.nodes[0].op == "Linear"
               else (lambda: F.conv2d(x, p["W"], p["b"], padding=1)))

    def step():
        for t in (*p.values(), x):
            t.grad = None
        forward().backward(dy)
    return step


def plain_request(w):
    g = gs.graph(w.nodes, inputs=w.inputs, parameters=w.parameters)
    return gs.compute_request(g, feeds=w.feeds, fetch=w.fetch, loss=w.loss,
                              output_gradients=w.output_gradients, wrt=w.wrt)


class FastPath:
    """`w` with its weights in a session and its tensors in shared memory."""

    def __init__(self, server, w):
        self.server = server
        self.session = server.create_session(
            gs.graph(w.nodes, inputs=w.inputs, parameters=w.parameters)).session_id
        sizes = [a.nbytes for a in (*w.feeds.values(), *w.output_gradients.values())]
        # Where the results go: the fetched outputs and the gradients of wrt.
        results = w.fetch + w.wrt
        shapes = {**{k: v.shape for k, v in w.parameters.items()},
                  **{k: v.shape for k, v in w.feeds.items()},
                  **{k: v.shape for k, v in w.output_gradients.items()}, "L": ()}
        sizes += [4 * math.prod(shapes[n]) for n in results]
        self.memory = gs.SharedMemory(server.rpc, sum(s + 64 for s in sizes))
        self.request = pb.ComputeRequest(session_id=self.session, fetch=w.fetch,
                                         loss=w.loss, wrt=w.wrt)
        self.inputs = []
        for field_map, values in ((self.request.feeds, w.feeds),
                                  (self.request.output_gradients, w.output_gradients)):
            for name, value in values.items():
                field_map[name].CopyFrom(self.memory.put(value))
                ref = field_map[name].shared_memory
                self.inputs.append((self.memory.array(ref.offset, value.shape, value.dtype),
                                    value))
        for name in results:
            self.request.output_placement[name].CopyFrom(self.memory.place(shapes[name]))

    def call(self):
        return self.server.rpc.Compute(self.request, timeout=120)

    def call_with_copies(self):
        for view, value in self.inputs:
            view[...] = value
        reply = self.call()
        return [self.memory.read(t) for t in (*reply.outputs.values(),
                                              *reply.gradients.values())]

    def results(self):
        reply = self.call()
        return ({k: self.memory.read(v) for k, v in reply.outputs.items()},
                {k: self.memory.read(v) for k, v in reply.gradients.items()})

    def close(self):
        self.memory.close()
        self.server.close_session(self.session)


def check_same(fast, plain_reply):
    want = gs.Result(plain_reply)
    outputs, gradients = fast.results()
    gs.assert_same(outputs, want.outputs, "outputs")
    gs.assert_same(gradients, want.gradients, "gradients")


def over_tcp(server, request):
    def call():
        reply = server.rpc.Compute(request, timeout=120)
        return [gs.to_numpy(t) for t in (*reply.outputs.values(), *reply.gradients.values())]
    return call


def medians_ms(paths, reps, warmup):
    """Each of `paths` timed in turn within every repetition: medians in ms."""
    for _ in range(warmup):
        for p in paths:
            p()
    times = [[] for _ in paths]
    for _ in range(reps):
        for p, t in zip(paths, times):
            start = time.perf_counter()
            p()
            t.append((time.perf_counter() - start) * 1000)
    return [float(np.median(t)) for t in times]


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    import torch
    server = gs.Server("--allow_shared_memory")
    try:
        info = server.rpc.GetServerInfo(pb.GetServerInfoRequest())
        threads = info.threads_per_worker
        torch.set_num_threads(threads)
        print(f"user_ratio_bench: Python grpcio client, server {info.workers} worker(s) x "
              f"{threads} thread(s), oneDNN {info.onednn_version} on {info.cpu_isa}; "
              f"PyTorch {torch.__version__} in-process, {threads} thread(s), "
              f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; "
              f"medians of {args.reps}")
        print(f"{'fwd+bwd, ms (ratio to PyTorch)':32s} {'PyTorch':>9s} "
              f"{'fastest':>17s} {'+ copies':>17s} {'plain TCP':>17s}")
        rng = np.random.default_rng(0)
        ratios = [[], [], []]
        for w in (mlp_workload(rng), linear_workload(rng), conv_workload(rng)):
            plain = plain_request(w)
            fast = FastPath(server, w)
            try:
                check_same(fast, server.rpc.Compute(plain, timeout=120))
                # PyTorch timed on its own: its OpenMP threads spin for a
                # while after each step, and would take the cores from a
                # server call timed right after it.
                ms = medians_ms([torch_step(w)], args.reps, args.warmup)
                ms += medians_ms([fast.call, fast.call_with_copies, over_tcp(server, plain)],
                                 args.reps, args.warmup)
            finally:
                fast.close()
            cells = []
            for r, m in zip(ratios, ms[1:]):
                r.append(m / ms[0])
                cells.append(f"{m:8.3f} ({m / ms[0]:5.2f}x)")
            print(f"{w.name:32s} {ms[0]:9.3f} " + " ".join(cells))
        print(f"{'geometric mean of the ratios':32s} {'':9s} " +
              " ".join(f"{'':8s} ({geomean(r):5.2f}x)" for r in ratios))
    finally:
        server.close()


if __name__ == "__main__":
    main()
