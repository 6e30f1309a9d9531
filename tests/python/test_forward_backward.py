"""Forward now, Backward later gives exactly (bit for bit) what one Compute
gives: outputs, dropout masks drawn from the seed, updated running
statistics and gradients, from the loss, from seeds on fetched values, or
both, for all of Forward's wrt or a subset; and a kept activation gives the
same gradients every time."""

import grpc
import numpy as np
import pytest

import gs
import models
import test_op_parity

TRAIN, EVAL = gs.pb.MODE_TRAIN, gs.pb.MODE_EVAL
SIDE = models.CNN_SHAPE[1] // 2
FLAT = (8, models.CNN_CHANNELS * SIDE * SIDE)


def setup(kind):
    _, g = models.make(kind, seed=4, explicit_mask=False)
    feeds = models.batch(kind, np.random.default_rng(4))
    feeds.pop("mask", None)
    return g, feeds


def both(server, g, feeds, fetch, loss="", seeds=None, wrt=(), backward_wrt=(), mode=TRAIN,
         seed=0, from_loss=None):
    """(Compute's result, Forward's response, Backward's gradients) of the
    same request."""
    compute = server.compute(gs.compute_request(
        g, feeds, fetch=fetch, loss=loss, output_gradients=seeds,
        wrt=backward_wrt or wrt, mode=mode, seed=seed))
    fwd = server.forward(g, feeds, fetch=fetch, loss=loss, wrt=wrt, mode=mode, seed=seed)
    grads = server.backward(fwd.activation_id, from_loss=bool(loss) if from_loss is None
                            else from_loss, output_gradients=seeds, wrt=backward_wrt)
    return compute, fwd, grads


def assert_equal_to_compute(compute, fwd, grads):
    gs.assert_same(gs.arrays(fwd.outputs), compute.outputs, "outputs")
    gs.assert_same(gs.arrays(fwd.buffers), compute.buffers, "buffers")
    gs.assert_same(grads, compute.gradients, "gradients")


def test_mlp_from_the_loss(server):
    g, feeds = setup("mlp")
    compute, fwd, grads = both(server, g, feeds, ["logits", "a"], loss="L")
    assert set(compute.outputs) == {"logits", "a", "L"}
    assert set(grads) == set(g.parameters)
    assert_equal_to_compute(compute, fwd, grads)


@pytest.mark.parametrize("seed", [0, 12345])
def test_cnn_in_train_mode_with_drawn_dropout_and_batch_norm(server, seed):
    g, feeds = setup("cnn")
    fetch = ["logits", "drop_mask", "n"]
    compute, fwd, grads = both(server, g, feeds, fetch, loss="L", seed=seed)
    assert_equal_to_compute(compute, fwd, grads)
    mask = compute.outputs["drop_mask"]
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert 0.5 < mask.mean() < 0.95  # p = 0.25
    assert set(compute.buffers) == {"bn_running_mean", "bn_running_var"}
    assert set(grads) == set(g.parameters)
    # Another seed, another mask: the comparison above is not of constants.
    other = server.compute(gs.compute_request(g, feeds, fetch=["drop_mask"], seed=seed + 1))
    assert not gs.bitwise_equal(other.outputs["drop_mask"], mask)


def test_cnn_in_eval_mode(server):
    g, feeds = setup("cnn")
    compute, fwd, grads = both(server, g, feeds, ["logits"], loss="L", mode=EVAL)
    assert not compute.buffers
    assert_equal_to_compute(compute, fwd, grads)


@pytest.mark.parametrize("kind,value,shape", [("mlp", "a", (8, models.MLP_HIDDEN)),
                                              ("cnn", "f", FLAT), ("cnn", "logits", (8, 5))])
def test_seeds_on_a_fetched_value_instead_of_the_loss(server, kind, value, shape):
    g, feeds = setup(kind)
    seeds = {value: np.random.default_rng(5).normal(size=shape).astype(np.float32)}
    compute = server.compute(gs.compute_request(g, feeds, fetch=[value], output_gradients=seeds,
                                                seed=3))
    fwd = server.forward(g, feeds, fetch=[value], loss="L", seed=3)
    grads = server.backward(fwd.activation_id, output_gradients=seeds)
    gs.assert_same(grads, compute.gradients, "gradients")
    gs.assert_same(gs.arrays(fwd.outputs)[value], compute.outputs[value], value)
    gs.assert_same(gs.arrays(fwd.buffers), compute.buffers, "buffers")


