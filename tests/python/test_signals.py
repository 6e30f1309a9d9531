"""SIGTERM and SIGINT: calls in flight finish (within
--shutdown_grace_seconds) and the process exits 0, also when the signal
comes twice at once, as `timeout` sends it (to its child, then to its
process group) and a terminal's Ctrl-C or a supervisor may; a second signal
that comes later (a second Ctrl-C) still stops at once. Back to back, the
kernel may merge the two while the first is pending (the old server passed
then too); 0.2 s apart, the old server exited 1 and cut the call."""

import signal
import threading
import time

import grpc
import pytest

import gs


def start_slow_call(server, layers=128):
    """A slow Compute (forward only: `layers` deep, about a second on one
    thread) on its own thread, running when this returns; returns (thread,
    result dict)."""
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
    thread, result = start_slow_call(server, layers=768)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # past the second that counts as the same signal
    assert thread.is_alive(), result
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 1
    server.stopped = True
    thread.join(timeout=60)
    assert result.get("error") == grpc.StatusCode.UNAVAILABLE, result
    assert "second signal, exiting now" in server.output()
