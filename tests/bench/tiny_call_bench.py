"""The tiny 3-layer graph (cached) against an empty call (Health/Check), in
server CPU per call (schedstat) as well as wall time, on two servers side by
side in one run: the default, which runs such a program on gRPC's thread,
and --inline_compute_flops=0, which hands every Compute to the compute pool.
Rounds alternate between the four loops, so load that comes and goes hits
them alike; medians of --rounds rounds of --calls calls. Run with Debian's
/usr/bin/python3."""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import gs  # noqa: E402
from client_bench import process_cpu_ms, tiny  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    servers = {"default (inline)": gs.Server(),
               "--inline_compute_flops=0": gs.Server("--inline_compute_flops=0")}
    try:
        request = tiny(np.random.default_rng(1))
        loops = {}
        for name, s in servers.items():
            health = s.channel.unary_unary("/grpc.health.v1.Health/Check")
            loops[(name, "empty")] = (s, lambda h=health: h(b"", timeout=10))
            loops[(name, "tiny")] = (s, lambda s=s: s.rpc.Compute(request, timeout=10))
        for _, call in loops.values():
            for _ in range(300):
                call()
        measured = {key: [] for key in loops}
        for _ in range(args.rounds):
            for key, (s, call) in loops.items():
                cpu, start = process_cpu_ms(s.process.pid), time.perf_counter()
                for _ in range(args.calls):
                    call()
                measured[key].append(
                    ((process_cpu_ms(s.process.pid) - cpu) * 1000 / args.calls,
                     (time.perf_counter() - start) * 1e6 / args.calls))
        med = {key: np.median(np.array(v), axis=0) for key, v in measured.items()}
        print(f"{'server':26s} {'empty CPU':>10s} {'tiny CPU':>9s} {'ratio':>6s} "
              f"{'empty wall':>11s} {'tiny wall':>10s} {'ratio':>6s}   (us per call)")
        for name in servers:
            (ec, ew), (tc, tw) = med[(name, "empty")], med[(name, "tiny")]
            print(f"{name:26s} {ec:10.1f} {tc:9.1f} {tc / ec:5.2f}x "
                  f"{ew:11.1f} {tw:10.1f} {tw / ew:5.2f}x")
    finally:
        for s in servers.values():
            s.close()


if __name__ == "__main__":
    main()
