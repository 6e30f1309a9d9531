"""int64 arithmetic over gRPC against torch 1.13: each op on int64 tensors
gives torch's values and dtype (int64, or float32 where torch promotes);
mixed int64/float operands are promoted and the float operand's gradient is
torch's; an int64 tensor has no gradient (asking for one is
INVALID_ARGUMENT naming it); integer division by zero is refused."""

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gs

BIG = np.iinfo(np.int64).max


def ints(shape, lo=-9, hi=10, seed=0, nonzero=False):
    rng = np.random.default_rng(seed)
    v = rng.integers(lo, hi, size=shape).astype(np.int64)
    if nonzero:
        v[v == 0] = 1
    return v


# (id, op, inputs {name: array}, attributes, torch function of the inputs)
CASES = [
    ("add", "Add", {"a": ints((3, 4)), "b": ints((4,), seed=1)}, {}, torch.add),
    ("add-wraps", "Add", {"a": np.array([BIG, -5]), "b": np.array([1, 2])}, {}, torch.add),
    ("add-alpha", "Add", {"a": ints((2, 3)), "b": ints((2, 3), seed=1)}, {"alpha": 3},
     lambda a, b: torch.add(a, b, alpha=3)),
    ("sub", "Sub", {"a": ints((2, 1, 3)), "b": ints((4, 1), seed=1)}, {}, torch.sub),
    ("mul", "Mul", {"a": ints((5,)), "b": ints((5,), seed=1)}, {}, torch.mul),
    ("div-trunc", "Div", {"a": ints((3, 4)), "b": ints((4,), seed=1, nonzero=True)},
     {"rounding_mode": "trunc"}, lambda a, b: torch.div(a, b, rounding_mode="trunc")),
    ("div-floor", "Div", {"a": ints((3, 4)), "b": ints((3, 1), seed=1, nonzero=True)},
     {"rounding_mode": "floor"}, lambda a, b: torch.div(a, b, rounding_mode="floor")),
    ("div-true", "Div", {"a": ints((3, 4)), "b": ints((4,), seed=1, nonzero=True)}, {},
     torch.div),
    ("abs", "Abs", {"x": ints((2, 5))}, {}, torch.abs),
    ("relu", "ReLU", {"x": ints((2, 5))}, {}, F.relu),
    ("exp", "Exp", {"x": ints((6,), -3, 4)}, {}, torch.exp),
    ("sigmoid", "Sigmoid", {"x": ints((6,))}, {}, torch.sigmoid),
    ("hardtanh", "Hardtanh", {"x": ints((8,))}, {"min_val": -2.5, "max_val": 3.0},
     lambda x: F.hardtanh(x, -2.5, 3.0)),
    ("relu6", "ReLU6", {"x": ints((8,))}, {}, F.relu6),
    ("clamp-ints", "Clamp", {"x": ints((3, 4))}, {"min": -2, "max": 4},
     lambda x: torch.clamp(x, min=-2, max=4)),
    ("clamp-tensors", "Clamp", {"x": ints((3, 4)), "min": ints((4,), -5, 0, seed=1),
                                "max": ints((3, 1), 1, 5, seed=2)}, {},
     lambda x, lo, hi: torch.clamp(x, lo, hi)),
    ("clamp-promoted", "Clamp", {"x": ints((3, 4))}, {"min": 0.5},
     lambda x: torch.clamp(x, min=0.5)),
    ("pow-scalar", "Pow", {"x": ints((6,), -4, 5)}, {"exponent": 3},
     lambda x: torch.pow(x, 3)),
    ("pow-tensor", "Pow", {"x": ints((6,), -3, 4), "exponent": ints((6,), -2, 4, seed=1)},
     {}, torch.pow),
    ("sum", "Sum", {"x": ints((3, 4, 2))}, {"axes": [0, 2]},
     lambda x: torch.sum(x, dim=(0, 2))),
    ("max", "Max", {"x": ints((3, 4))}, {"axes": [1], "keepdims": 1},
     lambda x: torch.amax(x, dim=1, keepdim=True)),
    ("min", "Min", {"x": ints((3, 4))}, {}, torch.amin),
    ("matmul", "MatMul", {"a": ints((2, 3, 4)), "b": ints((4, 5), seed=1)}, {},
     torch.matmul),
    ("matmul-vector", "MatMul", {"a": ints((4,)), "b": ints((3, 4, 2), seed=1)}, {},
     torch.matmul),
    ("linear", "Linear", {"x": ints((3, 4)), "w": ints((2, 4), seed=1),
                          "b": ints((2,), seed=2)}, {}, F.linear),
    ("conv2d", "Conv2d", {"x": ints((2, 2, 5, 5)), "w": ints((3, 2, 3, 3), seed=1),
                          "b": ints((3,), seed=2)}, {"padding": [1, 1], "stride": [2, 1]},
     lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1)),
    ("conv-transpose2d", "ConvTranspose2d", {"x": ints((1, 2, 3, 3)),
                                             "w": ints((2, 3, 2, 2), seed=1)},
     {"stride": [2, 2]}, lambda x, w: F.conv_transpose2d(x, w, stride=2)),
    ("avg-pool2d", "AvgPool2d", {"x": ints((1, 2, 5, 5))}, {"kernel": [3, 3], "stride": [2, 2]},
     lambda x: F.avg_pool2d(x, 3, 2)),
    ("where", "Where", {"condition": ints((3, 4), 0, 2), "x": ints((3, 4)),
                        "other": ints((4,), seed=1)}, {},
     lambda c, x, y: torch.where(c.bool(), x, y)),
]


