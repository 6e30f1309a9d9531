"""float64 sessions: a session created with float64 parameters (or buffers)
keeps every floating value in float64 (parameters, buffers, optimizer state,
activations, gradients) and trains as torch.optim trains a float64 model: 10
TrainSteps of SGD with momentum and of Adam on the MLP and the CNN match
torch in float64 to 1e-12 relative. GetParameters, TrainStep, Compute and
Forward/Backward on the session answer in float64; SetParameters converts
float32 tensors to float64; --state_dir snapshots keep float64."""

import math
import signal

import numpy as np
import pytest
import torch

import gs
import models
from gradserve.v1 import snapshot_pb2

STEPS = 10
TOLERANCE = 1e-12
FLOAT64 = gs.tensor_pb2.DATA_TYPE_FLOAT64

torch.set_num_threads(1)


def float64_model(kind, seed=3):
    """(torch model in float64, its float64 graph), same initial values."""
    model, g = models.make(kind, seed=seed)
    model = model.double()
    g = models.mlp_graph(model) if kind == "mlp" else models.cnn_graph(model)
    # models' graphs go through gs.tensor, which narrows: send float64.
    for field, values in ((g.parameters, models.parameters_of(model)),
                          (g.buffers, models.buffers_of(model))):
        for name, value in values.items():
            field[name].CopyFrom(gs.tensor(value, float64=True))
    return model, g


def float64_batch(kind, rng):
    feeds = models.batch(kind, rng)
    return {k: v.astype(np.float64) if v.dtype == np.float32 else v
            for k, v in feeds.items()}


def send(feeds):
    """Feeds as Tensors, floats as float64."""
    return {k: gs.tensor(v, float64=True) for k, v in feeds.items()}


def train_step(server, session_id, feeds, fetch=()):
    request = gs.spb.TrainStepRequest(session_id=session_id, loss="L", fetch=list(fetch))
    for name, t in send(feeds).items():
        request.feeds[name].CopyFrom(t)
    return gs.Step(server.rpc.TrainStep(request, timeout=60))


def relative_error(got, expected):
    expected = np.asarray(expected, np.float64)
    scale = max(np.max(np.abs(expected)), 1e-30)
    return float(np.max(np.abs(np.asarray(got, np.float64) - expected)) / scale)


def torch_state(optimizer, by_name):
    """torch's optimizer state as gradserve's keys."""
    state = {}
    for name, p in by_name.items():
        for key, value in optimizer.state[p].items():
            if key != "step":
                state[f"{models._name(name)}/{key}"] = value.numpy()
    return state


