"""Malformed requests over gRPC: each must get the right status code and a
message naming the culprit, and the server must go on answering."""

import grpc
import numpy as np
import pytest

import gs
from gradserve.v1 import gradient_service_pb2 as pb
from gradserve.v1 import graph_pb2
from gradserve.v1 import tensor_pb2

INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
NOT_FOUND = grpc.StatusCode.NOT_FOUND

X = np.arange(6, dtype=np.float32).reshape(2, 3)
W = np.ones((4, 3), dtype=np.float32)


def good_request():
    """fc: y = x Wᵀ + b, then MSE against t; valid as is."""
    g = gs.graph(
        [gs.node("fc", "Linear", ["x", "W", "b"], ["y"]),
         gs.node("mse", "MSELoss", ["y", "t"], ["L"])],
        inputs=["x", "t"], parameters={"W": W, "b": np.zeros(4, np.float32)},
        outputs=["y"])
    return gs.compute_request(g, feeds={"x": X, "t": np.zeros((2, 4), np.float32)}, loss="L")


def single(op, inputs, feeds, outputs=("y",), fetch=("y",), **attrs):
    g = gs.graph([gs.node("n1", op, inputs, outputs, **attrs)], inputs=list(feeds))
    return gs.compute_request(g, feeds=feeds, fetch=fetch)


def mutate(fn):
    def make():
        request = good_request()
        fn(request)
        return request
    return make


def set_feed(name, **fields):
    def fn(request):
        t = request.feeds[name]
        for key, value in fields.items():
            if key in ("shape", "float_values", "int64_values"):
                t.ClearField(key)
                getattr(t, key).extend(value)
            else:
                setattr(t, key, value)
    return fn


def add_node(*args, **attrs):
    return lambda r: r.graph.nodes.append(gs.node(*args, **attrs))


def set_node(index, **fields):
    def fn(request):
        n = request.graph.nodes[index]
        for key, value in fields.items():
            if isinstance(value, list):
                n.ClearField(key)
                getattr(n, key).extend(value)
            else:
                setattr(n, key, value)
    return fn


INT64_MAX = (1 << 63) - 1
IMAGE = np.ones((1, 1, 4, 4), np.float32)
KERNEL = np.ones((1, 1, 3, 3), np.float32)


def shaped(*shape):
    """A float32 tensor of `shape` carrying no values (for empty shapes)."""
    return tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=list(shape))


def with_feeds(request, **feeds):
    for name, t in feeds.items():
        request.feeds[name].CopyFrom(t)
    return request