@pytest.mark.parametrize("name,op,inputs,attrs,reference", CASES, ids=[c[0] for c in CASES])
def test_int64_op_matches_torch(server, name, op, inputs, attrs, reference):
    g = gs.graph([gs.node("n", op, list(inputs), ["y"], **attrs)], inputs=list(inputs),
                 outputs=["y"])
    got = server.compute(gs.compute_request(g, feeds=inputs)).outputs["y"]
    want = reference(*[torch.from_numpy(v) for v in inputs.values()]).numpy()
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape
    if want.dtype == np.int64:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_mixed_operands_promote_and_the_float_gradient_is_torchs(server):
    a = np.random.default_rng(3).uniform(-1, 1, size=(3, 4)).astype(np.float32)
    b = ints((4,), 1, 5)
    for op, fn in (("Mul", torch.mul), ("Div", torch.div), ("Sub", torch.sub)):
        g = gs.graph([gs.node("n", op, ["a", "b"], ["y"]),
                      gs.node("s", "Sum", ["y"], ["L"])], inputs=["a", "b"])
        result = server.compute(gs.compute_request(g, feeds={"a": a, "b": b}, fetch=["y"],
                                                   loss="L", wrt=["a"]))
        ta = torch.tensor(a, requires_grad=True)
        y = fn(ta, torch.from_numpy(b))
        y.sum().backward()
        assert result.outputs["y"].dtype == np.float32
        np.testing.assert_allclose(result.outputs["y"], y.detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(result.gradients["a"], ta.grad.numpy(), rtol=1e-6)


def test_an_int64_tensor_has_no_gradient(server):
    g = gs.graph([gs.node("n", "Add", ["a", "b"], ["y"]),
                  gs.node("c", "Mul", ["y", "w"], ["z"]),
                  gs.node("s", "Sum", ["z"], ["L"])], inputs=["a", "b", "w"])
    feeds = {"a": ints((3,)), "b": ints((3,), seed=1), "w": np.ones(3, np.float32)}
    for wrt in ("a", "y"):
        e = gs.rpc_error(server.rpc.Compute,
                         gs.compute_request(g, feeds=feeds, loss="L", wrt=[wrt]), timeout=30)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
        assert f"'{wrt}'" in e.details() and "int64" in e.details(), e.details()
        assert "no gradient" in e.details(), e.details()
    # The float one has its gradient: the int64 sum a + b.
    result = server.compute(gs.compute_request(g, feeds=feeds, loss="L", wrt=["w"]))
    np.testing.assert_allclose(result.gradients["w"], feeds["a"] + feeds["b"])


def test_integer_division_by_zero_is_refused(server):
    g = gs.graph([gs.node("d", "Div", ["a", "b"], ["y"], rounding_mode="floor")],
                 inputs=["a", "b"], outputs=["y"])
    e = gs.rpc_error(server.rpc.Compute,
                     gs.compute_request(g, feeds={"a": ints((2, 3)),
                                                  "b": np.array([1, 0, 2])}), timeout=30)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    for part in ("'d'", "integer division by zero", "input 'b'", "flat index 1"):
        assert part in e.details(), e.details()
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        torch.div(torch.tensor([1]), torch.tensor([0]), rounding_mode="floor")


def test_ops_torch_refuses_for_int64_are_refused(server):
    for op, attrs in (("GELU", {}), ("Mean", {}), ("Softplus", {})):
        g = gs.graph([gs.node("n", op, ["x"], ["y"], **attrs)], inputs=["x"], outputs=["y"])
        e = gs.rpc_error(server.rpc.Compute,
                         gs.compute_request(g, feeds={"x": ints((3,))}), timeout=30)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (op, e.details())
        assert "'x'" in e.details() and "int64" in e.details(), (op, e.details())