OPTIMIZERS = {
    "sgd_momentum": (lambda: gs.sgd(lr=0.1, momentum=0.9),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    "adam": (lambda: gs.adam(lr=0.01),
             lambda p: torch.optim.Adam(p, lr=0.01)),
    "adamw_amsgrad": (lambda: gs.adam(lr=0.01, decoupled_weight_decay=True, amsgrad=True,
                                      weight_decay=0.1),
                      lambda p: torch.optim.AdamW(p, lr=0.01, amsgrad=True,
                                                  weight_decay=0.1)),
}


def train_both(server, kind, name, max_grad_norm=0.0, steps=STEPS):
    """Trains a float64 session and float64 torch side by side; returns the
    worst relative error over every value after every step."""
    make_proto, make_torch = OPTIMIZERS[name]
    proto = make_proto()
    proto.max_grad_norm = max_grad_norm
    model, g = float64_model(kind)
    session = server.create_session(g, optimizer=proto).session_id
    by_name = dict(model.named_parameters())
    names = sorted(by_name, key=models._name)  # gradserve clips in name order
    optimizer = make_torch([by_name[n] for n in names])
    rng = np.random.default_rng(11)
    worst = 0.0
    try:
        for t in range(steps):
            feeds = float64_batch(kind, rng)
            reply = train_step(server, session, feeds, fetch=["logits"])
            optimizer.zero_grad()
            loss, logits = models.torch_loss(model, feeds)
            loss.backward()
            total_norm = torch.nn.utils.clip_grad_norm_(
                [by_name[n] for n in names], max_grad_norm or math.inf).item()
            optimizer.step()

            assert reply.step == t + 1
            assert reply.loss.dtype == np.float64
            assert reply.outputs["logits"].dtype == np.float64
            assert relative_error(reply.loss, loss.item()) <= TOLERANCE
            assert relative_error(reply.outputs["logits"], logits.detach()) <= TOLERANCE
            assert reply.grad_norm == pytest.approx(total_norm, rel=TOLERANCE)
            if max_grad_norm:
                assert reply.grad_norm > max_grad_norm, f"step {t + 1} did not clip"

            values = server.get_parameters(session, include_optimizer_state=True)
            expected = {**models.parameters_of(model), **models.buffers_of(model),
                        **torch_state(optimizer, by_name)}
            got = {**values.parameters, **values.buffers, **values.optimizer_state}
            assert set(got) == set(expected)
            for key, want in expected.items():
                assert got[key].dtype == np.float64, key
                err = relative_error(got[key], want)
                assert err <= TOLERANCE, f"step {t + 1}: {key} off by {err:.3g} relative"
                worst = max(worst, err)
    finally:
        server.close_session(session)
    return worst


SCENARIOS = [("mlp", "sgd_momentum", 0.0), ("mlp", "adam", 0.0),
             ("mlp", "adam", 0.3), ("mlp", "adamw_amsgrad", 0.0),
             ("cnn", "sgd_momentum", 0.0), ("cnn", "adam", 0.3)]


@pytest.mark.parametrize("kind,name,clip", SCENARIOS,
                         ids=[f"{k}-{n}{'-clip' if c else ''}" for k, n, c in SCENARIOS])
def test_float64_session_trains_as_torch_optim_in_float64(server, kind, name, clip):
    worst = train_both(server, kind, name, clip)
    print(f"\nmax relative error {kind} {name}: {worst:.3g}")


def test_a_float32_session_misses_float64s_tolerance(server):
    """The comparison can fail: the same model trained as a float32 session
    is far further from float64 torch than 1e-12."""
    model, g32 = models.make("mlp", seed=3)
    model = model.double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    session = server.create_session(g32, optimizer=gs.sgd(lr=0.1, momentum=0.9)).session_id
    rng = np.random.default_rng(11)
    for _ in range(3):
        feeds = float64_batch("mlp", rng)
        reply = train_step(server, session, feeds)
        assert reply.loss.dtype == np.float32
        models.torch_step(model, optimizer, feeds)
    got = server.get_parameters(session).parameters
    server.close_session(session)
    want = models.parameters_of(model)
    assert all(v.dtype == np.float32 for v in got.values())
    assert max(relative_error(got[k], want[k]) for k in got) > 1e3 * TOLERANCE


def test_every_value_of_a_float64_session_is_float64(server):
    model, g = float64_model("cnn")
    info = server.create_session(g, optimizer=gs.adam(lr=0.01))
    sid = info.session_id
    _, g32 = models.make("cnn", seed=3)
    info32 = server.create_session(g32, optimizer=gs.adam(lr=0.01))
    try:
        # Twice the bytes of the float32 session, optimizer state included.
        assert info.bytes == 2 * info32.bytes
        rng = np.random.default_rng(2)
        feeds = models.batch("cnn", rng)  # float32 feeds: widened
        step = server.train_step(sid, feeds, "L")
        assert step.loss.dtype == np.float64
        values = server.get_parameters(sid, include_optimizer_state=True)
        for group in (values.parameters, values.buffers, values.optimizer_state):
            assert group and all(v.dtype == np.float64 for v in group.values()), group.keys()

        result = server.compute(gs.compute_request(sid, feeds=feeds, fetch=["logits"],
                                                   loss="L"))
        assert result.outputs["logits"].dtype == np.float64
        assert all(v.dtype == np.float64 for v in result.gradients.values())

        forward = server.forward(sid, feeds=feeds, fetch=["logits"], loss="L")
        assert gs.to_numpy(forward.outputs["logits"]).dtype == np.float64
        grads = server.backward(forward.activation_id, from_loss=True)
        assert set(grads) == set(values.parameters)
        for name, g64 in grads.items():
            assert g64.dtype == np.float64, name
            np.testing.assert_array_equal(g64, result.gradients[name], err_msg=name)

        # float32 tensors given to SetParameters are widened, exactly.
        w = np.linspace(-1, 1, values.parameters["fc_weight"].size, dtype=np.float32)
        w = w.reshape(values.parameters["fc_weight"].shape)
        server.set_parameters(sid, parameters={"fc_weight": w})
        got = server.get_parameters(sid, names=["fc_weight"]).parameters["fc_weight"]
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, w.astype(np.float64))
        # float64 values kept as sent, to the last bit.
        w64 = np.full(w.shape, 0.1)
        request = gs.spb.SetParametersRequest(session_id=sid)
        request.parameters["fc_weight"].CopyFrom(gs.tensor(w64, float64=True))
        server.rpc.SetParameters(request, timeout=30)
        got = server.get_parameters(sid, names=["fc_weight"]).parameters["fc_weight"]
        assert gs.bitwise_equal(got, w64)
    finally:
        server.close_session(sid)
        server.close_session(info32.session_id)


