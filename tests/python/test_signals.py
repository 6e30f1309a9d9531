"""SIGTERM and SIGINT: calls in flight finish (within
--shutdown_grace_seconds) and the process exits 0, also when the signal
comes twice at once, as `timeout` sends it (to its child, then to its
process group) and a terminal's Ctrl-C or a supervisor may; a second signal
that comes later (a second Ctrl-C) still stops at once. Back to back, the
kernel may merge the two while the first is pending (the old server passed
then too); 0.2 s apart, the old server exited 1 and cut the call.

The drain: health turns NOT_SERVING at once; calls on their way are still
served for --drain_notice_seconds, then new calls are refused with
UNAVAILABLE until the admitted ones have finished and callers have gone
quiet; a call is OK or UNAVAILABLE, never CANCELLED."""

import signal
import threading
import time

import grpc
import numpy as np
import pytest

import gs


def start_slow_call(server, seconds=1.0):
    """A slow Compute (forward only, deep enough to take about `seconds` on
    this server) on its own thread, running when this returns; returns
    (thread, result dict)."""
    layers = gs.slow_layers(server, seconds)
    data = gs.slow_compute_request(layers=layers, backward=False).SerializeToString()
    call = server.channel.unary_unary("/gradserve.v1.GradientService/Compute",
                                      request_serializer=lambda b: b,
                                      response_deserializer=gs.pb.ComputeResponse.FromString)
    result = {}

    def run():
        try:
            result["reply"] = call(data, timeout=120)
        except grpc.RpcError as e:
            result["error"] = e.code()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)  # sent and computing: it takes far longer than this
    assert thread.is_alive(), result
    return thread, result


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("gap", [0.0, 0.2])
def test_two_signals_at_once_still_shut_down_gracefully(start_server, sig, gap):
    server = start_server("--workers=1", "--threads_per_worker=1")
    thread, result = start_slow_call(server)
    server.process.send_signal(sig)
    if gap:
        time.sleep(gap)
    server.process.send_signal(sig)
    thread.join(timeout=120)
    assert "reply" in result, (result, server.output())
    assert "L" in result["reply"].outputs
    assert server.process.wait(timeout=60) == 0, server.output()
    server.stopped = True
    assert "second signal" not in server.output()


def test_a_later_second_signal_stops_at_once(start_server):
    server = start_server("--workers=1", "--threads_per_worker=1")
    thread, result = start_slow_call(server, seconds=3.0)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # past the second that counts as the same signal
    assert thread.is_alive(), result
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 1
    server.stopped = True
    thread.join(timeout=60)
    assert result.get("error") == grpc.StatusCode.UNAVAILABLE, result
    assert "second signal, exiting now" in server.output()


# ---------------------------------------------------------------- the drain

def small_compute(rng):
    """A small Compute (Linear + MSELoss) and its expected output."""
    w = rng.standard_normal((4, 8)).astype(np.float32)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    g = gs.graph([gs.node("fc", "Linear", ["x", "W"], ["y"])],
                 inputs=["x"], parameters={"W": w}, outputs=["y"])
    return gs.compute_request(g, {"x": x}), x @ w.T


def test_calls_around_sigterm_are_served_or_refused_unavailable(start_server):
    """8 clients call without pause while SIGTERM comes; each stops at its
    first refusal, as a client that retries on another replica would. Every
    call is OK with the right result or UNAVAILABLE, never CANCELLED: calls
    on their way are still served during the notice, later ones refused by
    the drain ("shutting down"), and gRPC's shutdown comes only once callers
    have gone quiet."""
    server = start_server("--workers=2", "--drain_notice_seconds=0.3",
                          "--shutdown_grace_seconds=20")
    results, lock = [], threading.Lock()
    signalled = threading.Event()

    def run(seed):
        rng = np.random.default_rng(seed)
        channel, rpc = server.connect()
        while True:
            request, want = small_compute(rng)
            try:
                y = gs.to_numpy(rpc.Compute(request, timeout=60).outputs["y"])
                outcome = (grpc.StatusCode.OK, bool(np.allclose(y, want, rtol=1e-5, atol=1e-5)))
            except grpc.RpcError as e:
                outcome = (e.code(), e.details())
            with lock:
                results.append((signalled.is_set(),) + outcome)
            if outcome[0] != grpc.StatusCode.OK:
                break
        channel.close()

    threads = [threading.Thread(target=run, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    signalled.set()
    server.process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=60)
    assert server.process.wait(timeout=60) == 0, server.output()
    server.stopped = True
    codes = {}
    for _, code, _ in results:
        codes[code.name] = codes.get(code.name, 0) + 1
    assert set(codes) <= {"OK", "UNAVAILABLE"}, (codes, [r for r in results if r[1].name not in
                                                        ("OK", "UNAVAILABLE")][:5])
    assert all(right is True for _, code, right in results if code == grpc.StatusCode.OK)
    refused = [details for _, code, details in results if code == grpc.StatusCode.UNAVAILABLE]
    assert len(refused) == 8, codes  # each client's last call
    assert all("shutting down; retry on another replica" in d for d in refused), refused
    # Served before the signal, and some after it (the notice).
    assert any(after for after, code, _ in results if code == grpc.StatusCode.OK), codes
    assert not any(after is False for after, code, _ in results if code != grpc.StatusCode.OK)


def test_the_drain_turns_health_not_serving_and_refuses_new_calls(start_server):
    """SIGTERM with a slow call in flight: health answers NOT_SERVING at once,
    a new call is refused with UNAVAILABLE (after the notice) while the slow
    one goes on, and the slow one completes."""
    server = start_server("--workers=1", "--drain_notice_seconds=0")
    thread, result = start_slow_call(server, seconds=2.0)
    server.process.send_signal(signal.SIGTERM)
    check = server.channel.unary_unary("/grpc.health.v1.Health/Check",
                                       request_serializer=lambda b: b,
                                       response_deserializer=lambda b: b)
    # NOT_SERVING is status 2 (field 1 = 2).
    assert gs.wait_until(lambda: check(b"", timeout=10) == b"\x08\x02", timeout=10)
    request, _ = small_compute(np.random.default_rng(0))
    with pytest.raises(grpc.RpcError) as refused:
        server.rpc.Compute(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down; retry on another replica" in refused.value.details()
    assert thread.is_alive(), result  # refused while the admitted call runs
    thread.join(timeout=120)
    assert "reply" in result, (result, server.output())
    assert server.process.wait(timeout=60) == 0, server.output()
    server.stopped = True


def test_an_open_stream_ends_unavailable_when_the_drain_begins(start_server):
    """A ComputeStream left open (its client sends nothing more) does not hold
    the drain to its grace, nor is it cancelled: its items read are answered,
    then it ends UNAVAILABLE at once."""
    server = start_server("--drain_notice_seconds=0", "--shutdown_grace_seconds=60")
    request, want = small_compute(np.random.default_rng(1))
    more = threading.Event()

    def requests():
        yield request
        more.wait(60)  # the client keeps the stream open

    replies = server.rpc.ComputeStream(requests(), timeout=120)
    first = next(replies)
    assert first.code == 0
    np.testing.assert_allclose(gs.to_numpy(first.response.outputs["y"]), want, rtol=1e-5)
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    with pytest.raises(grpc.RpcError) as ended:
        next(replies)
    more.set()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value
    assert "shutting down; retry on another replica" in ended.value.details()
    assert server.process.wait(timeout=60) == 0, server.output()
    server.stopped = True
    assert time.monotonic() - began < 30  # not the 60 s grace
