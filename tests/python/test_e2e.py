"""End to end: the gradserve and gradctl binaries as a user runs them."""

import os
import signal
import subprocess

import grpc
import numpy as np
import pytest

import gs

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")


def gradctl(server, *args, check=True):
    result = subprocess.run([gs.GRADCTL, f"--server={server.address}", *args],
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def example(name):
    return os.path.join(EXAMPLES, name)


def test_health_over_the_standard_service(server):
    assert server.serving()
    assert gradctl(server, "health").stdout == "SERVING\n"


def test_reflection_lists_the_service(server):
    # ServerReflectionRequest{list_services: ""} is field 7, an empty string.
    info = server.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda b: b, response_deserializer=lambda b: b)
    replies = list(info(iter([b"\x3a\x00"]), timeout=10))
    assert len(replies) == 1
    assert b"gradserve.v1.GradientService" in replies[0]
    assert b"grpc.health.v1.Health" in replies[0]


def test_info(server):
    out = gradctl(server, "info").stdout
    assert "oneDNN" in out
    assert "CrossEntropyLoss(logits, target, weight?) -> loss" in out
    assert "alpha: float = 0.01" in out


def test_describe(server):
    out = gradctl(server, "describe", "--graph", example("mlp.pbtxt"),
                  "--input", "x=64,4", "--input", "labels=64:int64").stdout
    assert "fc2" in out and "[64, 3]" in out
    assert "total: 67 trainable parameters" in out


def test_compute_matches_torch(server, tmp_path):
    import torch
    import torch.nn.functional as F
    gradctl(server, "compute", "--graph", example("mlp.json"),
            "--feed", f"x={example('x.npy')}", "--feed", f"labels={example('labels.npy')}",
            "--loss", "L", "--out", str(tmp_path))
    written = sorted(os.listdir(tmp_path))
    assert written == ["L.npy", "grad_W1.npy", "grad_W2.npy", "grad_b1.npy", "grad_b2.npy",
                       "logits.npy"]

    from google.protobuf import json_format
    from gradserve.v1 import graph_pb2
    with open(example("mlp.json")) as f:
        g = json_format.Parse(f.read(), graph_pb2.Graph())
    p = {name: torch.tensor(np.array(t.float_values, np.float32).reshape(tuple(t.shape)),
                            requires_grad=True) for name, t in g.parameters.items()}
    x = torch.tensor(np.load(example("x.npy")))
    labels = torch.tensor(np.load(example("labels.npy")))
    loss = F.cross_entropy(F.linear(F.relu(F.linear(x, p["W1"], p["b1"])), p["W2"], p["b2"]),
                           labels)
    loss.backward()
    np.testing.assert_allclose(np.load(tmp_path / "L.npy"), loss.item(), rtol=1e-5)
    for name, t in p.items():
        np.testing.assert_allclose(np.load(tmp_path / f"grad_{name}.npy"), t.grad.numpy(),
                                   rtol=1e-4, atol=1e-6)


def test_server_errors_reach_the_user(server):
    result = gradctl(server, "compute", "--graph", example("mlp.json"),
                     "--feed", f"x={example('x.npy')}", "--loss", "L", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: INVALID_ARGUMENT: graph input 'labels'")


def test_gradserve_help_lists_its_flags():
    result = subprocess.run([gs.GRADSERVE, "--help"], capture_output=True, text=True,
                            timeout=30)
    text = result.stdout + result.stderr
    for flag in ("--address", "--workers", "--threads_per_worker", "--max_message_bytes",
                 "--max_tensor_elements", "--max_graph_nodes", "--max_request_bytes"):
        assert flag in text


def test_gradserve_refuses_an_address_it_cannot_bind():
    busy = gs.Server()
    try:
        result = subprocess.run([gs.GRADSERVE, f"--address={busy.address}"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode != 0
        assert busy.address in result.stderr
    finally:
        busy.close()


def test_sigterm_stops_cleanly():
    s = gs.Server()
    s.process.send_signal(signal.SIGTERM)
    assert s.process.wait(timeout=30) == 0
    assert "shutting down" in s.output()
    s.close()


def test_a_server_that_died_fails_close_with_what_it_printed():
    # As a sanitizer's abort would kill it: close() (and so the session
    # fixture, and each test after which it is dead) fails, showing the report.
    s = gs.Server()
    s.process.send_signal(signal.SIGABRT)
    s.process.wait(timeout=30)
    with pytest.raises(AssertionError, match=r"had died with status -6:\n(.|\n)*listening on"):
        s.close()


def test_server_flags_apply():
    s = gs.Server("--max_graph_nodes=2", "--workers=2", "--threads_per_worker=1")
    try:
        out = gradctl(s, "info").stdout
        assert "2 worker(s) x 1 thread(s)" in out
        assert "2 nodes a graph" in out
        result = gradctl(s, "describe", "--graph", example("mlp.json"), "--input", "x=1,4",
                         "--input", "labels=1:int64", check=False)
        assert result.returncode == 1
        assert "RESOURCE_EXHAUSTED" in result.stderr and "limit of 2" in result.stderr
    finally:
        s.close()


def test_deadline_is_reported(server):
    # A long chain with a tiny deadline: DEADLINE_EXCEEDED, and the server lives.
    width, depth = 512, 300
    nodes = [gs.node(f"fc{i}", "Linear", ["x" if i == 0 else f"h{i-1}", "W"], [f"h{i}"])
             for i in range(depth)]
    g = gs.graph(nodes, inputs=["x"], parameters={"W": np.eye(width, dtype=np.float32)},
                 outputs=[f"h{depth-1}"])
    request = gs.compute_request(g, feeds={"x": np.ones((256, width), np.float32)})
    with pytest.raises(grpc.RpcError) as error:
        server.rpc.Compute(request, timeout=0.05)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert gradctl(server, "health").stdout == "SERVING\n"