def test_one_float64_parameter_makes_the_session_float64(server):
    g = gs.graph([gs.node("fc", "Linear", ["x", "W", "b"], ["y"]),
                  gs.node("loss", "MSELoss", ["y", "t"], ["L"])], inputs=["x", "t"],
                 parameters={"W": np.full((2, 3), 0.5, np.float32)})
    g.parameters["b"].CopyFrom(gs.tensor(np.full(2, 0.1), float64=True))
    sid = server.create_session(g, optimizer=gs.sgd(lr=0.1)).session_id
    try:
        params = server.get_parameters(sid).parameters
        assert {k: v.dtype for k, v in params.items()} == {"W": np.float64, "b": np.float64}
        assert params["b"][0] == 0.1  # not rounded through float32
        x, t = np.ones((1, 3)), np.zeros((1, 2))
        step = train_step_mse(server, sid, x, t)
        want = 0.5 * 3 + 0.1
        assert step.loss == pytest.approx(want * want, rel=1e-15)
    finally:
        server.close_session(sid)


def train_step_mse(server, sid, x, t):
    request = gs.spb.TrainStepRequest(session_id=sid, loss="L")
    request.feeds["x"].CopyFrom(gs.tensor(x, float64=True))
    request.feeds["t"].CopyFrom(gs.tensor(t, float64=True))
    return gs.Step(server.rpc.TrainStep(request, timeout=60))


def test_a_float32_session_stays_float32(server):
    """A session made of float32 values trains in float32 whatever its
    feeds; float64 tensors given to SetParameters are narrowed."""
    g = gs.graph([gs.node("fc", "Linear", ["x", "W"], ["y"]),
                  gs.node("loss", "MSELoss", ["y", "t"], ["L"])], inputs=["x", "t"],
                 parameters={"W": np.full((2, 3), 0.1, np.float32)})
    sid = server.create_session(g, optimizer=gs.sgd(0.1)).session_id
    try:
        step = train_step_mse(server, sid, np.ones((1, 3)), np.zeros((1, 2)))
        assert step.loss.dtype == np.float32
        assert server.get_parameters(sid).parameters["W"].dtype == np.float32
        request = gs.spb.SetParametersRequest(session_id=sid)
        request.parameters["W"].CopyFrom(gs.tensor(np.zeros((2, 3)), float64=True))
        server.rpc.SetParameters(request, timeout=30)
        w = server.get_parameters(sid).parameters["W"]
        assert w.dtype == np.float32 and not w.any()
    finally:
        server.close_session(sid)