@pytest.mark.parametrize("kind,value,shape", [("mlp", "a", (8, models.MLP_HIDDEN)),
                                              ("cnn", "f", FLAT)])
def test_seeds_added_to_the_loss(server, kind, value, shape):
    g, feeds = setup(kind)
    seeds = {value: np.random.default_rng(6).normal(size=shape).astype(np.float32)}
    compute, fwd, grads = both(server, g, feeds, ["logits", value], loss="L", seeds=seeds,
                               seed=8)
    assert_equal_to_compute(compute, fwd, grads)
    # The seed contributed: the loss alone gives other gradients.
    alone = server.compute(gs.compute_request(g, feeds, loss="L", seed=8)).gradients
    assert not gs.bitwise_equal(alone["fc1_weight" if kind == "mlp" else "conv_weight"],
                                grads["fc1_weight" if kind == "mlp" else "conv_weight"])


def test_wrt_subset_in_backward(server):
    g, feeds = setup("cnn")
    wrt = ["conv_weight", "bn_weight", "fc_weight", "x"]
    compute = server.compute(gs.compute_request(g, feeds, fetch=["logits"], loss="L",
                                                wrt=["fc_weight", "x"], seed=2))
    fwd = server.forward(g, feeds, fetch=["logits"], loss="L", wrt=wrt, seed=2)
    sub = server.backward(fwd.activation_id, from_loss=True, wrt=["x", "fc_weight"], keep=True)
    gs.assert_same(sub, compute.gradients, "subset")
    full = server.backward(fwd.activation_id, from_loss=True)
    assert set(full) == set(wrt)
    gs.assert_same({k: full[k] for k in sub}, sub, "subset of the full set")
    gs.assert_same(full, server.compute(gs.compute_request(
        g, feeds, loss="L", wrt=wrt, seed=2)).gradients, "full")


def unreached_parameter_graph():
    """y = sigmoid(x) fetched, L = sum(y); W feeds a Linear nothing uses."""
    g = gs.graph([gs.node("fc", "Linear", ["x", "W"], ["h"]),
                  gs.node("act", "Sigmoid", ["x"], ["y"]),
                  gs.node("loss", "Sum", ["y"], ["L"])],
                 inputs=["x"], outputs=["y"], parameters={"W": np.ones((3, 3), np.float32)})
    return g, {"x": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}


def test_backward_refuses_a_wrt_nothing_it_starts_from_depends_on(server):
    g, feeds = unreached_parameter_graph()
    fwd = server.forward(g, feeds, fetch=["y"], loss="L")  # every parameter
    with pytest.raises(grpc.RpcError) as compute_error:
        server.compute(gs.compute_request(g, feeds, fetch=["y"], loss="L", wrt=["W"]))
    with pytest.raises(grpc.RpcError) as backward_error:
        server.backward(fwd.activation_id, from_loss=True, wrt=["W"], keep=True)
    for e in (compute_error, backward_error):
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "wrt 'W': neither the loss nor any seeded value depends on it" in \
            e.value.details()
    # Naming no wrt, W gets zeros, as from a Compute naming none.
    grads = server.backward(fwd.activation_id, from_loss=True, keep=True)
    gs.assert_same(grads, server.compute(gs.compute_request(
        g, feeds, fetch=["y"], loss="L")).gradients, "every parameter")
    assert not grads["W"].any()


