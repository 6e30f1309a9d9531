"""Transport and contention benchmarks from the Python client (grpcio), with
their baselines measured in the same run:

- a round trip of N MiB each way (Compute of a one-node Reshape graph: the
  tensor in, the same bytes out) at 1, 16 and 64 MiB, from this Python client
  and from the C++ client (`gradctl bench`'s median latency), against a raw
  loopback TCP echo of the same bytes between this process and another; the
  Python client also in a process with the allocator settings the server
  and gradctl use (MALLOC_ENV: glibc otherwise maps every block over 64 MiB
  fresh on gRPC's threads, and the 64 MiB trip costs more per byte);
- the tiny 3-layer graph over a unix socket against the same over TCP;
- the example MLP's Compute with other processes busy on every core, against
  the same call on the quiet machine (passive OpenMP waiting keeps it within a
  small factor; spinning threads made it ~100x).

Medians of --reps repetitions after --warmup. Run by `make bench` with
Debian's /usr/bin/python3."""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import gs  # noqa: E402
from client_bench import gradctl_bench, median_ms, mlp, tiny  # noqa: E402

import grpc  # noqa: E402
from gradserve.v1 import gradient_service_pb2_grpc as pb_grpc  # noqa: E402

MIB = 1 << 20
# As the server's --malloc_retain_mb=512 and gradctl: one arena, blocks up to
# 512 MiB from the heap and kept when freed.
MALLOC_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": str(512 * MIB),
              "MALLOC_TRIM_THRESHOLD_": str(512 * MIB)}

# An echo server in another process: reads an 8-byte length, then that many
# bytes, and sends them back.
ECHO = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = bytearray(64 << 20)
while True:
    head = c.recv(8, socket.MSG_WAITALL)
    if len(head) < 8: break
    n = int.from_bytes(head, "little"); view = memoryview(buf)[:n]; got = 0
    while got < n: got += c.recv_into(view[got:], n - got)
    c.sendall(view)
"""


class Echo:
    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE,
                                        text=True)
        port = int(self.process.stdout.readline())
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.back = bytearray(64 << 20)

    def round_trip(self, data):
        n = len(data)
        self.sock.sendall(n.to_bytes(8, "little"))
        self.sock.sendall(data)
        view, got = memoryview(self.back)[:n], 0
        while got < n:
            got += self.sock.recv_into(view[got:], n - got)

    def close(self):
        self.sock.close()
        self.process.wait(timeout=10)


def parse_ms(text):
    """gradctl's duration ("12.3 ms", "1.20 s") in ms."""
    value, unit = text.split()
    return float(value) * (1000 if unit == "s" else 1)


def cpp_client_ms(server, request, reps, warmup):
    """The median latency of `gradctl bench` sending `request` `reps` times
    (the C++ client), in ms."""
    with tempfile.TemporaryDirectory() as d:
        command = gradctl_bench(server, request, d, "-n", reps, "--warmup", warmup)
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse_ms(out.split("latency: p50 ", 1)[1].split(",", 1)[0])


def round_trip_request(mib):
    n = mib * MIB // 4
    x = np.arange(n, dtype=np.float32)
    g = gs.graph([gs.node("r", "Reshape", ["x"], ["y"], shape=[n])], inputs=["x"])
    return x, gs.compute_request(g, feeds={"x": x}, fetch=["y"])


def python_tuned_ms(server, mib, reps, warmup):
    """The median round trip of `mib` MiB from a Python client in another
    process started with MALLOC_ENV, in ms."""
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--round_trip", str(mib),
         "--address", server.address, "--reps", str(reps), "--warmup", str(warmup)],
        capture_output=True, text=True, check=True, env={**os.environ, **MALLOC_ENV})
    return float(done.stdout.split()[-1])


def round_trip_only(args):
    """--round_trip: this process's median round trip, printed."""
    channel = grpc.insecure_channel(args.address, options=[
        ("grpc.max_receive_message_length", gs.MAX_MESSAGE),
        ("grpc.max_send_message_length", gs.MAX_MESSAGE)])
    rpc = pb_grpc.GradientServiceStub(channel)
    _, request = round_trip_request(args.round_trip)
    print(median_ms(lambda: rpc.Compute(request, timeout=120), args.reps, args.warmup))


