"""gRPC's hardening knobs, over real connections: a call whose metadata is
over --max_metadata_bytes is refused (and one under it served); a
connection may not open more than --max_concurrent_streams calls at once
(the next waits until one ends, while other connections are served); a
client that pings too often is disconnected; bad values stop the server."""

import subprocess
import threading
import time

import grpc
import numpy as np
import pytest

import gs
from gradserve.v1 import gradient_service_pb2 as pb
from gradserve.v1 import gradient_service_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def limited():
    s = gs.Server("--max_metadata_bytes=4096", "--max_concurrent_streams=2",
                  "--keepalive_min_ping_interval_ms=60000",
                  "--keepalive_max_ping_strikes=1", "--workers=1")
    yield s
    s.close()


def info(rpc, **kw):
    return rpc.GetServerInfo(pb.GetServerInfoRequest(), timeout=10, **kw)


def serves(rpc):
    try:
        return bool(info(rpc).version)
    except grpc.RpcError:
        return False


def test_metadata_over_the_limit_is_refused(limited):
    channel, rpc = limited.connect()
    try:
        info(rpc, metadata=(("x-small", "v" * 2000),))
        with pytest.raises(grpc.RpcError) as e:
            info(rpc, metadata=(("x-big", "v" * 8000),))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value
        assert "metadata size exceeds limit" in e.value.details()
        # gRPC then closes that connection; the channel connects again, and
        # the server serves the others throughout.
        assert serves(limited.rpc)
        assert gs.wait_until(lambda: serves(rpc), timeout=10)
    finally:
        channel.close()
    assert limited.alive() and limited.serving()


def scale_request(x):
    g = gs.graph([gs.node("s", "Scale", ["x"], ["y"], factor=2.0)], inputs=["x"])
    return gs.compute_request(g, {"x": x}, fetch=["y"])


class HeldStream:
    """A ComputeStream left open: one request answered, then it waits."""

    def __init__(self, rpc):
        self.release = threading.Event()
        x = np.ones((2, 2), np.float32)

        def requests():
            yield scale_request(x)
            self.release.wait(30)

        self.replies = rpc.ComputeStream(requests(), timeout=60)
        assert next(self.replies).code == 0  # open and served

    def close(self):
        self.release.set()
        assert list(self.replies) == []


def test_a_connection_opens_at_most_max_concurrent_streams(limited):
    channel, rpc = limited.connect()
    other, other_rpc = limited.connect()
    try:
        held = [HeldStream(rpc), HeldStream(rpc)]
        waiting = rpc.GetServerInfo.future(pb.GetServerInfoRequest(), timeout=30)
        # Another connection is served at once; this one waits for a stream.
        assert info(other_rpc).version
        time.sleep(1.0)
        assert not waiting.done()
        held[0].close()
        assert waiting.result(timeout=10).version
        held[1].close()
    finally:
        channel.close()
        other.close()


def test_a_client_pinging_too_often_is_disconnected(limited):
    # Pings every 100 ms without calls, against a 60 s minimum and 1 strike.
    channel = grpc.insecure_channel(limited.address, options=[
        ("grpc.keepalive_time_ms", 100), ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0), ("grpc.use_local_subchannel_pool", 1)])
    try:
        rpc = pb_grpc.GradientServiceStub(channel)
        assert info(rpc).version
        seen = []
        channel.subscribe(seen.append, try_to_connect=False)
        assert gs.wait_until(lambda: grpc.ChannelConnectivity.IDLE in seen or
                             grpc.ChannelConnectivity.TRANSIENT_FAILURE in seen, timeout=15), seen
    finally:
        channel.close()
    assert limited.alive()


@pytest.mark.parametrize("flag,message", [
    ("--max_concurrent_streams=0", "--max_concurrent_streams must be >= 1"),
    ("--max_metadata_bytes=0", "--max_metadata_bytes must be >= 1"),
    ("--keepalive_max_ping_strikes=-1", "--keepalive_max_ping_strikes must be >= 0"),
    ("--max_connection_idle_seconds=-5", "--max_connection_idle_seconds must be >= 0"),
])
def test_bad_values_stop_the_server(flag, message):
    done = subprocess.run([gs.GRADSERVE, "--address=127.0.0.1:0", flag],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and message in done.stderr, (done.returncode, done.stderr)
