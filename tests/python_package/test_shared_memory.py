"""Shared memory, used automatically for a same-host server that allows it."""

import numpy as np
import pytest

import gradserve
from models import mlp_graph, mlp_weights


def big_batch(n=8192):
    rng = np.random.default_rng(3)
    return {"x": rng.normal(size=(n, 4)), "labels": rng.integers(0, 3, n)}


def test_used_when_allowed_and_bitwise_the_plain_path(start_server):
    server = start_server("--allow_shared_memory")
    g = mlp_graph(mlp_weights(), batch=8192)
    feeds = big_batch()
    with gradserve.Client(server.address) as client:
        plain_client = gradserve.Client(server.address, shared_memory=False)
        plain = plain_client.compute(g, feeds, wrt=["W1", "x"])
        assert plain_client.shared_memory_bytes == 0
        plain_client.close()
        placed = client.compute(g, feeds, wrt=["W1", "x"])
        # x (8192·4 float32) and labels (8192 int64) went through the region.
        assert client.shared_memory_bytes == 8192 * 4 * 4 + 8192 * 8
        assert placed.loss == plain.loss
        for name in ("W1", "x"):
            np.testing.assert_array_equal(placed.gradients[name], plain.gradients[name])
        with client.session(g, optimizer=gradserve.SGD(lr=0.1)) as session:
            step = session.train_step(feeds)
            assert step.loss == plain.loss
        assert client.shared_memory_bytes == 2 * (8192 * 4 * 4 + 8192 * 8)


def test_silently_not_used_when_the_server_does_not_allow_it(server):
    g = mlp_graph(mlp_weights(), batch=8192)
    with gradserve.Client(server.address) as client:
        assert client.compute(g, big_batch()).loss is not None
        assert client.shared_memory_bytes == 0
    with gradserve.Client(server.address, shared_memory=True) as client:
        with pytest.raises(gradserve.FailedPrecondition, match="allow_shared_memory"):
            client.compute(g, big_batch())


def test_a_region_the_server_dropped_is_registered_again(start_server):
    from gradserve.v1 import gradient_service_pb2 as pb
    server = start_server("--allow_shared_memory")
    g = mlp_graph(mlp_weights(), batch=8192)
    feeds = big_batch()
    with gradserve.Client(server.address) as client:
        first = client.compute(g, feeds)
        region = client._region()
        # As when a reconnect drops it: the server no longer knows the region.
        client.call("UnregisterSharedMemory", pb.UnregisterSharedMemoryRequest(region=region.name))
        again = client.compute(g, feeds)
        assert again.loss == first.loss
        assert client.shared_memory_bytes == 2 * (8192 * 4 * 4 + 8192 * 8)