def transport_bench(server, args):
    echo = Echo()
    print(f"{'round trip, N MiB each way':28s} {'gRPC ms':>9s} {'GB/s':>6s} "
          f"{'TCP echo ms':>12s} {'GB/s':>6s} {'gRPC/echo':>10s} "
          f"{'C++ ms':>9s} {'GB/s':>6s} {'C++/echo':>9s} "
          f"{'Py+malloc':>10s} {'GB/s':>6s} {'/echo':>6s}")
    try:
        for mib in (1, 16, 64):
            x, request = round_trip_request(mib)
            reply = server.rpc.Compute(request, timeout=120)
            assert gs.to_numpy(reply.outputs["y"]).tobytes() == x.tobytes()
            data = x.tobytes()
            reps = max(3, args.reps // (1 if mib == 1 else 4))
            ours = median_ms(lambda: server.rpc.Compute(request, timeout=120), reps,
                             args.warmup)
            theirs = median_ms(lambda: echo.round_trip(data), reps, args.warmup)
            cpp = cpp_client_ms(server, request, reps, args.warmup)
            tuned = python_tuned_ms(server, mib, reps, args.warmup)
            rate = 2 * mib * MIB / 1e6  # bytes both ways, in MB, per ms = GB/s
            print(f"{'  ' + str(mib) + ' MiB':28s} {ours:9.2f} {rate / ours:6.2f} "
                  f"{theirs:12.2f} {rate / theirs:6.2f} {theirs / ours:9.0%} "
                  f"{cpp:10.2f} {rate / cpp:6.2f} {theirs / cpp:8.0%} "
                  f"{tuned:10.2f} {rate / tuned:6.2f} {theirs / tuned:6.0%}")
    finally:
        echo.close()


def unix_socket_bench(args):
    path = os.path.join(tempfile.mkdtemp(prefix="gradserve-bench-"), "gs.sock")
    server = gs.Server(also_listen=[f"unix://{path}"])
    try:
        channel = grpc.insecure_channel(f"unix://{path}")
        over_unix = pb_grpc.GradientServiceStub(channel)
        request = tiny(np.random.default_rng(1))
        fs = [lambda: server.rpc.Compute(request, timeout=10),
              lambda: over_unix.Compute(request, timeout=10)]
        tcp, unix = (median_ms(f, args.reps * 10, args.warmup) for f in fs)
        print(f"{'tiny 3-layer over a unix socket':40s} {unix:9.3f} ms   TCP "
              f"{tcp:9.3f} ms   unix/TCP {unix / tcp:6.2f}x")
        channel.close()
    finally:
        server.close()


def contention_bench(server, args):
    rng = np.random.default_rng(0)
    g, _, x, labels = mlp(rng)
    request = gs.compute_request(g, feeds={"x": x, "labels": labels}, loss="L")
    quiet = median_ms(lambda: server.rpc.Compute(request, timeout=60), args.reps,
                      args.warmup)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)]
    try:
        time.sleep(0.5)
        busy = median_ms(lambda: server.rpc.Compute(request, timeout=60), args.reps,
                         args.warmup)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    print(f"{'MLP Compute, every core busy':40s} {busy:9.3f} ms   quiet    "
          f"{quiet:9.3f} ms   busy/quiet {busy / quiet:6.2f}x  ({len(hogs)} busy loops)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--round_trip", type=int, default=0,
                        help="only time a round trip of this many MiB to --address")
    parser.add_argument("--address", default="")
    args = parser.parse_args()
    if args.round_trip:
        return round_trip_only(args)
    server = gs.Server()
    try:
        info = server.rpc.GetServerInfo(gs.pb.GetServerInfoRequest())
        print(f"transport_bench: Python grpcio client, server {info.workers} worker(s) x "
              f"{info.threads_per_worker} thread(s), oneDNN {info.onednn_version} on "
              f"{info.cpu_isa}, medians of {args.reps}")
        transport_bench(server, args)
        contention_bench(server, args)
    finally:
        server.close()
    unix_socket_bench(args)


if __name__ == "__main__":
    main()
