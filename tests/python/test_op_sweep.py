"""Every op over gRPC against PyTorch autograd, for every non-empty subset of
its floating inputs as wrt, with the inputs fed, parameters, or a mix of
feeds, parameters and buffers: outputs and exactly the wrt gradients match.

The reference runs in float64 on the same float32 inputs (see
test_op_parity.py, whose cases this sweep extends with optional inputs
present and absent, both BatchNorm modes and a given Dropout mask)."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gs
from test_op_parity import ATOL, CASES, RTOL, Case, uniform

EPSILON = 1e-5  # BatchNorm's default


def bernoulli(shape):
    return lambda rng: (rng.uniform(size=shape) > 0.4).astype(np.float32)


def batch_norm_reference(train, weight, bias):
    """torch's batch norm of (x, [w], [b], rm, rv). EVAL is written out, so
    that autograd differentiates the running statistics as well."""
    def reference(*values):
        it = iter(values)
        x = next(it)
        w = next(it) if weight else None
        b = next(it) if bias else None
        rm, rv = next(it), next(it)
        if train:
            return F.batch_norm(x, rm.detach().clone(), rv.detach().clone(), w, b,
                                training=True, eps=EPSILON)
        view = (1, -1) + (1,) * (x.dim() - 2)
        y = (x - rm.view(view)) / torch.sqrt(rv.view(view) + EPSILON)
        if w is not None:
            y = y * w.view(view)
        return y + b.view(view) if b is not None else y
    return reference


def batch_norm_case(shape, train, weight=True, bias=True):
    c = (shape[1],)
    case = Case(
        "BatchNorm",
        [("x", uniform(shape, -2, 2)), ("w", uniform(c, 0.5, 1.5)) if weight else ("", None),
         ("b", uniform(c)) if bias else ("", None), ("rm", uniform(c, -0.5, 0.5)),
         ("rv", uniform(c, 0.5, 2.0))],
        batch_norm_reference(train, weight, bias),
        name=(f"BatchNorm-{len(shape)}d-{'train' if train else 'eval'}"
              f"{'-w' if weight else ''}{'-b' if bias else ''}"))
    case.mode = gs.pb.MODE_TRAIN if train else gs.pb.MODE_EVAL
    return case


def dropout_case(train):
    case = Case("Dropout", [("x", uniform((3, 4))), ("m", bernoulli((3, 4)))],
                (lambda x, m: x * m / 0.7) if train else (lambda x, m: x), {"p": 0.3},
                name=f"Dropout-mask-{'train' if train else 'eval'}")
    case.mode = gs.pb.MODE_TRAIN if train else gs.pb.MODE_EVAL
    return case


EXTRA_CASES = (
    [batch_norm_case((4, 3), train, weight, bias)
     for train in (True, False) for weight in (True, False) for bias in (True, False)] +
    [batch_norm_case((2, 3, 4), True), batch_norm_case((2, 3, 2, 3), False)] +
    [Case("LayerNorm", [("x", uniform((3, 5), -2, 2)), ("w", uniform((5,), 0.5, 1.5)),
                        ("", None)],
          lambda x, w: F.layer_norm(x, (5,), w), name="LayerNorm-weight-only"),
     Case("LayerNorm", [("x", uniform((3, 5), -2, 2)), ("", None), ("", None)],
          lambda x: F.layer_norm(x, (5,)), name="LayerNorm-plain"),
     dropout_case(True), dropout_case(False),
     Case("Dropout", [("x", uniform((3, 4)))], lambda x: x, {"p": 0.3},
          name="Dropout-eval")])
EXTRA_CASES[-1].mode = gs.pb.MODE_EVAL
SWEEP = CASES + EXTRA_CASES

PLACEMENTS = ("feeds", "parameters", "mixed")


def place(values, placement):
    """Feeds, parameters and buffers: all fed; every float a parameter (int64
    labels buffers); value i fed, a parameter or a buffer by i % 3 (int64
    labels fed instead of a parameter); or as a dict {name: "parameter" or
    "buffer"} says (the rest fed)."""
    groups = ({}, {}, {})
    for i, (name, value) in enumerate(values.items()):
        if isinstance(placement, dict):
            where = ("feed", "parameter", "buffer").index(placement.get(name, "feed"))
        else:
            where = {"feeds": 0, "parameters": 1, "mixed": i % 3}[placement]
        if where == 1 and value.dtype != np.float32:
            where = 2 if placement == "parameters" else 0
        groups[where][name] = value
    return groups


def torch_reference(case, values, rng):
    """y, the output gradient seed (None for a loss) and every float input's
    gradient (zeros where torch has none)."""
    leaves = {name: torch.tensor(v.astype(np.float64) if v.dtype == np.float32 else v,
                                 requires_grad=v.dtype == np.float32)
              for name, v in values.items()}
    y = case.reference(*leaves.values())
    seed = None
    if case.loss:
        y.backward()
    else:
        seed = rng.uniform(-1, 1, size=tuple(y.shape)).astype(np.float32)
        y.backward(torch.tensor(seed.astype(np.float64)))
    grads = {name: (leaf.grad.numpy() if leaf.grad is not None
                    else np.zeros(leaf.shape)) for name, leaf in leaves.items()
             if leaf.requires_grad}
    return y.detach().numpy(), seed, grads


def request_for(case, values, placement, wrt, seed):
    feeds, parameters, buffers = place(values, placement)
    node = gs.node("node", case.op, [name for name, _ in case.inputs], ["y"], **case.attrs)
    g = gs.graph([node], inputs=list(feeds), parameters=parameters, buffers=buffers,
                 outputs=["y"])
    mode = getattr(case, "mode", gs.pb.MODE_TRAIN)
    if seed is None:
        return gs.compute_request(g, feeds=feeds, loss="y", wrt=wrt, mode=mode)
    return gs.compute_request(g, feeds=feeds, fetch=["y"], output_gradients={"y": seed},
                              wrt=wrt, mode=mode)


def subsets(names):
    return [list(s) for k in range(1, len(names) + 1)
            for s in itertools.combinations(names, k)]


def expect_matches_torch(server, case, wrts, placements):
    """Runs the case for each wrt list and placement: y and exactly the wrt
    gradients match torch's."""
    rng = np.random.default_rng(0)
    values = {name: make(rng) for name, make in case.inputs if name}
    y, seed, grads = torch_reference(case, values, rng)
    for wrt in wrts:
        for placement in placements:
            where = f"{case.id} wrt {wrt}, {placement}"
            result = server.compute(request_for(case, values, placement, wrt, seed))
            np.testing.assert_allclose(result.outputs["y"], y, rtol=RTOL, atol=ATOL,
                                       err_msg=where)
            assert set(result.gradients) == set(wrt), where
            for name in wrt:
                np.testing.assert_allclose(result.gradients[name], grads[name], rtol=RTOL,
                                           atol=ATOL, err_msg=f"d/d{name}, {where}")
    assert server.alive(), server.output()


def float_inputs(case):
    rng = np.random.default_rng(0)
    return [name for name, make in case.inputs if name and make(rng).dtype == np.float32]


@pytest.mark.parametrize("case", SWEEP, ids=[c.id for c in SWEEP])
def test_every_wrt_subset_and_placement_matches_torch(server, case):
    expect_matches_torch(server, case, subsets(float_inputs(case)), PLACEMENTS)


def test_the_sweep_covers_every_served_op(server):
    info = server.rpc.GetServerInfo(gs.pb.GetServerInfoRequest(), timeout=10)
    served = {op.name for op in info.ops}
    assert served <= {case.op for case in SWEEP}, sorted(served - {c.op for c in SWEEP})


def test_the_server_still_serves_after_the_sweep(server):
    assert server.alive(), server.output()
    assert server.serving()
