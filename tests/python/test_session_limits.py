"""Idle expiry of sessions and activations, and the server's limits on
sessions and held activations: each refusal is RESOURCE_EXHAUSTED naming
the limit, and closing or releasing makes room again."""

import time

import grpc
import numpy as np

import gs
import models

NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def mlp(seed=0):
    return models.make("mlp", seed=seed)[1]


def feeds(seed=0):
    return models.batch("mlp", np.random.default_rng(seed))


def assert_not_found(error, id_):
    assert error.code() == NOT_FOUND, error
    assert id_ in error.details(), error.details()


def test_sessions_and_activations_expire_when_idle(start_server):
    server = start_server("--session_ttl_seconds=1", "--activation_ttl_seconds=1")
    g, batch = mlp(), feeds()
    now_ms = time.time() * 1000
    explicit = server.create_session(g, optimizer=gs.sgd(lr=0.1), ttl_seconds=1)
    by_flag = server.create_session(g, optimizer=gs.sgd(lr=0.1))
    lasting = server.create_session(g, optimizer=gs.sgd(lr=0.1), ttl_seconds=60)
    used = server.create_session(g, optimizer=gs.sgd(lr=0.1), ttl_seconds=1)
    for info, ttl in ((explicit, 1), (by_flag, 1), (lasting, 60)):
        assert abs(info.expires_unix_ms - (now_ms + ttl * 1000)) < 1000, info
    short = server.forward(g, batch, loss="L", ttl_seconds=1)
    default = server.forward(g, batch, loss="L")
    kept = server.forward(g, batch, loss="L", ttl_seconds=60)
    assert abs(short.expires_unix_ms - (now_ms + 1000)) < 1000
    assert abs(kept.expires_unix_ms - (now_ms + 60000)) < 1000
    assert server.info().sessions == 4
    assert server.info().activations == 3

    # `used` is touched more often than its ttl: it stays.
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        server.train_step(used.session_id, batch, "L")
        time.sleep(0.3)

    for info in (explicit, by_flag):
        sid = info.session_id
        assert_not_found(gs.rpc_error(server.train_step, sid, batch, "L"), sid)
        assert_not_found(gs.rpc_error(server.get_parameters, sid), sid)
        assert_not_found(gs.rpc_error(server.compute, gs.compute_request(sid, batch)), sid)
        assert_not_found(gs.rpc_error(server.close_session, sid), sid)
    for reply in (short, default):
        aid = reply.activation_id
        assert_not_found(gs.rpc_error(server.backward, aid, from_loss=True), aid)
    assert server.get_parameters(lasting.session_id).step == 0
    assert server.get_parameters(used.session_id).step >= 5
    assert set(server.backward(kept.activation_id, from_loss=True)) == set(g.parameters)
    # The janitor has dropped the expired ones (within a second).
    assert gs.wait_until(lambda: server.info().sessions == 2, timeout=3)
    assert server.info().activations == 0


def test_max_sessions(start_server):
    server = start_server("--max_sessions=2")
    assert server.info().limits.max_sessions == 2
    g = mlp()
    first = server.create_session(g).session_id
    server.create_session(g, optimizer=gs.adam())
    error = gs.rpc_error(server.create_session, g)
    assert error.code() == EXHAUSTED
    assert "--max_sessions" in error.details() and "2" in error.details(), error.details()
    server.close_session(first)
    third = server.create_session(g, optimizer=gs.sgd(lr=0.1)).session_id
    server.train_step(third, feeds(), "L")
    assert server.info().sessions == 2


def test_max_session_bytes_counts_optimizer_state(start_server):
    g = mlp()
    params = sum(gs.to_numpy(t).nbytes for t in g.parameters.values())
    # Room for two SGD sessions (no state) or one SGD with momentum (one
    # state tensor per parameter), never an Adam one (two).
    server = start_server(f"--max_session_bytes={2 * params + params // 2}")
    assert server.info().limits.max_session_bytes == 2 * params + params // 2
    error = gs.rpc_error(server.create_session, g, optimizer=gs.adam())
    assert error.code() == EXHAUSTED
    assert "--max_session_bytes" in error.details(), error.details()
    assert str(3 * params) in error.details(), error.details()  # what it would hold
    a = server.create_session(g, optimizer=gs.sgd(lr=0.1)).session_id
    b = server.create_session(g, optimizer=gs.sgd(lr=0.1)).session_id
    assert gs.rpc_error(server.create_session, g).code() == EXHAUSTED
    server.close_session(a)
    assert gs.rpc_error(server.create_session, g,
                        optimizer=gs.sgd(lr=0.1, momentum=0.9)).code() == EXHAUSTED
    server.close_session(b)
    c = server.create_session(g, optimizer=gs.sgd(lr=0.1, momentum=0.9)).session_id
    for _ in range(3):
        server.train_step(c, feeds(), "L")
    assert server.get_parameters(c, include_optimizer_state=True).optimizer_state


def wide_graph(width):
    rng = np.random.default_rng(0)
    return gs.graph([gs.node("fc", "Linear", ["x", "W"], ["h"]),
                     gs.node("act", "Tanh", ["h"], ["a"]),
                     gs.node("loss", "Sum", ["a"], ["L"])],
                    inputs=["x"],
                    parameters={"W": rng.normal(size=(width, width)).astype(np.float32)})


def test_max_activation_bytes(start_server):
    # One Forward of this graph holds x (for dW) and tanh's output: about
    # 2 * 64 * 256 * 4 = 128 KiB; the limit lets one be held, not two.
    width, batch = 256, 64
    server = start_server(f"--max_activation_bytes={200 * 1024}")
    assert server.info().limits.max_activation_bytes == 200 * 1024
    g = wide_graph(width)
    x = {"x": np.ones((batch, width), np.float32)}
    held = server.forward(g, x, loss="L")
    assert held.activation_id
    error = gs.rpc_error(server.forward, g, x, loss="L")
    assert error.code() == EXHAUSTED
    assert "--max_activation_bytes" in error.details(), error.details()
    # Compute holds no activations: it still runs.
    assert set(server.compute(gs.compute_request(g, x, loss="L")).gradients) == {"W"}
    # Too large for the limit even alone.
    big = {"x": np.ones((4 * batch, width), np.float32)}
    assert gs.rpc_error(server.forward, g, big, loss="L").code() == EXHAUSTED
    assert set(server.backward(held.activation_id, from_loss=True)) == {"W"}
    # Backward released it: room for another.
    again = server.forward(g, x, loss="L")
    assert server.backward(again.activation_id, from_loss=True, keep=True)
    assert gs.rpc_error(server.forward, g, x, loss="L").code() == EXHAUSTED  # kept: held
    server.backward(again.activation_id, from_loss=True)
    server.backward(server.forward(g, x, loss="L").activation_id, from_loss=True)
    assert server.info().activations == 0