def test_backward_from_fewer_seeds_than_the_forward_planned(server):
    """The forward pass plans for the loss and the fetched y; a backward
    pass seeding only y refuses the forward's wrt that only L reaches."""
    g = gs.graph([gs.node("act", "Sigmoid", ["x"], ["y"]),
                  gs.node("scale", "Mul", ["x", "s"], ["z"]),
                  gs.node("loss", "Sum", ["z"], ["L"])],
                 inputs=["x"], outputs=["y"], parameters={"s": np.full((2, 3), 2, np.float32)})
    feeds = {"x": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}
    seeds = {"y": np.ones((2, 3), np.float32)}
    fwd = server.forward(g, feeds, fetch=["y"], loss="L", wrt=["x", "s"])
    with pytest.raises(grpc.RpcError) as e:
        server.backward(fwd.activation_id, output_gradients=seeds, keep=True)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "wrt 's': neither the loss nor any seeded value depends on it" in e.value.details()
    grads = server.backward(fwd.activation_id, output_gradients=seeds, wrt=["x"])
    gs.assert_same(grads, server.compute(gs.compute_request(
        g, feeds, fetch=["y"], output_gradients=seeds, wrt=["x"])).gradients, "x alone")


def test_kept_activation_of_the_cnn_gives_the_same_gradients_each_time(server):
    g, feeds = setup("cnn")
    seeds = {"f": np.random.default_rng(7).normal(size=FLAT).astype(np.float32)}
    fwd = server.forward(g, feeds, fetch=["logits", "f"], loss="L",
                         wrt=list(g.parameters) + ["x"], seed=5)
    compute = server.compute(gs.compute_request(g, feeds, fetch=["logits", "f"], loss="L",
                                                output_gradients=seeds,
                                                wrt=list(g.parameters) + ["x"], seed=5))
    runs = [server.backward(fwd.activation_id, from_loss=True, output_gradients=seeds,
                            keep=True) for _ in range(3)]
    runs.append(server.backward(fwd.activation_id, from_loss=True, output_gradients=seeds))
    for r in runs:
        gs.assert_same(r, compute.gradients, "kept")
    # Different requests on one kept tape: loss only, then seeds only.
    fwd = server.forward(g, feeds, fetch=["f"], loss="L", seed=5)
    loss_only = server.backward(fwd.activation_id, from_loss=True, keep=True)
    seed_only = server.backward(fwd.activation_id, output_gradients=seeds)
    gs.assert_same(loss_only, server.compute(gs.compute_request(
        g, feeds, loss="L", seed=5)).gradients, "loss only")
    gs.assert_same(seed_only, server.compute(gs.compute_request(
        g, feeds, fetch=["f"], output_gradients=seeds, seed=5)).gradients, "seed only")


OP_CASES = test_op_parity.CASES + test_op_parity.BATCH_NORM_CASES


@pytest.mark.parametrize("case", OP_CASES, ids=[c.id for c in OP_CASES])
def test_every_op_forward_backward_equals_compute_and_keeps(quick_server, case):
    server = quick_server
    # One node of each op: Forward, two kept Backwards and a last one all give
    # Compute's gradients (no op changes what its tape saved).
    rng = np.random.default_rng(0)
    values = {name: make(rng) for name, make in case.inputs if name}
    node = gs.node("node", case.op, [name for name, _ in case.inputs], ["y"], **case.attrs)
    g = gs.graph([node], inputs=list(values), outputs=["y"])
    wrt = [name for name, v in values.items() if v.dtype == np.float32]
    if case.loss:
        args, seeds = dict(loss="y"), None
    else:
        shape = server.compute(gs.compute_request(g, values, fetch=["y"])).outputs["y"].shape
        args, seeds = dict(fetch=["y"]), {"y": rng.uniform(-1, 1, size=shape).astype(np.float32)}
    compute = server.compute(gs.compute_request(g, values, output_gradients=seeds, wrt=wrt,
                                                seed=1, **args))
    fwd = server.forward(g, values, wrt=wrt, seed=1, **args)
    gs.assert_same(gs.arrays(fwd.outputs), compute.outputs, "outputs")
    gs.assert_same(gs.arrays(fwd.buffers), compute.buffers, "buffers")
    for keep in (True, True, False):
        grads = server.backward(fwd.activation_id, from_loss=case.loss, output_gradients=seeds,
                                keep=keep)
        gs.assert_same(grads, compute.gradients, f"keep={keep}")