def test_float64_optimizer_state_round_trips(server):
    """GetParameters' float64 state, given back to a new session with
    SetParameters, continues the same trajectory bit for bit."""
    _, g = float64_model("mlp")
    rng = np.random.default_rng(4)
    batches = [float64_batch("mlp", rng) for _ in range(4)]
    a = server.create_session(g, optimizer=gs.adam(lr=0.01)).session_id
    b = server.create_session(g, optimizer=gs.adam(lr=0.01)).session_id
    try:
        for feeds in batches[:2]:
            train_step(server, a, feeds)
        saved = server.get_parameters(a, include_optimizer_state=True)
        request = gs.spb.SetParametersRequest(session_id=b, step=saved.step)
        for field, values in ((request.parameters, saved.parameters),
                              (request.optimizer_state, saved.optimizer_state)):
            for name, value in values.items():
                field[name].CopyFrom(gs.tensor(value, float64=True))
        server.rpc.SetParameters(request, timeout=30)
        for feeds in batches[2:]:
            la = train_step(server, a, feeds).loss
            lb = train_step(server, b, feeds).loss
            assert gs.bitwise_equal(la, lb)
        va = server.get_parameters(a, include_optimizer_state=True)
        vb = server.get_parameters(b, include_optimizer_state=True)
        for key in va.optimizer_state:
            assert gs.bitwise_equal(va.optimizer_state[key], vb.optimizer_state[key]), key
    finally:
        server.close_session(a)
        server.close_session(b)


def test_a_float64_session_survives_a_restart_in_float64(tmp_path):
    state_dir = str(tmp_path)
    _, g = float64_model("cnn")
    rng = np.random.default_rng(9)
    batches = [float64_batch("cnn", rng) for _ in range(6)]
    first = gs.Server(f"--state_dir={state_dir}", "--snapshot_seconds=600")
    try:
        sid = first.create_session(g, optimizer=gs.sgd(lr=0.05, momentum=0.9)).session_id
        for feeds in batches[:3]:
            train_step(first, sid, feeds)
        before = first.get_parameters(sid, include_optimizer_state=True)
    finally:
        assert first.stop(signal.SIGTERM) == 0, first.output()
        first.close()
    with open(f"{state_dir}/{sid}.session", "rb") as f:
        snapshot = snapshot_pb2.SessionSnapshot.FromString(f.read())
    assert snapshot.graph.parameters and snapshot.optimizer_state
    for t in list(snapshot.graph.parameters.values()) + list(snapshot.optimizer_state.values()):
        assert t.dtype == FLOAT64

    second = gs.Server(f"--state_dir={state_dir}", "--snapshot_seconds=600")
    try:
        after = second.get_parameters(sid, include_optimizer_state=True)
        assert after.step == 3
        for group in ("parameters", "buffers", "optimizer_state"):
            got, want = getattr(after, group), getattr(before, group)
            assert set(got) == set(want)
            for key in want:
                assert got[key].dtype == np.float64, key
                assert gs.bitwise_equal(got[key], want[key]), key
        resumed = [train_step(second, sid, feeds).loss for feeds in batches[3:]]
        resumed_values = second.get_parameters(sid).parameters
    finally:
        second.close()

    straight = gs.Server()
    try:
        ref = straight.create_session(g, optimizer=gs.sgd(lr=0.05, momentum=0.9)).session_id
        losses = [train_step(straight, ref, feeds).loss for feeds in batches]
        expected = straight.get_parameters(ref).parameters
    finally:
        straight.close()
    for got, want in zip(resumed, losses[3:]):
        assert gs.bitwise_equal(got, want)
    for key, want in expected.items():
        assert gs.bitwise_equal(resumed_values[key], want), key
