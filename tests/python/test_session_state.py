"""What a session holds and who may change it: a checkpoint restored into a
new session continues bit for bit; frozen parameters stay put and keep no
optimizer state; SetParameters replaces what it names; Compute and Forward
on a session report updated running statistics without changing it."""

import grpc
import numpy as np
import pytest
import torch

import gs
import models
from gradserve.v1 import tensor_pb2

torch.set_num_threads(1)

OPTIMIZERS = {
    "adam": lambda: gs.adam(lr=0.01),
    "amsgrad_clip": lambda: gs.adam(lr=0.01, amsgrad=True, max_grad_norm=0.3),
    "sgd_momentum": lambda: gs.sgd(lr=0.1, momentum=0.9, weight_decay=1e-3),
}
STATE_NAMES = {
    "adam": {"exp_avg", "exp_avg_sq"},
    "amsgrad_clip": {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    "sgd_momentum": {"momentum_buffer"},
}


def batches(kind, n, seed=7):
    rng = np.random.default_rng(seed)
    return [models.batch(kind, rng) for _ in range(n)]


def values_of(v):
    return {"parameters": v.parameters, "buffers": v.buffers,
            "optimizer_state": v.optimizer_state, "step": v.step}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_checkpoint_restore_continues_bit_for_bit(quick_server, kind, opt):
    server = quick_server
    # The CNN draws its dropout masks from each step's seed.
    _, g = models.make(kind, seed=1, explicit_mask=False)
    data = batches(kind, 20)
    for feeds in data:
        feeds.pop("mask", None)

    straight = server.create_session(g, optimizer=OPTIMIZERS[opt]()).session_id
    first = server.create_session(g, optimizer=OPTIMIZERS[opt]()).session_id
    for t, feeds in enumerate(data):
        server.train_step(straight, feeds, "L", seed=100 + t)
    for t, feeds in enumerate(data[:10]):
        server.train_step(first, feeds, "L", seed=100 + t)

    checkpoint = server.get_parameters(first, include_optimizer_state=True)
    assert checkpoint.step == 10
    params = set(checkpoint.parameters)
    assert {k.split("/")[0] for k in checkpoint.optimizer_state} == params
    assert {k.split("/")[1] for k in checkpoint.optimizer_state} == STATE_NAMES[opt]
    assert (kind == "cnn") == bool(checkpoint.buffers)
    server.close_session(first)

    restored = server.create_session(g, optimizer=OPTIMIZERS[opt]()).session_id
    info = server.set_parameters(restored, checkpoint.parameters, checkpoint.buffers,
                                 checkpoint.optimizer_state, step=checkpoint.step)
    assert info.step == 10
    gs.assert_same(values_of(server.get_parameters(restored, include_optimizer_state=True)),
                   values_of(checkpoint), "restored")
    for t, feeds in enumerate(data[10:], start=10):
        reply = server.train_step(restored, feeds, "L", seed=100 + t)
    assert reply.step == 20

    a = server.get_parameters(straight, include_optimizer_state=True)
    b = server.get_parameters(restored, include_optimizer_state=True)
    gs.assert_same(values_of(b), values_of(a), "20 steps")
    # and training moved it: the check is not of two untouched sessions.
    initial = gs.arrays(g.parameters)
    assert all(not gs.bitwise_equal(a.parameters[k], initial[k]) for k in initial)
    server.close_session(straight)
    server.close_session(restored)


def test_restore_without_step_is_a_different_trajectory_for_adam(quick_server):
    # Adam's bias correction depends on the step: leaving it out of the
    # restore changes the result, so the test above depends on it.
    server = quick_server
    _, g = models.make("mlp", seed=1)
    data = batches("mlp", 12)
    a = server.create_session(g, optimizer=gs.adam(lr=0.01)).session_id
    for feeds in data[:10]:
        server.train_step(a, feeds, "L")
    checkpoint = server.get_parameters(a, include_optimizer_state=True)
    b = server.create_session(g, optimizer=gs.adam(lr=0.01)).session_id
    server.set_parameters(b, checkpoint.parameters, optimizer_state=checkpoint.optimizer_state)
    assert server.get_parameters(b).step == 0
    for s in (a, b):
        for feeds in data[10:]:
            server.train_step(s, feeds, "L")
    pa, pb = server.get_parameters(a).parameters, server.get_parameters(b).parameters
    assert any(not gs.bitwise_equal(pa[k], pb[k]) for k in pa)
    server.close_session(a)
    server.close_session(b)


@pytest.mark.parametrize("frozen", [["conv_weight", "bn_bias"], ["bn_weight", "bn_bias"]],
                         ids=["conv_and_bn_bias", "batch_norm"])
def test_frozen_parameters_stay_and_keep_no_state(quick_server, frozen):
    server = quick_server
    model, g = models.make("cnn", seed=2)
    for name, p in model.named_parameters():
        p.requires_grad_(models._name(name) not in frozen)
    trained = sorted(n for n in gs.arrays(g.parameters) if n not in frozen)
    session = server.create_session(g, optimizer=gs.adam(lr=0.01, max_grad_norm=0.3),
                                    frozen=frozen)
    assert session.parameter_count == sum(p.numel() for p in model.parameters())
    sid = session.session_id
    by_name = {models._name(n): p for n, p in model.named_parameters()}
    optimizer = torch.optim.Adam([by_name[n] for n in trained], lr=0.01)
    initial = gs.arrays(g.parameters)
    for feeds in batches("cnn", 5):
        reply = server.train_step(sid, feeds, "L")
        optimizer.zero_grad()
        models.torch_loss(model, feeds)[0].backward()
        norm = torch.nn.utils.clip_grad_norm_([by_name[n] for n in trained], 0.3).item()
        optimizer.step()
        assert reply.grad_norm == pytest.approx(norm, rel=1e-5)
    values = server.get_parameters(sid, include_optimizer_state=True)
    for name in frozen:
        gs.assert_same(values.parameters[name], initial[name], name)
    for name in trained:
        assert not gs.bitwise_equal(values.parameters[name], initial[name]), name
        np.testing.assert_allclose(values.parameters[name], by_name[name].detach().numpy(),
                                   rtol=1e-5, atol=1e-6, err_msg=name)
    assert {k.split("/")[0] for k in values.optimizer_state} == set(trained)
    server.close_session(sid)


def test_set_parameters_replaces_only_what_it_names(server):
    _, g = models.make("cnn", seed=3)
    sid = server.create_session(g, optimizer=gs.sgd(lr=0.1, momentum=0.9)).session_id
    server.train_step(sid, models.batch("cnn", np.random.default_rng(1)), "L")
    before = server.get_parameters(sid, include_optimizer_state=True)
    new_w = np.full_like(before.parameters["fc_weight"], 0.5)
    new_mean = np.arange(models.CNN_CHANNELS, dtype=np.float32)
    info = server.set_parameters(sid, parameters={"fc_weight": new_w},
                                 buffers={"bn_running_mean": new_mean})
    assert info.step == 1  # step unset: left alone
    after = server.get_parameters(sid, include_optimizer_state=True)
    expected = values_of(before)
    expected["parameters"] = {**before.parameters, "fc_weight": new_w}
    expected["buffers"] = {**before.buffers, "bn_running_mean": new_mean}
    gs.assert_same(values_of(after), expected, "after")
    assert server.set_parameters(sid, step=0).step == 0
    assert server.get_parameters(sid).step == 0
    # names= selects parameters, buffers and the parameters' state.
    some = server.get_parameters(sid, names=["fc_weight", "bn_running_var"],
                                 include_optimizer_state=True)
    assert set(some.parameters) == {"fc_weight"}
    assert set(some.buffers) == {"bn_running_var"}
    assert set(some.optimizer_state) == {"fc_weight/momentum_buffer"}
    server.close_session(sid)


def test_list_sessions_shows_labels_and_steps(server):
    _, g = models.make("mlp", seed=4)
    sid = server.create_session(g, optimizer=gs.sgd(lr=0.1), label="listed").session_id
    server.train_step(sid, models.batch("mlp", np.random.default_rng(2)), "L")
    listed = {s.session_id: s for s in
              server.rpc.ListSessions(gs.spb.ListSessionsRequest(), timeout=30).sessions}
    assert listed[sid].label == "listed"
    assert listed[sid].step == 1
    assert listed[sid].parameter_count == sum(v.size for v in gs.arrays(g.parameters).values())
    server.close_session(sid)
    listed = server.rpc.ListSessions(gs.spb.ListSessionsRequest(), timeout=30).sessions
    assert sid not in {s.session_id for s in listed}


@pytest.mark.parametrize("rpc", ["compute", "forward"])
def test_compute_and_forward_on_a_session_leave_it_unchanged(server, rpc):
    _, g = models.make("cnn", seed=5, explicit_mask=False)
    sid = server.create_session(g, optimizer=gs.adam(lr=0.01)).session_id
    rng = np.random.default_rng(3)
    feeds = models.batch("cnn", rng)
    feeds.pop("mask")
    server.train_step(sid, feeds, "L", seed=1)
    before = server.get_parameters(sid, include_optimizer_state=True)
    # The same request on a graph carrying the session's current values.
    current = models.cnn_graph(models.make("cnn", seed=5)[0], explicit_mask=False)
    gs.fill(current.parameters, before.parameters)
    gs.fill(current.buffers, before.buffers)
    feeds = models.batch("cnn", rng)
    feeds.pop("mask")
    if rpc == "compute":
        on_session = server.compute(gs.compute_request(sid, feeds, fetch=["logits"], loss="L",
                                                       mode=gs.pb.MODE_TRAIN, seed=9))
        on_graph = server.compute(gs.compute_request(current, feeds, fetch=["logits"],
                                                     loss="L", mode=gs.pb.MODE_TRAIN, seed=9))
        gs.assert_same(on_session.gradients, on_graph.gradients, "gradients")
        got_outputs, got_buffers = on_session.outputs, on_session.buffers
        want_outputs, want_buffers = on_graph.outputs, on_graph.buffers
    else:
        a = server.forward(sid, feeds, fetch=["logits"], loss="L", mode=gs.pb.MODE_TRAIN,
                           seed=9)
        b = server.forward(current, feeds, fetch=["logits"], loss="L", mode=gs.pb.MODE_TRAIN,
                           seed=9)
        got_outputs, got_buffers = gs.arrays(a.outputs), gs.arrays(a.buffers)
        want_outputs, want_buffers = gs.arrays(b.outputs), gs.arrays(b.buffers)
        gs.assert_same(server.backward(a.activation_id, from_loss=True),
                       server.backward(b.activation_id, from_loss=True), "gradients")
    gs.assert_same(got_outputs, want_outputs, "outputs")
    assert set(got_buffers) == {"bn_running_mean", "bn_running_var"}
    gs.assert_same(got_buffers, want_buffers, "buffers")
    for name, value in got_buffers.items():  # updated: not the session's
        assert not gs.bitwise_equal(value, before.buffers[name]), name
    after = server.get_parameters(sid, include_optimizer_state=True)
    gs.assert_same(values_of(after), values_of(before), "session")
    # EVAL uses the running statistics and updates none.
    evaluated = server.compute(gs.compute_request(sid, feeds, fetch=["logits"],
                                                  mode=gs.pb.MODE_EVAL))
    assert not evaluated.buffers
    server.close_session(sid)


def test_compute_on_a_session_sees_the_latest_step(server):
    _, g = models.make("mlp", seed=6)
    sid = server.create_session(g, optimizer=gs.sgd(lr=0.5)).session_id
    rng = np.random.default_rng(4)
    probe = models.batch("mlp", rng)
    before = server.compute(gs.compute_request(sid, probe, fetch=["logits"])).outputs
    server.train_step(sid, models.batch("mlp", rng), "L")
    after = server.compute(gs.compute_request(sid, probe, fetch=["logits"])).outputs
    assert not gs.bitwise_equal(before["logits"], after["logits"])
    current = models.mlp_graph(models.make("mlp", seed=6)[0])
    gs.fill(current.parameters, server.get_parameters(sid).parameters)
    gs.assert_same(after, server.compute(gs.compute_request(current, probe,
                                                            fetch=["logits"])).outputs)
    # Feeds may still override a session's parameter.
    zero = {"fc2_weight": np.zeros((models.MLP_CLASSES, models.MLP_HIDDEN), np.float32)}
    out = server.compute(gs.compute_request(sid, {**probe, **zero}, fetch=["logits"])).outputs
    bias = server.get_parameters(sid, names=["fc2_bias"]).parameters["fc2_bias"]
    gs.assert_same(out["logits"], np.broadcast_to(bias, out["logits"].shape).copy())
    server.close_session(sid)


def test_parameters_the_loss_does_not_reach_are_left_alone(quick_server):
    # As torch.optim skips parameters whose .grad is None: no update, no
    # weight decay, no state, and not in the clipped norm.
    server = quick_server
    model, g = models.make("mlp", seed=7)
    g.nodes.append(gs.node("aux", "Linear", ["x", "aux_weight"], ["aux"]))
    aux = np.ones((3, models.MLP_IN), np.float32)
    g.parameters["aux_weight"].CopyFrom(gs.tensor(aux))
    sid = server.create_session(g, optimizer=gs.sgd(lr=0.1, momentum=0.9, weight_decay=0.1,
                                                    max_grad_norm=0.3)).session_id
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    for feeds in batches("mlp", 3):
        reply = server.train_step(sid, feeds, "L")
        optimizer.zero_grad()
        models.torch_loss(model, feeds)[0].backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.3).item()
        optimizer.step()
        assert reply.grad_norm == pytest.approx(norm, rel=1e-5)
    values = server.get_parameters(sid, include_optimizer_state=True)
    gs.assert_same(values.parameters["aux_weight"], aux, "aux_weight")
    assert not any(k.startswith("aux_weight/") for k in values.optimizer_state)
    for name, want in models.parameters_of(model).items():
        np.testing.assert_allclose(values.parameters[name], want, rtol=1e-5, atol=1e-6)
    server.close_session(sid)


