"""Bad requests to the session and Forward/Backward RPCs: each gets the right
status code and a message naming the culprit, a refused request changes
nothing, and the server goes on answering."""

import grpc
import numpy as np
import pytest

import gs
import models
from gradserve.v1 import tensor_pb2

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

UNKNOWN_ID = "nosuchroute." + "0" * 32


def check(error, code, *parts):
    assert error.code() == code, f"{error.code()}: {error.details()}"
    for part in parts:
        assert part in error.details(), f"{part!r} not in {error.details()!r}"


@pytest.fixture(autouse=True)
def still_healthy(server):
    yield
    assert server.alive(), server.output()
    _, g = models.make("mlp")
    result = server.compute(gs.compute_request(g, models.batch("mlp", np.random.default_rng(0)),
                                               loss="L"))
    assert set(result.gradients) == set(g.parameters)


@pytest.fixture
def session(server):
    """A CNN session with SGD momentum, one step taken (so it has state)."""
    _, g = models.make("cnn", seed=1)
    sid = server.create_session(g, optimizer=gs.sgd(lr=0.1, momentum=0.9)).session_id
    server.train_step(sid, models.batch("cnn", np.random.default_rng(1)), "L")
    yield sid
    server.close_session(sid)


def closed_session(server):
    _, g = models.make("mlp")
    sid = server.create_session(g, optimizer=gs.sgd(lr=0.1)).session_id
    server.close_session(sid)
    return sid


SESSION_CALLS = {
    "CloseSession": lambda s, sid: s.close_session(sid),
    "GetParameters": lambda s, sid: s.get_parameters(sid),
    "SetParameters": lambda s, sid: s.set_parameters(sid, step=1),
    "TrainStep": lambda s, sid: s.train_step(sid, models.batch("mlp", np.random.default_rng(0)),
                                             "L"),
    "Compute": lambda s, sid: s.compute(gs.compute_request(
        sid, models.batch("mlp", np.random.default_rng(0)), loss="L")),
    "Describe": lambda s, sid: s.rpc.Describe(gs.pb.DescribeRequest(session_id=sid),
                                              timeout=30),
    "Forward": lambda s, sid: s.forward(sid, models.batch("mlp", np.random.default_rng(0)),
                                        loss="L"),
}


@pytest.mark.parametrize("which", ["unknown", "closed"])
@pytest.mark.parametrize("rpc", sorted(SESSION_CALLS))
def test_unknown_and_closed_sessions_are_not_found(server, rpc, which):
    sid = UNKNOWN_ID if which == "unknown" else closed_session(server)
    check(gs.rpc_error(SESSION_CALLS[rpc], server, sid), NOT_FOUND, sid)


def test_closing_twice_is_not_found(server):
    _, g = models.make("mlp")
    sid = server.create_session(g).session_id
    server.close_session(sid)
    check(gs.rpc_error(server.close_session, sid), NOT_FOUND, sid)


def snapshot(server, sid):
    v = server.get_parameters(sid, include_optimizer_state=True)
    return {"parameters": v.parameters, "buffers": v.buffers,
            "optimizer_state": v.optimizer_state, "step": v.step}


