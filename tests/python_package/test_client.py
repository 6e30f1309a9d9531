"""Client calls against PyTorch autograd, dtypes, streams, errors, retries."""

import socket
import time

import grpc
import numpy as np
import pytest
import torch

import gradserve
from models import batch, mlp_graph, mlp_weights, torch_mlp_loss


def test_compute_matches_torch_autograd(client):
    weights = mlp_weights()
    x, labels = batch()
    result = client.compute(mlp_graph(weights), {"x": x, "labels": labels},
                            wrt=["W1", "b1", "W2", "b2", "x"], fetch=["L", "fc2"])
    loss, params, xt = torch_mlp_loss(weights, x, labels)
    loss.backward()
    assert result.loss == pytest.approx(loss.item(), rel=1e-6)
    for name, p in params.items():
        assert result.gradients[name].dtype == np.float32
        np.testing.assert_allclose(result.gradients[name], p.grad.numpy(), rtol=1e-5,
                                   atol=1e-6)
    np.testing.assert_allclose(result.gradients["x"], xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert result.outputs["fc2"].shape == (8, 3)


def test_replies_are_read_only_views_not_copies(client):
    weights = mlp_weights()
    x, labels = batch()
    result = client.compute(mlp_graph(weights), {"x": x, "labels": labels})
    g = result.gradients["W1"]
    assert not g.flags.writeable and not g.flags.owndata  # np.frombuffer over the reply
    assert g.base is not None


def test_float64_when_asked(client):
    weights = mlp_weights()
    x, labels = batch()
    result = client.compute(mlp_graph(weights), {"x": x, "labels": labels}, wrt=["x"],
                            dtype=np.float64)
    assert result.gradients["x"].dtype == np.float64
    loss, _, xt = torch_mlp_loss(weights, x, labels, dtype=torch.float64)
    loss.backward()
    np.testing.assert_allclose(result.gradients["x"], xt.grad.numpy(), rtol=1e-6, atol=1e-6)
    # float32 by default, whatever the arrays' dtype (x is float64 here).
    assert client.compute(mlp_graph(weights), {"x": x, "labels": labels},
                          wrt=["x"]).gradients["x"].dtype == np.float32


def test_forward_now_backward_later_equals_compute(client):
    weights = mlp_weights()
    x, labels = batch()
    g = mlp_graph(weights)
    activation = client.forward(g, {"x": x, "labels": labels}, fetch=["L", "fc2"])
    assert activation.id and activation.loss is not None
    seeds = {"fc2": np.ones((8, 3), np.float32)}
    gradients = activation.backward(seeds, from_loss=True)
    reference = client.compute(g, {"x": x, "labels": labels}, output_gradients=seeds)
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_array_equal(gradients[name], reference.gradients[name])
    with pytest.raises(gradserve.NotFound, match=activation.id):
        activation.backward()  # released after its Backward


def test_stream_in_order_with_errors_in_band(client):
    weights = mlp_weights()
    g = mlp_graph(weights)
    items = []
    for i in range(6):
        x, labels = batch(seed=i)
        if i == 3:
            x = np.zeros((8, 5))  # the wrong width: INVALID_ARGUMENT in band
        items.append({"model": g, "feeds": {"x": x, "labels": labels}})
    results = list(client.stream(items, raise_errors=False))
    assert len(results) == 6
    assert isinstance(results[3], gradserve.InvalidArgument)
    assert "fc1" in results[3].details
    for i, result in enumerate(results):
        if i != 3:
            x, labels = batch(seed=i)
            assert result.loss == client.compute(g, {"x": x, "labels": labels}).loss
    with pytest.raises(gradserve.InvalidArgument):
        list(client.stream(items))


def test_typed_errors_carry_the_servers_message(client):
    g = gradserve.Graph()
    x = g.input("x")
    g.output(g.node("NoSuchOp", [x]))
    with pytest.raises(gradserve.Unimplemented, match="NoSuchOp") as caught:
        client.compute(g, {"x": np.zeros(3)})
    assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED
    assert isinstance(caught.value, gradserve.Error)
    with pytest.raises(gradserve.NotFound, match="no-such-session"):
        client.compute("no-such-session", {"x": np.zeros(3)})


def test_resource_exhausted_over_a_limit_is_not_retried(start_server):
    server = start_server("--max_tensor_elements=100")
    with gradserve.Client(server.address) as client:
        g = gradserve.Graph()
        g.output(g.relu(g.input("x")))
        started = time.monotonic()
        with pytest.raises(gradserve.ResourceExhausted, match="x"):
            client.compute(g, {"x": np.zeros(1000)})
        assert time.monotonic() - started < 1  # failed at once


def test_retryable_codes():
    def error(cls, message):
        return cls(message)
    queue_full = error(gradserve.ResourceExhausted,
                       "the server's compute queue is full; retry later")
    assert gradserve.retryable("Compute", queue_full)
    assert gradserve.retryable("TrainStep", queue_full)  # refused before it ran
    over = error(gradserve.ResourceExhausted, "tensor 'x' has 1000 elements, over 100")
    assert not gradserve.retryable("Compute", over)
    down = error(gradserve.Unavailable, "failed to connect")
    assert gradserve.retryable("Compute", down)
    assert not gradserve.retryable("TrainStep", down)  # may have been applied
    draining = error(gradserve.Unavailable,
                     "the server is shutting down; retry on another replica")
    assert gradserve.retryable("Compute", draining)
    assert gradserve.retryable("TrainStep", draining)  # refused before it ran
    assert not gradserve.retryable("Compute", error(gradserve.InvalidArgument, "bad"))


def test_unavailable_after_backoff():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    policy = gradserve.RetryPolicy(max_retries=3, initial_backoff=0.1, jitter=0.0)
    with gradserve.Client(f"127.0.0.1:{port}", retry=policy, timeout=5) as client:
        started = time.monotonic()
        with pytest.raises(gradserve.Unavailable):
            client.info()
        # Waited 0.1 + 0.2 + 0.4 s between the four attempts.
        assert time.monotonic() - started >= 0.7


def test_retries_until_the_server_is_up(start_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    policy = gradserve.RetryPolicy(max_retries=20, initial_backoff=0.2, multiplier=1.5,
                                   max_backoff=1.0)
    import threading
    timer = threading.Timer(1.0, lambda: start_server(port=port))
    timer.start()
    try:
        with gradserve.Client(f"127.0.0.1:{port}", retry=policy, timeout=5) as client:
            assert "sessions" in client.info().features
    finally:
        timer.join()


def test_token_without_tls_is_refused():
    with pytest.raises(ValueError, match="needs TLS"):
        gradserve.Client("localhost:1", token="secret")
