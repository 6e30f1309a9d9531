"""Server-wide protections, each checked before anything is computed or
allocated: the size of a reply, the memory budget of requests in flight,
and request bytes that do not parse."""

import concurrent.futures

import grpc
import numpy as np
import pytest

import gs

pb = gs.pb
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def outer_sum(n):
    """a [n, 1] + b [1, n]: a reply of n*n floats from 2n of them."""
    g = gs.graph([gs.node("add", "Add", ["a", "b"], ["y"])], inputs=["a", "b"])
    return gs.compute_request(g, feeds={"a": np.ones((n, 1), np.float32),
                                        "b": np.ones((1, n), np.float32)},
                              fetch=["y"])


def scale(n):
    g = gs.graph([gs.node("s", "Scale", ["x"], ["y"], factor=2.0)], inputs=["x"])
    return gs.compute_request(g, feeds={"x": np.ones(n, np.float32)}, fetch=["y"])


@pytest.fixture(scope="module")
def small_server():
    s = gs.Server("--max_message_bytes=16777216", "--max_inflight_bytes=3000000")
    yield s
    assert s.alive(), s.output()
    s.close()


def test_reply_size_is_checked_before_computing(small_server):
    # 4096 x 4096 floats = 64 MiB of reply, over the 16 MiB message limit.
    with pytest.raises(grpc.RpcError) as error:
        small_server.rpc.Compute(outer_sum(4096), timeout=30)
    assert error.value.code() == EXHAUSTED
    assert "would take up to" in error.value.details()
    assert "16777216" in error.value.details()
    # A reply that fits is computed.
    y = small_server.compute(outer_sum(64)).outputs["y"]
    np.testing.assert_array_equal(y, np.full((64, 64), 2, np.float32))


def test_memory_budget_bounds_requests_in_flight(small_server):
    # 2 MiB of feed: its message and parsed copy alone exceed the 3 MB budget.
    with pytest.raises(grpc.RpcError) as error:
        small_server.rpc.Compute(scale(1 << 19), timeout=30)
    assert error.value.code() == EXHAUSTED
    assert "--max_inflight_bytes" in error.value.details()
    # Many requests at once that fit one by one: each either completes with
    # the right answer or is refused for the budget, and all memory is given
    # back afterwards (a lone request then fits).
    request = scale(60000)
    results = {"ok": 0, "refused": 0}

    def call(_):
        try:
            y = gs.to_numpy(small_server.rpc.Compute(request, timeout=60).outputs["y"])
            assert np.all(y == 2)
            return "ok"
        except grpc.RpcError as e:
            assert e.code() == EXHAUSTED, e.details()
            assert "--max_inflight_bytes" in e.details() or "queue" in e.details()
            return "refused"

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for outcome in pool.map(call, range(64)):
            results[outcome] += 1
    assert results["ok"] > 0
    assert np.all(small_server.compute(request).outputs["y"] == 2)


METHODS = {
    "Compute": "gradserve.v1.ComputeRequest",
    "Describe": "gradserve.v1.DescribeRequest",
    "CreateSession": "gradserve.v1.CreateSessionRequest",
    "TrainStep": "gradserve.v1.TrainStepRequest",
    "SetParameters": "gradserve.v1.SetParametersRequest",
    "GetParameters": "gradserve.v1.GetParametersRequest",
    "Forward": "gradserve.v1.ForwardRequest",
    "Backward": "gradserve.v1.BackwardRequest",
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_unparseable_bytes_are_invalid_argument(server, method):
    call = server.channel.unary_unary(f"/gradserve.v1.GradientService/{method}")
    with pytest.raises(grpc.RpcError) as error:
        call(b"\x0a\xff\xff\xff\x0f", timeout=10)  # a field longer than the message
    assert error.value.code() == INVALID
    assert f"request is not a valid {METHODS[method]}" in error.value.details()


def test_unparseable_stream_item_is_answered_in_band(server):
    stream = server.channel.stream_stream("/gradserve.v1.GradientService/ComputeStream",
                                          response_deserializer=pb.ComputeStreamResponse.FromString)
    good = scale(4).SerializeToString()
    replies = list(stream(iter([good, b"\x0a\xff\xff\xff\x0f", good]), timeout=30))
    assert [r.index for r in replies] == [0, 1, 2]
    assert replies[1].code == INVALID.value[0]
    assert "request is not a valid gradserve.v1.ComputeRequest" in replies[1].error_message
    assert replies[0].code == 0 and replies[2].code == 0
    np.testing.assert_array_equal(gs.to_numpy(replies[2].response.outputs["y"]),
                                  np.full(4, 2, np.float32))