FC_W = (models.CNN_CLASSES, models.CNN_CHANNELS * (models.CNN_SHAPE[1] // 2) ** 2)
GOOD_W = np.full(FC_W, 0.25, np.float32)

BAD_SET_PARAMETERS = {
    "unknown parameter": (dict(parameters={"fc_weight": GOOD_W, "nope": GOOD_W}),
                          ["parameters['nope']"]),
    "buffer as a parameter": (dict(parameters={"bn_running_mean": np.zeros(4, np.float32)}),
                              ["parameters['bn_running_mean']"]),
    "wrong shape": (dict(parameters={"fc_weight": GOOD_W,
                                     "fc_bias": np.zeros(3, np.float32)}),
                    ["parameters['fc_bias']", "[5]", "[3]"]),
    "wrong dtype": (dict(parameters={"fc_weight": GOOD_W.astype(np.int64)}),
                    ["parameters['fc_weight']", "int64"]),
    "unknown buffer": (dict(parameters={"fc_weight": GOOD_W},
                            buffers={"bn_running_std": np.ones(4, np.float32)}),
                       ["buffers['bn_running_std']"]),
    "buffer shape": (dict(buffers={"bn_running_var": np.ones(5, np.float32)}),
                     ["buffers['bn_running_var']", "[4]", "[5]"]),
    "bad state name": (dict(parameters={"fc_weight": GOOD_W},
                            optimizer_state={"fc_weight/exp_avg": GOOD_W}),
                       ["fc_weight/exp_avg", "momentum_buffer"]),
    "state of no parameter": (dict(optimizer_state={"nope/momentum_buffer": GOOD_W}),
                              ["nope/momentum_buffer", "'nope'"]),
    "state without a slash": (dict(optimizer_state={"momentum_buffer": GOOD_W}),
                              ["'momentum_buffer'"]),
    "state shape": (dict(optimizer_state={"fc_weight/momentum_buffer": np.ones(3, np.float32)}),
                    ["fc_weight/momentum_buffer", "shape"]),
    "negative step": (dict(parameters={"fc_weight": GOOD_W}, step=-1), ["step", "-1"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SET_PARAMETERS))
def test_set_parameters_refuses_and_changes_nothing(server, session, case):
    fields, parts = BAD_SET_PARAMETERS[case]
    before = snapshot(server, session)
    check(gs.rpc_error(server.set_parameters, session, **fields), INVALID, *parts)
    gs.assert_same(snapshot(server, session), before, "after a refused SetParameters")
    # The same request without the culprit succeeds.
    good = {"parameters": {"fc_weight": GOOD_W}}
    server.set_parameters(session, **good)
    assert gs.bitwise_equal(server.get_parameters(session).parameters["fc_weight"], GOOD_W)


def test_set_parameters_state_needs_an_optimizer_and_a_trained_parameter(server):
    _, g = models.make("mlp")
    plain = server.create_session(g).session_id
    state = {"fc2_bias/momentum_buffer": np.zeros(models.MLP_CLASSES, np.float32)}
    check(gs.rpc_error(server.set_parameters, plain, optimizer_state=state), INVALID,
          "optimizer_state", plain)
    frozen = server.create_session(g, optimizer=gs.sgd(lr=0.1, momentum=0.9),
                                   frozen=["fc2_bias"]).session_id
    check(gs.rpc_error(server.set_parameters, frozen, optimizer_state=state), INVALID,
          "fc2_bias/momentum_buffer", "not a trained parameter")
    no_state = server.create_session(g, optimizer=gs.sgd(lr=0.1)).session_id
    check(gs.rpc_error(server.set_parameters, no_state, optimizer_state=state), INVALID,
          "fc2_bias/momentum_buffer", "keeps no state")
    for sid in (plain, frozen, no_state):
        server.close_session(sid)


BAD_OPTIMIZERS = {
    "sgd lr unset": (lambda: gs.spb.Optimizer(sgd=gs.spb.SGD(momentum=0.9)), ["lr"]),
    "sgd lr 0": (lambda: gs.sgd(lr=0.0), ["lr"]),
    "sgd lr negative": (lambda: gs.sgd(lr=-0.1), ["lr", "-0.1"]),
    "sgd momentum negative": (lambda: gs.sgd(lr=0.1, momentum=-0.5), ["momentum"]),
    "nesterov without momentum": (lambda: gs.sgd(lr=0.1, nesterov=True), ["nesterov"]),
    "nesterov with dampening": (lambda: gs.sgd(lr=0.1, momentum=0.9, dampening=0.1,
                                               nesterov=True), ["nesterov", "dampening"]),
    "adam beta1 1": (lambda: gs.adam(beta1=1.0), ["beta1"]),
    "adam beta2 negative": (lambda: gs.adam(beta2=-0.1), ["beta2"]),
    "adam eps negative": (lambda: gs.adam(eps=-1e-8), ["eps"]),
    "adam lr nan": (lambda: gs.adam(lr=float("nan")), ["lr"]),
    "adamw weight decay negative": (lambda: gs.adam(weight_decay=-0.01,
                                                    decoupled_weight_decay=True),
                                    ["weight_decay"]),
    "max_grad_norm negative": (lambda: gs.sgd(lr=0.1, max_grad_norm=-1.0), ["max_grad_norm"]),
    "neither sgd nor adam": (lambda: gs.spb.Optimizer(max_grad_norm=1.0), ["optimizer"]),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIMIZERS))
def test_create_session_refuses_bad_optimizers(server, case):
    make, parts = BAD_OPTIMIZERS[case]
    _, g = models.make("mlp")
    sessions = server.info().sessions
    check(gs.rpc_error(server.create_session, g, optimizer=make()), INVALID, *parts)
    assert server.info().sessions == sessions


BAD_FROZEN = {
    "unknown": (["nope"], ["frozen", "'nope'"]),
    "graph input": (["x"], ["frozen", "'x'"]),
    "node output": (["logits"], ["frozen", "'logits'"]),
    "buffer": (["bn_running_mean"], ["frozen", "'bn_running_mean'"]),
    "twice": (["fc_bias", "fc_bias"], ["frozen", "'fc_bias'", "twice"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FROZEN))
def test_create_session_refuses_bad_frozen(server, case):
    frozen, parts = BAD_FROZEN[case]
    _, g = models.make("cnn")
    check(gs.rpc_error(server.create_session, g, optimizer=gs.adam(), frozen=frozen),
          INVALID, *parts)


def test_create_session_refuses_other_bad_requests(server):
    _, g = models.make("mlp")
    check(gs.rpc_error(server.rpc.CreateSession, gs.spb.CreateSessionRequest(), timeout=30),
          INVALID, "graph")
    check(gs.rpc_error(server.create_session, g, ttl_seconds=10 ** 9), INVALID,
          "ttl_seconds", "--max_session_ttl_seconds")
    broken = gs.graph([gs.node("fc", "Linear", ["x", "W"], ["y"])], inputs=["x"])
    check(gs.rpc_error(server.create_session, broken), INVALID, "'W'")


@pytest.fixture
def mlp_session(server):
    _, g = models.make("mlp")
    sid = server.create_session(g, optimizer=gs.adam()).session_id
    yield sid
    server.close_session(sid)


def feeds():
    return models.batch("mlp", np.random.default_rng(0))


def test_train_step_refusals_change_nothing(server, mlp_session):
    sid = mlp_session
    before = snapshot(server, sid)
    check(gs.rpc_error(server.train_step, sid, feeds(), ""), INVALID, "loss")
    check(gs.rpc_error(server.train_step, sid, feeds(), "nope"), INVALID, "'nope'")
    check(gs.rpc_error(server.train_step, sid, feeds(), "logits"), INVALID, "'logits'")
    w = before["parameters"]["fc1_weight"]
    check(gs.rpc_error(server.train_step, sid, {**feeds(), "fc1_weight": w}, "L"),
          INVALID, "feeds['fc1_weight']")
    check(gs.rpc_error(server.train_step, sid, {"x": feeds()["x"]}, "L"), INVALID, "'labels'")
    check(gs.rpc_error(server.train_step, sid, {**feeds(), "x": np.ones((8, 3), np.float32)},
                       "L"), INVALID, "'fc1'", "x's last dim")
    for lr in (-1.0, float("nan"), float("inf")):
        check(gs.rpc_error(server.train_step, sid, feeds(), "L", learning_rate=lr), INVALID,
              "learning_rate")
    check(gs.rpc_error(server.train_step, sid, feeds(), "L", fetch=["nope"]), INVALID,
          "'nope'")
    gs.assert_same(snapshot(server, sid), before, "after refused TrainSteps")
    assert server.train_step(sid, feeds(), "L").step == 1


def test_train_step_needs_an_optimizer_and_a_trainable_parameter(server):
    _, g = models.make("mlp")
    plain = server.create_session(g).session_id
    check(gs.rpc_error(server.train_step, plain, feeds(), "L"), PRECONDITION, plain,
          "optimizer")
    frozen = server.create_session(g, optimizer=gs.sgd(lr=0.1),
                                   frozen=list(g.parameters)).session_id
    check(gs.rpc_error(server.train_step, frozen, feeds(), "L"), PRECONDITION, frozen,
          "frozen")
    for sid in (plain, frozen):
        assert server.get_parameters(sid).step == 0
        server.close_session(sid)


def test_get_parameters_unknown_name(server, mlp_session):
    check(gs.rpc_error(server.get_parameters, mlp_session, names=["fc1_weight", "nope"]),
          INVALID, "'nope'", mlp_session)


# Backward. The MLP's Forward with a loss, fetching the hidden layer "a".

def forward(server, **kw):
    _, g = models.make("mlp")
    args = dict(fetch=["logits", "a"], loss="L")
    args.update(kw)
    return server.forward(g, feeds(), **args).activation_id


def assert_backward_still_works(server, aid):
    grads = server.backward(aid, from_loss=True)
    assert set(grads) == {"fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"}
    check(gs.rpc_error(server.backward, aid, from_loss=True), NOT_FOUND, aid)


def test_backward_unknown_id(server):
    check(gs.rpc_error(server.backward, UNKNOWN_ID, from_loss=True), NOT_FOUND, UNKNOWN_ID)


def test_backward_twice_without_keep(server):
    aid = forward(server)
    server.backward(aid, from_loss=True)
    check(gs.rpc_error(server.backward, aid, from_loss=True), NOT_FOUND, aid)


def test_backward_with_keep_twice_gives_the_same(server):
    aid = forward(server)
    seeds = {"a": np.ones((8, models.MLP_HIDDEN), np.float32)}
    first = server.backward(aid, from_loss=True, output_gradients=seeds, keep=True)
    second = server.backward(aid, from_loss=True, output_gradients=seeds, keep=True)
    gs.assert_same(first, second, "kept")
    third = server.backward(aid, from_loss=True, output_gradients=seeds)
    gs.assert_same(first, third, "last")
    check(gs.rpc_error(server.backward, aid, from_loss=True), NOT_FOUND, aid)


BAD_BACKWARD = {
    "wrt outside forward's": (dict(from_loss=True, wrt=["fc1_weight", "fc2_weight"]),
                              dict(wrt=["fc1_weight"]), ["wrt 'fc2_weight'"]),
    "wrt not a value": (dict(from_loss=True, wrt=["nope"]), {}, ["wrt 'nope'"]),
    "seed on a value not fetched": (dict(output_gradients={"h": np.ones((8, 32), np.float32)}),
                                    {}, ["output_gradients['h']"]),
    "seed on an unknown value": (dict(output_gradients={"nope": np.ones(1, np.float32)}),
                                 {}, ["output_gradients['nope']"]),
    "seed of the wrong shape": (dict(output_gradients={"a": np.ones((8, 3), np.float32)}),
                                {}, ["output_gradients['a']", "[8, 32]", "[8, 3]"]),
    "seed of int64": (dict(output_gradients={"a": np.ones((8, 32), np.int64)}),
                      {}, ["output_gradients['a']"]),
    "from_loss without a loss": (dict(from_loss=True), dict(loss=""), ["from_loss", "loss"]),
    "nothing to start from": (dict(), {}, ["from_loss", "output_gradients"]),
}


@pytest.mark.parametrize("case", sorted(BAD_BACKWARD))
def test_refused_backward_keeps_the_activation(server, case):
    args, forward_args, parts = BAD_BACKWARD[case]
    aid = forward(server, **forward_args)
    check(gs.rpc_error(server.backward, aid, **args), INVALID, *parts)
    if forward_args.get("loss") == "":
        grads = server.backward(aid, output_gradients={"logits": np.ones((8, 10), np.float32)})
        assert set(grads) == {"fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"}
    elif "wrt" in forward_args:
        assert set(server.backward(aid, from_loss=True)) == {"fc1_weight"}
    else:
        assert_backward_still_works(server, aid)


BAD_FORWARD = {
    "ttl over the most": (dict(ttl_seconds=10 ** 9), ["ttl_seconds",
                                                      "--max_activation_ttl_seconds"]),
    "unknown loss": (dict(loss="nope"), ["'nope'"]),
    "wrt unknown": (dict(wrt=["nope"]), ["'nope'"]),
    "fetch unknown": (dict(fetch=["nope"]), ["'nope'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FORWARD))
def test_forward_refusals(server, case):
    args, parts = BAD_FORWARD[case]
    activations = server.info().activations
    check(gs.rpc_error(forward, server, **args), INVALID, *parts)
    assert server.info().activations == activations


def test_requests_that_do_not_parse_are_invalid(server):
    for method in ("CreateSession", "TrainStep", "SetParameters", "Forward", "Backward",
                   "GetParameters"):
        call = server.channel.unary_unary(f"/gradserve.v1.GradientService/{method}",
                                          request_serializer=lambda b: b,
                                          response_deserializer=lambda b: b)
        check(gs.rpc_error(call, b"\xff\xff\xff", timeout=30), INVALID)


def test_tensor_with_unspecified_dtype_in_set_parameters(server, session):
    before = snapshot(server, session)
    request = gs.spb.SetParametersRequest(session_id=session)
    request.parameters["fc_bias"].CopyFrom(tensor_pb2.Tensor(shape=[5], float_values=[0] * 5))
    error = gs.rpc_error(server.rpc.SetParameters, request, timeout=30)
    check(error, INVALID, "fc_bias")
    gs.assert_same(snapshot(server, session), before, "after")
