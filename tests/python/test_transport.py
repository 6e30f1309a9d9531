"""Transport: large tensors each way through the zero-copy paths (request
tensors adopt the parsed bytes; replies are slices over tensor storage),
every value carrier, unix sockets next to TCP, and the OpenMP wait policy
the server runs with."""

import os

import grpc
import numpy as np
import pytest

import gs

pb = gs.pb


def scale_request(x, factor=2.0):
    g = gs.graph([gs.node("s", "Scale", ["x"], ["y"], factor=factor)], inputs=["x"])
    return gs.compute_request(g, feeds={"x": x}, fetch=["y"])


@pytest.mark.parametrize("mib", [1, 16, 64])
def test_large_tensors_round_trip_bitwise(server, mib):
    x = np.random.default_rng(mib).standard_normal(mib << 18).astype(np.float32)
    y = server.compute(scale_request(x, 0.5)).outputs["y"]
    np.testing.assert_array_equal(y, x * np.float32(0.5))


def test_gradients_and_outputs_of_many_sizes_in_one_reply(server):
    # Small tensors are copied into the header slice, large ones referenced:
    # a reply mixing both, with int64 and scalar outputs, parses exactly.
    rng = np.random.default_rng(0)
    W = rng.standard_normal((512, 300)).astype(np.float32)
    g = gs.graph([gs.node("fc", "Linear", ["x", "W"], ["y"]),
                  gs.node("sum", "Sum", ["y"], ["L"])],
                 inputs=["x", "labels"], parameters={"W": W})
    x = rng.standard_normal((64, 300)).astype(np.float32)
    labels = np.arange(7, dtype=np.int64)
    g.outputs.append("labels")
    r = server.compute(gs.compute_request(g, feeds={"x": x, "labels": labels},
                                          fetch=["y", "labels"], loss="L", wrt=["W", "x"]))
    np.testing.assert_array_equal(r.outputs["labels"], labels)
    assert r.outputs["L"].shape == ()
    np.testing.assert_allclose(r.outputs["y"], x @ W.T, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(r.gradients["W"], np.tile(x.sum(0), (512, 1)), rtol=1e-4,
                               atol=1e-3)
    np.testing.assert_allclose(r.gradients["x"], np.tile(W.sum(0), (64, 1)), rtol=1e-4,
                               atol=1e-3)


def test_every_value_carrier(server):
    g = gs.graph([gs.node("s", "Scale", ["x"], ["y"], factor=2.0)], inputs=["x"])
    for t in [gs.tensor_pb2.Tensor(dtype=gs.tensor_pb2.DATA_TYPE_FLOAT32, shape=[3],
                                   float_values=[1, 2, 3]),
              gs.tensor_pb2.Tensor(dtype=gs.tensor_pb2.DATA_TYPE_BFLOAT16, shape=[3],
                                   data=np.array([1, 2, 3], np.float32).view(np.uint16)[1::2]
                                   .tobytes()),
              gs.tensor(np.array([1, 2, 3], np.float32))]:
        request = pb.ComputeRequest(graph=g, fetch=["y"])
        request.feeds["x"].CopyFrom(t)
        np.testing.assert_array_equal(server.compute(request).outputs["y"], [2, 4, 6])


def test_unix_socket_next_to_tcp(tmp_path):
    path = tmp_path / "gradserve.sock"
    server = gs.Server(also_listen=[f"unix://{path}"])
    try:
        request = scale_request(np.arange(1000, dtype=np.float32))
        over_tcp = server.compute(request).outputs["y"]
        channel = grpc.insecure_channel(f"unix://{path}")
        reply = gs.pb_grpc.GradientServiceStub(channel).Compute(request, timeout=30)
        np.testing.assert_array_equal(gs.to_numpy(reply.outputs["y"]), over_tcp)
        channel.close()
    finally:
        server.close()


def test_server_runs_openmp_with_passive_waits(server):
    environ = open(f"/proc/{server.process.pid}/environ", "rb").read().split(b"\0")
    if b"OMP_WAIT_POLICY=passive" not in environ:
        # The test run chose a policy itself: the server must have kept it.
        assert os.environ.get("OMP_WAIT_POLICY") or os.environ.get("GOMP_SPINCOUNT")