def test_a_held_activation_keeps_the_values_it_was_computed_with(server):
    # Forward on a session, a TrainStep, then Backward: the gradients are
    # those of the values before the step (steps never write in place).
    _, g = models.make("mlp", seed=8)
    sid = server.create_session(g, optimizer=gs.adam(lr=0.05)).session_id
    feeds = models.batch("mlp", np.random.default_rng(8))
    held = server.forward(sid, feeds, loss="L")
    before = server.compute(gs.compute_request(sid, feeds, loss="L"))
    server.train_step(sid, feeds, "L")
    after = server.compute(gs.compute_request(sid, feeds, loss="L"))
    grads = server.backward(held.activation_id, from_loss=True)
    gs.assert_same(grads, before.gradients, "held activation")
    assert not gs.bitwise_equal(after.gradients["fc1_weight"], grads["fc1_weight"])
    server.close_session(sid)


def test_ids_carry_the_route_the_client_asks_for(server):
    _, g = models.make("mlp", seed=9)
    feeds = models.batch("mlp", np.random.default_rng(9))
    route = (("gradserve-route", "shard-7"),)
    sid = server.rpc.CreateSession(gs.spb.CreateSessionRequest(graph=g), metadata=route,
                                   timeout=30).session.session_id
    assert sid.startswith("shard-7.") and len(sid) == len("shard-7.") + 32
    request = gs.pb.ForwardRequest(graph=g, loss="L")
    gs.fill(request.feeds, feeds)
    aid = server.rpc.Forward(request, metadata=route, timeout=30).activation_id
    assert aid.startswith("shard-7.")
    # A session's activations go where the session is.
    assert server.forward(sid, feeds, loss="L").activation_id.startswith("shard-7.")
    for bad in ("bad route!", "x" * 65, "a.b"):
        for call in (lambda md: server.rpc.CreateSession(
                         gs.spb.CreateSessionRequest(graph=g), metadata=md, timeout=30),
                     lambda md: server.rpc.Forward(request, metadata=md, timeout=30)):
            error = gs.rpc_error(call, (("gradserve-route", bad),))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
            assert "route" in error.details(), error.details()
    server.close_session(sid)


def test_describe_on_a_session_is_describe_on_its_graph(server):
    _, g = models.make("cnn", seed=9)
    sid = server.create_session(g).session_id
    shapes = {"x": tensor_pb2.TensorShape(dims=[8, *models.CNN_SHAPE]),
              "labels": tensor_pb2.TensorShape(dims=[8], dtype=tensor_pb2.DATA_TYPE_INT64),
              "mask": tensor_pb2.TensorShape(dims=[8, 64])}
    on_session = server.rpc.Describe(gs.pb.DescribeRequest(session_id=sid, input_shapes=shapes),
                                     timeout=30)
    on_graph = server.rpc.Describe(gs.pb.DescribeRequest(graph=g, input_shapes=shapes),
                                   timeout=30)
    assert on_session == on_graph
    assert on_session.total_parameters == sum(v.size for v in gs.arrays(g.parameters).values())
    server.close_session(sid)