CASES = {
    "data byte count": (mutate(set_feed("x", data=b"\0" * 20)), INVALID, ["'x'", "20"]),
    "float_values count": (mutate(lambda r: (r.feeds["x"].ClearField("data"),
                                             r.feeds["x"].float_values.extend([1.0] * 5))),
                           INVALID, ["'x'", "5"]),
    "negative dim": (mutate(set_feed("x", shape=[2, -3])), INVALID, ["'x'", "-3"]),
    "dims overflow int64": (mutate(set_feed("x", shape=[1 << 40, 1 << 40, 1 << 40])),
                            EXHAUSTED, ["'x'"]),
    "unspecified dtype": (mutate(set_feed("x", dtype=tensor_pb2.DATA_TYPE_UNSPECIFIED)),
                          INVALID, ["'x'"]),
    "two value fields": (mutate(lambda r: r.feeds["x"].float_values.extend([0.0] * 6)),
                         INVALID, ["'x'"]),
    "int64_values on float32": (mutate(lambda r: (r.feeds["x"].ClearField("data"),
                                                  r.feeds["x"].int64_values.extend([1] * 6))),
                                INVALID, ["'x'"]),
    "parameter byte count": (mutate(lambda r: setattr(r.graph.parameters["W"], "data", b"1")),
                             INVALID, ["'W'"]),
    "attribute without value": (mutate(lambda r: r.graph.nodes[0].attributes["alpha"]
                                       .CopyFrom(graph_pb2.Attribute())),
                                INVALID, ["'fc'", "alpha"]),
    "unknown op": (mutate(set_node(0, op="Convolution3000")), UNIMPLEMENTED,
                   ["'fc'", "Convolution3000"]),
    "duplicate node name": (mutate(set_node(1, name="fc")), INVALID, ["'fc'"]),
    "dangling input": (mutate(set_node(0, inputs=["x", "W_missing", "b"])), INVALID,
                       ["'fc'", "W_missing"]),
    "cycle": (mutate(lambda r: (set_node(0, inputs=["y2", "W", "b"])(r),
                                add_node("relu", "ReLU", ["y"], ["y2"])(r))),
              INVALID, ["cycle", "'fc'", "'relu'"]),
    "value defined twice": (mutate(add_node("again", "ReLU", ["x"], ["y"])), INVALID,
                            ["'y'", "'again'"]),
    "feed for unknown name": (mutate(lambda r: r.feeds["nope"].CopyFrom(gs.tensor(X))),
                              INVALID, ["'nope'"]),
    "missing feed": (mutate(lambda r: r.feeds.pop("t")), INVALID, ["'t'"]),
    "weight shape mismatch": (mutate(lambda r: r.graph.parameters["W"].CopyFrom(
        gs.tensor(np.ones((4, 5), np.float32)))), INVALID, ["'fc'", "weight", "[4, 5]"]),
    "loss not scalar": (mutate(lambda r: setattr(r, "loss", "y")), INVALID,
                        ["'y'", "scalar"]),
    "wrt unknown": (mutate(lambda r: r.wrt.append("ghost")), INVALID, ["'ghost'"]),
    "wrt independent value": (mutate(lambda r: (add_node("side", "ReLU", ["x"], ["s"])(r),
                                                r.wrt.append("s"))),
                              INVALID, ["'s'"]),
    "output_gradients shape": (mutate(lambda r: r.output_gradients["y"].CopyFrom(
        gs.tensor(np.ones((3, 3), np.float32)))), INVALID, ["'y'", "[2, 4]"]),
    "fetch unknown": (mutate(lambda r: r.fetch.append("zzz")), INVALID, ["'zzz'"]),
    "unknown attribute": (mutate(lambda r: r.graph.nodes[0].attributes["gain"]
                                 .CopyFrom(graph_pb2.Attribute(f=2.0))),
                          INVALID, ["'fc'", "gain"]),
    "no model": (lambda: pb.ComputeRequest(fetch=["y"]), INVALID, ["graph"]),
    "onnx model": (lambda: pb.ComputeRequest(onnx_model=b"\x08\x01", fetch=["y"]),
                   INVALID, ["onnx_model", "checker"]),
    "unknown session": (lambda: pb.ComputeRequest(session_id="abc", fetch=["y"]),
                        NOT_FOUND, ["session", "abc"]),
    "wrt int64 labels": (
        lambda: gs.compute_request(
            gs.graph([gs.node("ce", "CrossEntropyLoss", ["z", "t"], ["L"])], inputs=["z", "t"]),
            feeds={"z": X, "t": np.array([0, 1], np.int64)}, loss="L", wrt=["t"]),
        INVALID, ["'t'", "int64"]),
    "class label out of range": (
        lambda: gs.compute_request(
            gs.graph([gs.node("ce", "CrossEntropyLoss", ["z", "t"], ["L"])], inputs=["z", "t"]),
            feeds={"z": X, "t": np.array([0, 7], np.int64)}, loss="L"),
        INVALID, ["'ce'", "7"]),
    "labels of wrong dtype": (
        lambda: gs.compute_request(
            gs.graph([gs.node("ce", "CrossEntropyLoss", ["z", "t"], ["L"])], inputs=["z", "t"]),
            feeds={"z": X, "t": np.array([0, 1], np.float32)}, loss="L"),
        INVALID, ["'ce'", "target"]),
    "probability above one": (
        lambda: gs.compute_request(
            gs.graph([gs.node("bce", "BCELoss", ["p", "t"], ["L"])], inputs=["p", "t"]),
            feeds={"p": np.array([0.5, 1.5], np.float32),
                   "t": np.array([0.0, 1.0], np.float32)}, loss="L"),
        INVALID, ["'bce'"]),
    "attribute of wrong type": (lambda: single("Softmax", ["x"], {"x": X}, axis="last"),
                                INVALID, ["'n1'", "axis"]),
    "axis out of range": (lambda: single("Softmax", ["x"], {"x": X}, axis=5), INVALID,
                          ["'n1'", "axis"]),
    "reshape element count": (lambda: single("Reshape", ["x"], {"x": X}, shape=[4, 2]),
                              INVALID, ["'n1'", "[4, 2]"]),
    "two -1 in reshape": (lambda: single("Reshape", ["x"], {"x": X}, shape=[-1, -1]),
                          INVALID, ["'n1'", "-1"]),
    "broadcast mismatch": (lambda: single("Add", ["a", "b"], {"a": X, "b": W}), INVALID,
                           ["'n1'", "[2, 3]", "[4, 3]"]),
    "concat mismatch": (lambda: single("Concat", ["a", "b"], {"a": X, "b": W}, axis=1),
                        INVALID, ["'n1'", "[4, 3]"]),
    "unknown reduction": (
        lambda: gs.compute_request(
            gs.graph([gs.node("mse", "MSELoss", ["p", "t"], ["L"], reduction="average")],
                     inputs=["p", "t"]),
            feeds={"p": X, "t": X}, loss="L"),
        INVALID, ["'mse'", "average"]),
    "conv zero stride": (
        lambda: single("Conv2d", ["x", "w"], {"x": np.ones((1, 2, 5, 5), np.float32),
                                              "w": np.ones((3, 2, 3, 3), np.float32)},
                       stride=[0, 1]),
        INVALID, ["'n1'", "'stride'"]),
    "conv negative dilation": (
        lambda: single("Conv1d", ["x", "w"], {"x": np.ones((1, 2, 9), np.float32),
                                              "w": np.ones((3, 2, 3), np.float32)},
                       dilation=-2),
        INVALID, ["'n1'", "'dilation'"]),
    "conv negative padding": (
        lambda: single("Conv2d", ["x", "w"], {"x": np.ones((1, 2, 5, 5), np.float32),
                                              "w": np.ones((3, 2, 3, 3), np.float32)},
                       padding=[-1, 0]),
        INVALID, ["'n1'", "'padding'"]),
    "conv kernel larger than padded input": (
        lambda: single("Conv2d", ["x", "w"], {"x": np.ones((1, 2, 3, 3), np.float32),
                                              "w": np.ones((3, 2, 5, 5), np.float32)}),
        INVALID, ["'n1'", "kernel [5, 5]", "padded input 3"]),
    "conv channel mismatch": (
        lambda: single("Conv2d", ["x", "w"], {"x": np.ones((1, 3, 5, 5), np.float32),
                                              "w": np.ones((3, 2, 3, 3), np.float32)}),
        INVALID, ["'n1'", "weight", "[3, 2, 3, 3]"]),
    "conv groups mismatch": (
        lambda: single("Conv2d", ["x", "w"], {"x": np.ones((1, 3, 5, 5), np.float32),
                                              "w": np.ones((4, 1, 3, 3), np.float32)},
                       groups=2),
        INVALID, ["'n1'", "groups = 2"]),
    "batch norm weight length": (
        lambda: single("BatchNorm", ["x", "w", "", "m", "v"],
                       {"x": np.ones((4, 3), np.float32), "w": np.ones(2, np.float32),
                        "m": np.zeros(3, np.float32), "v": np.ones(3, np.float32)}),
        INVALID, ["'n1'", "weight", "[3]", "[2]"]),
    "pool kernel 0": (
        lambda: single("MaxPool2d", ["x"], {"x": np.ones((1, 1, 4, 4), np.float32)},
                       kernel=[0, 2]),
        INVALID, ["'n1'", "'kernel'"]),
    "dropout p above 1": (
        lambda: single("Dropout", ["x"], {"x": np.ones(4, np.float32)}, p=1.5),
        INVALID, ["'n1'", "'p'"]),
    # Shapes and attributes at the edges of int64 (an adversarial probe).
    "conv padding int64 max": (
        lambda: single("Conv2d", ["x", "w"], {"x": IMAGE, "w": KERNEL}, padding=[INT64_MAX, 0]),
        INVALID, ["'n1'", "'padding'", "<= 2147483647", str(INT64_MAX)]),
    "conv stride 2^31": (
        lambda: single("Conv2d", ["x", "w"], {"x": IMAGE, "w": KERNEL}, stride=[1 << 31, 1]),
        INVALID, ["'n1'", "'stride'", "2147483648"]),
    "conv stride plus padding beyond int": (
        lambda: single("Conv2d", ["x", "w"], {"x": IMAGE, "w": KERNEL},
                       stride=[(1 << 31) - 1, 1], padding=[1, 0]),
        INVALID, ["'n1'", "'stride'", "stride plus padding"]),
    "pool padding int64 max": (
        lambda: single("MaxPool2d", ["x"], {"x": IMAGE}, kernel=[2, 2], padding=[INT64_MAX, 0]),
        INVALID, ["'n1'", "'padding'", str(INT64_MAX)]),
    "negative dim after a zero dim": (
        lambda: with_feeds(single("ReLU", ["x"], {"x": X}), x=shaped(0, -5)),
        INVALID, ["'x'", "[0, -5]"]),
    "empty tensor with huge dims": (
        lambda: with_feeds(single("Flatten", ["x"], {"x": X}), x=shaped(0, 3, 1 << 62)),
        EXHAUSTED, ["'x'", "[0, 3, 4611686018427387904]", "non-zero dims"]),
    "concat of empty tensors with huge dims": (
        lambda: with_feeds(single("Concat", ["a", "b"], {"a": X, "b": X}),
                           a=shaped(0, 1 << 62), b=shaped(0, 1 << 62)),
        EXHAUSTED, ["[0, 4611686018427387904]", "non-zero dims"]),
    "small request, huge output": (
        lambda: single("Add", ["a", "b"], {"a": np.ones((100000, 1), np.float32),
                                           "b": np.ones((1, 100000), np.float32)}),
        EXHAUSTED, ["'n1'"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rejected_with_named_culprit(server, name):
    make, code, parts = CASES[name]
    with pytest.raises(grpc.RpcError) as error:
        server.rpc.Compute(make(), timeout=30)
    assert error.value.code() == code, error.value.details()
    for part in parts:
        assert part in error.value.details(), (part, error.value.details())
    # The server is still there and still right.
    result = server.compute(good_request())
    np.testing.assert_allclose(result.outputs["y"], X @ W.T)


def test_zero_size_batch_gives_an_empty_result(server):
    result = server.compute(single("Conv2d", ["x", "w"],
                                   {"x": np.ones((0, 2, 5, 5), np.float32),
                                    "w": np.ones((3, 2, 3, 3), np.float32)}))
    assert result.outputs["y"].shape == (0, 3, 3, 3)


def test_at_least_25_malformed_requests():
    assert len(CASES) >= 25


def test_describe_rejects_missing_input_shape(server):
    request = pb.DescribeRequest(graph=good_request().graph)
    request.input_shapes["x"].dims.extend([2, 3])
    with pytest.raises(grpc.RpcError) as error:
        server.rpc.Describe(request, timeout=30)
    assert error.value.code() == INVALID
    assert "'t'" in error.value.details()


def describe_request(op, input_shapes, **attrs):
    g = gs.graph([gs.node("n1", op, list(input_shapes), ["y"], **attrs)],
                 inputs=list(input_shapes))
    request = pb.DescribeRequest(graph=g)
    for name, dims in input_shapes.items():
        request.input_shapes[name].dims.extend(dims)
        request.input_shapes[name].dtype = tensor_pb2.DATA_TYPE_FLOAT32
    return request


# Describe runs the same shape rules as Compute (it used to answer a shape
# for MaxPool2d padding 2^63 - 1, for [0, -5] and for [0, 3, 2^62]).
DESCRIBE_CASES = {
    "pool padding int64 max": (
        describe_request("MaxPool2d", {"x": [1, 1, 4, 4]}, kernel=[2, 2],
                         padding=[INT64_MAX, 0]),
        INVALID, ["'n1'", "'padding'", str(INT64_MAX)]),
    "conv dilation beyond int": (
        describe_request("Conv1d", {"x": [1, 1, 9], "w": [1, 1, 3]}, dilation=(1 << 31) - 1),
        INVALID, ["'n1'", "'dilation'", "dilated kernel extent"]),
    "negative dim after a zero dim": (
        describe_request("ReLU", {"x": [0, -5]}), INVALID, ["'x'", "[0, -5]"]),
    "empty tensor with huge dims": (
        describe_request("Flatten", {"x": [0, 3, 1 << 62]}), EXHAUSTED,
        ["'x'", "[0, 3, 4611686018427387904]"]),
    "concat of empty tensors with huge dims": (
        describe_request("Concat", {"a": [0, 1 << 62], "b": [0, 1 << 62]}), EXHAUSTED,
        ["[0, 4611686018427387904]"]),
}


@pytest.mark.parametrize("name", list(DESCRIBE_CASES))
def test_describe_rejected_with_named_culprit(server, name):
    request, code, parts = DESCRIBE_CASES[name]
    with pytest.raises(grpc.RpcError) as error:
        server.rpc.Describe(request, timeout=30)
    assert error.value.code() == code, error.value.details()
    for part in parts:
        assert part in error.value.details(), (part, error.value.details())
    # The server is still there and describes a good graph.
    response = server.rpc.Describe(describe_request("Flatten", {"x": [0, 3, 4]}), timeout=30)
    assert list(response.nodes[0].output_shapes[0].dims) == [0, 12]
