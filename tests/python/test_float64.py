"""float64 end to end: a stateless request with any DATA_TYPE_FLOAT64 tensor
runs in float64 (float32 tensors widened) and answers in float64, matching
float64 PyTorch to float64 precision; ops' dtype attribute names the
request's dtype. Sessions: test_float64_sessions.py."""

import grpc
import numpy as np
import torch
import torch.nn.functional as F

import gs


def float64_request(g, feeds, **kwargs):
    req = gs.compute_request(g, **kwargs)
    for name, value in feeds.items():
        req.feeds[name].CopyFrom(gs.tensor(value, float64=True))
    return req


def test_float64_feeds_run_the_graph_in_float64(server):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5))
    w = rng.normal(size=(3, 5)).astype(np.float32)  # a float32 parameter, widened
    labels = np.array([0, 2, 1, 2], np.int64)
    g = gs.graph([gs.node("fc", "Linear", ["x", "W"], ["z"]),
                  gs.node("sm", "LogSoftmax", ["z"], ["lp"], axis=1, dtype="float64"),
                  gs.node("loss", "NLLLoss", ["lp", "labels"], ["L"])],
                 inputs=["x", "labels"], parameters={"W": w}, outputs=["lp"])
    req = float64_request(g, {"x": x}, fetch=["lp"], loss="L", wrt=["W", "x"])
    req.feeds["labels"].CopyFrom(gs.tensor(labels))
    result = server.compute(req)

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w.astype(np.float64), requires_grad=True)
    lp = F.log_softmax(F.linear(tx, tw), dim=1)
    F.nll_loss(lp, torch.tensor(labels)).backward()
    for name, got, want in [("lp", result.outputs["lp"], lp.detach().numpy()),
                            ("L", result.outputs["L"], F.nll_loss(lp, torch.tensor(labels))
                             .detach().numpy()),
                            ("dW", result.gradients["W"], tw.grad.numpy()),
                            ("dx", result.gradients["x"], tx.grad.numpy())]:
        assert got.dtype == np.float64, name
        # float64 precision, far below float32's ~1e-7.
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13, err_msg=name)


def test_float32_requests_stay_float32(server):
    g = gs.graph([gs.node("sm", "Softmax", ["x"], ["y"], dtype="float32")], inputs=["x"],
                 outputs=["y"])
    result = server.compute(gs.compute_request(g, feeds={"x": np.ones((2, 3), np.float32)}))
    assert result.outputs["y"].dtype == np.float32
    np.testing.assert_allclose(result.outputs["y"], np.full((2, 3), 1 / 3), rtol=1e-6)


def test_a_dtype_other_than_the_requests_is_unimplemented(server):
    g = gs.graph([gs.node("s", "Sum", ["x"], ["y"], dtype="float64")], inputs=["x"],
                 outputs=["y"])
    e = gs.rpc_error(server.rpc.Compute,
                     gs.compute_request(g, feeds={"x": np.ones(3, np.float32)}), timeout=30)
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e.details()
    for part in ("'s'", "'dtype'", "float64", "runs in float32", "DATA_TYPE_FLOAT64"):
        assert part in e.details(), e.details()
    g = gs.graph([gs.node("s", "Mean", ["x"], ["y"], dtype="half")], inputs=["x"],
                 outputs=["y"])
    e = gs.rpc_error(server.rpc.Compute,
                     gs.compute_request(g, feeds={"x": np.ones(3, np.float32)}), timeout=30)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert "'dtype'" in e.details() and "half" in e.details(), e.details()
    # In a float64 request, float64 is the request's dtype.
    g = gs.graph([gs.node("s", "Sum", ["x"], ["y"], dtype="float64")], inputs=["x"],
                 outputs=["y"])
    result = server.compute(float64_request(g, {"x": np.full(3, 0.1)}))
    assert result.outputs["y"].dtype == np.float64
    assert result.outputs["y"] == np.full(3, 0.1).sum()
