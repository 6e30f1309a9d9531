"""Amplification: a request whose outputs, saved tensors or gradients would
need far more memory than it carries is refused before anything is
allocated, for every op. The test walks GetServerInfo's op list: each op
either has requests below whose inferred output is huge next to their
inputs (broadcasting, a weight's fan-out, Concat of one value many times,
padding, dilation, adaptive output sizes, dims of empty tensors), each
expected RESOURCE_EXHAUSTED or INVALID_ARGUMENT naming the node, or is
listed with the reason its outputs cannot outgrow its inputs. A new op
fails the walk until it is one or the other. The server's peak RSS shows
that nothing was allocated."""

import grpc
import numpy as np
import pytest

import gs

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
INVALID = grpc.StatusCode.INVALID_ARGUMENT
REQUEST_BYTES = 16 << 20
BIG = 1 << 12  # 4096: BIG^2 floats are 64 MiB, 4x --max_request_bytes
HUGE = 1 << 16  # HUGE^2 is past --max_tensor_elements; HUGE^4 past int64


def f32(*shape):
    return np.ones(shape, np.float32)


def request(op, inputs, attrs=None, n_out=1, loss=True):
    """One `op` node named 'amp' over graph inputs `inputs` (name -> array),
    its outputs fetched, and with `loss` a Sum of its first output as the loss
    (so that gradients of the float inputs and saved tensors are planned too)."""
    outs = ["y"] + [f"y{i}" for i in range(1, n_out)]
    nodes = [gs.node("amp", op, list(inputs), outs, **(attrs or {}))]
    if loss:
        nodes.append(gs.node("total", "Sum", ["y"], ["L"]))
    g = gs.graph(nodes, inputs=list(inputs))
    wrt = [k for k, v in inputs.items() if v.dtype.kind == "f"] if loss else ()
    return gs.compute_request(g, dict(inputs), fetch=outs, loss="L" if loss else "", wrt=wrt)


def binary(op):
    return [request(op, {"a": f32(BIG, 1), "b": f32(1, BIG)}),
            request(op, {"a": f32(HUGE, 1), "b": f32(1, HUGE)}, loss=False)]


def conv(op, spatial):
    x, w = (f32(1, 1, 1), f32(1, 1, 2)) if spatial == 1 else (f32(1, 1, 1, 1), f32(1, 1, 2, 2))
    pad = BIG * BIG if spatial == 1 else BIG
    dilation = pad
    return [request(op, {"x": x, "w": w}, {"padding": [pad] * spatial}),
            # Large dilation with as much padding: the output is long, the
            # kernel's reach is longer still.
            request(op, {"x": x, "w": w}, {"padding": [pad] * spatial,
                                           "dilation": [dilation] * spatial}),
            request(op, {"x": x, "w": w}, {"padding": [HUGE * HUGE] * spatial}, loss=False)]


def adaptive(op, n_out):
    return [request(op, {"x": f32(1, 1, 1, 1)}, {"output_size": [BIG, BIG]}, n_out=n_out),
            request(op, {"x": f32(1, 1, 1, 1)}, {"output_size": [HUGE, HUGE]}, loss=False)]


AMPLIFYING = {
    "Linear": lambda: [request("Linear", {"x": f32(BIG, 1), "w": f32(BIG, 1)}),
                       request("Linear", {"x": f32(HUGE, 1), "w": f32(HUGE, 1)}, loss=False)],
    "MatMul": lambda: [request("MatMul", {"a": f32(BIG, 1), "b": f32(1, BIG)}),
                       # batch dims broadcast against each other
                       request("MatMul", {"a": f32(BIG, 1, 1, 1), "b": f32(BIG, 1, 1)}),
                       request("MatMul", {"a": f32(HUGE, 1), "b": f32(1, HUGE)}, loss=False)],
    "Add": lambda: binary("Add"),
    "Sub": lambda: binary("Sub"),
    "Mul": lambda: binary("Mul"),
    "Div": lambda: binary("Div"),
    # One value many times over: the names cost a few bytes each.
    "Concat": lambda: [concat_many(4096, (BIG, 4)),
                       # past --max_node_inputs: planning each input costs
                       # the server far more than its name costs the client
                       concat_many(1 << 17, (64, 64), loss=False)],
    "Conv1d": lambda: conv("Conv1d", 1),
    "Conv2d": lambda: conv("Conv2d", 2),
    "AdaptiveAvgPool2d": lambda: adaptive("AdaptiveAvgPool2d", 1),
    "AdaptiveMaxPool2d": lambda: adaptive("AdaptiveMaxPool2d", 2),
    # An empty tensor's other dims: [0] reshaped to [BIG, BIG, 0] is empty
    # too, but its dims count against the limits as any tensor's.
    "Reshape": lambda: [request("Reshape", {"x": f32(0)}, {"shape": [HUGE, HUGE, 0]},
                                loss=False)],
    # Weights broadcast to the prediction's shape, not the other way.
    "BCELoss": lambda: [request("BCELoss", {"p": f32(BIG, 1), "t": f32(BIG, 1),
                                            "w": f32(1, BIG)}, {"reduction": "none"})],
    "BCEWithLogitsLoss": lambda: [request("BCEWithLogitsLoss",
                                          {"p": f32(BIG, 1), "t": f32(BIG, 1),
                                           "w": f32(1, BIG)}, {"reduction": "none"})],
    # A target broadcast against the prediction, the terms kept.
    "MSELoss": lambda: [request("MSELoss", {"p": f32(BIG, 1), "t": f32(1, BIG)},
                                {"reduction": "none"})],
    # Tensor bounds, exponents and conditions broadcast as Add's operands.
    "Clamp": lambda: [request("Clamp", {"x": f32(BIG, 1), "lo": f32(1, BIG)})],
    "Pow": lambda: [request("Pow", {"x": f32(BIG, 1), "e": f32(1, BIG)})],
    "Where": lambda: [request("Where", {"c": f32(BIG, 1), "a": f32(1, BIG), "b": f32(1, 1)}),
                      request("Where", {"c": f32(HUGE, 1), "a": f32(1, HUGE),
                                        "b": f32(1, 1)}, loss=False)],
    "Pad": lambda: [request("Pad", {"x": f32(1, 1)}, {"pads": [BIG * BIG, 0]}),
                    request("Pad", {"x": f32(1, 1)}, {"pads": [0, 0, HUGE * HUGE, 0]},
                            loss=False)],
    "ConvTranspose1d": lambda: conv_transpose("ConvTranspose1d", 1),
    "ConvTranspose2d": lambda: conv_transpose("ConvTranspose2d", 2),
    # A few indices repeat a row: the rows cost nothing to name.
    "IndexSelect": lambda: [request("IndexSelect", {"x": f32(1, BIG), "i": indices(BIG)},
                                    {"dim": 0})],
    "Embedding": lambda: [request("Embedding", {"i": indices(BIG), "w": f32(1, BIG)})],
}

# Ops whose outputs (and gradients) are at most about their inputs' size.
NOT_AMPLIFYING = {
    **{op: "elementwise: the output has the input's shape" for op in (
        "Scale", "ReLU", "Tanh", "Sigmoid", "Exp", "Log", "SiLU", "Mish", "Sqrt", "Abs",
        "GELU", "LeakyReLU", "ELU", "Softmax", "LogSoftmax", "Dropout", "BatchNorm",
        "LayerNorm", "Hardtanh", "ReLU6", "Softplus", "Dropout2d", "GroupNorm",
        "InstanceNorm1d", "InstanceNorm2d")},
    **{op: "the input's elements in another shape or order" for op in (
        "Flatten", "Transpose", "Permute", "Squeeze", "Unsqueeze")},
    "Split": "chunks that together are the input",
    **{op: "one term per element of a target of the prediction's shape" for op in (
        "L1Loss", "SmoothL1Loss", "HuberLoss", "KLDivLoss")},
    "Gather": "the index's shape, each index (8 bytes) carried in the request",
    **{op: "a reduction: at most the input's elements" for op in ("Sum", "Mean", "Max", "Min")},
    "CrossEntropyLoss": "at most one term per row of the logits",
    "NLLLoss": "at most one term per row of the log-probabilities",
    "MaxPool2d": "windows of at least one element, padding at most half the kernel",
    "AvgPool2d": "windows of at least one element, padding at most half the kernel",
}


def indices(n):
    return np.zeros(n, np.int64)


def conv_transpose(op, spatial):
    x, w = (f32(1, 1, 2), f32(1, 1, 2)) if spatial == 1 else (f32(1, 1, 2, 2), f32(1, 1, 2, 2))
    step = BIG * BIG if spatial == 1 else BIG
    # Each step of the input moves the output `stride` along; dilation
    # spreads the kernel as far.
    return [request(op, {"x": x, "w": w}, {"stride": [step] * spatial}),
            request(op, {"x": x, "w": w}, {"dilation": [step] * spatial}),
            request(op, {"x": x, "w": w}, {"stride": [HUGE * HUGE] * spatial}, loss=False)]


def concat_many(copies, shape, loss=True):
    g_inputs = {"x": f32(*shape)}
    r = request("Concat", g_inputs, {"axis": 0}, loss=loss)
    node = r.graph.nodes[0]
    del node.inputs[:]
    node.inputs.extend(["x"] * copies)
    return r


@pytest.fixture(scope="module")
def amp_server():
    s = gs.Server(f"--max_request_bytes={REQUEST_BYTES}", "--workers=1",
                  "--threads_per_worker=1")
    yield s
    s.close()


def registry_ops(server):
    return [op.name for op in server.info().ops]


def test_every_op_is_walked(amp_server):
    ops = set(registry_ops(amp_server))
    unclassified = ops - set(AMPLIFYING) - set(NOT_AMPLIFYING)
    assert not unclassified, f"classify these ops for amplification: {sorted(unclassified)}"
    assert not (set(AMPLIFYING) | set(NOT_AMPLIFYING)) - ops, "ops no longer registered"


def test_every_amplifying_request_is_refused_before_allocating(amp_server):
    ops = registry_ops(amp_server)
    # A small valid call first: what the first call sets up is not counted.
    amp_server.rpc.Compute(request("Add", {"a": f32(4, 1), "b": f32(1, 4)}), timeout=60)
    before = amp_server.peak_rss_bytes()
    refusals = {}
    for op in ops:
        for i, r in enumerate(AMPLIFYING.get(op, lambda: [])()):
            carried = r.ByteSize()
            assert carried < (1 << 20), (op, i, carried)
            try:
                amp_server.rpc.Compute(r, timeout=60)
                pytest.fail(f"{op} request {i}: a {carried}-byte request was computed")
            except grpc.RpcError as e:
                assert e.code() in (EXHAUSTED, INVALID), (op, i, e.code(), e.details())
                assert "'amp'" in e.details(), (op, i, e.details())
                refusals[(op, i)] = e.code()
    assert amp_server.alive() and amp_server.serving()
    # Nothing of the 64 MiB (or far more) that each would take was allocated:
    # what grows is parsing (131072 input names of a Concat take ~6 MiB).
    grown = amp_server.peak_rss_bytes() - before
    assert gs.SANITIZED or grown < (16 << 20), f"peak RSS grew by {grown} bytes"
    assert {op for op, _ in refusals} == set(AMPLIFYING), refusals
