"""Sessions that survive restarts: --state_dir snapshots, SIGTERM and kill -9,
restored ids continuing bit for bit."""

import glob
import os
import signal
import time

import grpc
import numpy as np
import pytest

import gs
from gradserve.v1 import gradient_service_pb2 as pb
from gradserve.v1 import session_pb2
from gradserve.v1 import snapshot_pb2

# x [N, 4] -> Linear 8 -> BatchNorm (running statistics are buffers) -> ReLU
# -> Linear 3 -> cross-entropy with labels [N].
_rng = np.random.default_rng(7)
GRAPH = gs.graph(
    [gs.node("fc1", "Linear", ["x", "W1", "b1"], ["h"]),
     gs.node("bn", "BatchNorm", ["h", "g", "beta", "mean", "var"], ["hn"]),
     gs.node("act", "ReLU", ["hn"], ["a"]),
     gs.node("fc2", "Linear", ["a", "W2", "b2"], ["logits"]),
     gs.node("loss", "CrossEntropyLoss", ["logits", "labels"], ["L"])],
    inputs=["x", "labels"],
    parameters={"W1": _rng.normal(size=(8, 4)), "b1": _rng.normal(size=8),
                "g": np.ones(8), "beta": np.zeros(8),
                "W2": _rng.normal(size=(3, 8)), "b2": _rng.normal(size=3)},
    buffers={"mean": np.zeros(8), "var": np.ones(8)},
    outputs=["L"])


def create(server, label="persist", optimizer=None, frozen=()):
    optimizer = optimizer or session_pb2.Optimizer(
        adam=session_pb2.Adam(lr=0.01), max_grad_norm=1.0)
    reply = server.rpc.CreateSession(session_pb2.CreateSessionRequest(
        graph=GRAPH, optimizer=optimizer, frozen=list(frozen), label=label),
        timeout=30)
    return reply.session.session_id


def step(server, session_id, i):
    """The i-th TrainStep: its batch depends on i only."""
    rng = np.random.default_rng(100 + i)
    req = session_pb2.TrainStepRequest(session_id=session_id, loss="L")
    req.feeds["x"].CopyFrom(gs.tensor(rng.normal(size=(16, 4))))
    req.feeds["labels"].CopyFrom(gs.tensor(rng.integers(0, 3, size=16)))
    reply = server.rpc.TrainStep(req, timeout=30)
    return reply.loss.data, reply.step


def state(server, session_id):
    """Every tensor of the session as raw bytes (bitwise comparison), and its
    step."""
    r = server.rpc.GetParameters(session_pb2.GetParametersRequest(
        session_id=session_id, include_optimizer_state=True), timeout=30)
    tensors = {}
    for kind in ("parameters", "buffers", "optimizer_state"):
        for name, t in getattr(r, kind).items():
            tensors[f"{kind}/{name}"] = (tuple(t.shape), t.data)
    return tensors, r.step


def file_of(state_dir, session_id):
    return os.path.join(state_dir, session_id + ".session")


def snapshot_in(path):
    """The SessionSnapshot in a state file (an empty one while there is no
    file)."""
    try:
        with open(path, "rb") as f:
            return snapshot_pb2.SessionSnapshot.FromString(f.read())
    except FileNotFoundError:
        return snapshot_pb2.SessionSnapshot()


def features(server):
    return list(server.rpc.GetServerInfo(pb.GetServerInfoRequest(),
                                         timeout=10).features)


def leftovers(state_dir):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(state_dir, "*"))
                  if not p.endswith(".session") and not p.endswith("LOCK"))


def test_sigterm_then_restart_continues_bit_for_bit(tmp_path):
    state_dir = str(tmp_path)
    # No periodic snapshot comes before SIGTERM: it alone writes the file.
    first = gs.Server(f"--state_dir={state_dir}", "--snapshot_seconds=600")
    try:
        assert "persistence" in features(first)
        sid = create(first)
        losses = [step(first, sid, i)[0] for i in range(5)]
        before = state(first, sid)
        assert before[1] == 5
        assert not os.path.exists(file_of(state_dir, sid))
    finally:
        assert first.stop(signal.SIGTERM) == 0, first.output()
        first.close()
    assert snapshot_in(file_of(state_dir, sid)).step == 5

    second = gs.Server(f"--state_dir={state_dir}", "--snapshot_seconds=600")
    try:
        assert state(second, sid) == before
        for i in range(5, 10):
            loss, n = step(second, sid, i)
            losses.append(loss)
            assert n == i + 1
        resumed = state(second, sid)
    finally:
        second.close()

    straight = gs.Server()
    try:
        assert "persistence" not in features(straight)
        ref = create(straight)
        ref_losses = [step(straight, ref, i)[0] for i in range(10)]
        expected = state(straight, ref)
    finally:
        straight.close()
    assert losses == ref_losses
    assert resumed == expected


def test_kill_9_loses_only_the_steps_after_the_last_snapshot(tmp_path):
    state_dir = str(tmp_path)
    server = gs.Server(f"--state_dir={state_dir}", "--snapshot_seconds=2")
    try:
        sid = create(server)
        for i in range(3):
            step(server, sid, i)
        path = file_of(state_dir, sid)
        assert gs.wait_until(lambda: snapshot_in(path).step == 3, timeout=10)
        at_snapshot = state(server, sid)
        # Right after a snapshot: the next one is two seconds away.
        for i in range(3, 5):
            step(server, sid, i)
        assert state(server, sid)[1] == 5
    finally:
        server.stop(signal.SIGKILL)
        server.close()
    assert snapshot_in(path).step == 3

    restarted = gs.Server(f"--state_dir={state_dir}", "--snapshot_seconds=2")
    try:
        assert state(restarted, sid) == at_snapshot
        # It goes on from step 3: the lost steps again give step 4 and 5.
        assert step(restarted, sid, 3)[1] == 4
    finally:
        restarted.close()
    assert leftovers(state_dir) == []


def test_a_closed_session_does_not_come_back(tmp_path):
    state_dir = str(tmp_path)
    server = gs.Server(f"--state_dir={state_dir}", "--snapshot_seconds=0.2")
    try:
        closed, kept = create(server, "closed"), create(server, "kept")
        for sid in (closed, kept):
            step(server, sid, 0)
        assert gs.wait_until(lambda: all(
            snapshot_in(file_of(state_dir, s)).step == 1 for s in (closed, kept)))
        server.rpc.CloseSession(session_pb2.CloseSessionRequest(session_id=closed),
                                timeout=10)
        assert not os.path.exists(file_of(state_dir, closed))
        time.sleep(0.6)  # a few snapshots later
        assert not os.path.exists(file_of(state_dir, closed))
    finally:
        server.stop(signal.SIGKILL)
        server.close()

    restarted = gs.Server(f"--state_dir={state_dir}")
    try:
        with pytest.raises(grpc.RpcError) as error:
            state(restarted, closed)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        assert closed in error.value.details()
        assert state(restarted, kept)[1] == 1
    finally:
        restarted.close()
    assert not os.path.exists(file_of(state_dir, closed))


def test_many_sessions_restore_and_a_bad_file_is_set_aside(tmp_path):
    state_dir = str(tmp_path)
    server = gs.Server(f"--state_dir={state_dir}", "--snapshot_seconds=600")
    sessions = {}
    try:
        sgd = session_pb2.Optimizer(sgd=session_pb2.SGD(lr=0.1, momentum=0.9))
        for k in range(20):
            sid = create(server, label=f"s{k}", optimizer=sgd if k % 2 else None,
                         frozen=["W1", "b1"] if k % 4 == 1 else ())
            for i in range(k % 3 if k % 2 else 0):
                step(server, sid, i)
            sessions[sid] = state(server, sid)
    finally:
        assert server.stop(signal.SIGTERM) == 0
        server.close()
    # A torn temporary file (a crash before its rename) and a damaged file.
    with open(os.path.join(state_dir, "x.1234.session.tmp"), "wb") as f:
        f.write(b"\x0a\x05half")
    with open(os.path.join(state_dir, "x.5678.session"), "wb") as f:
        f.write(b"not a snapshot")

    started = time.time()
    restarted = gs.Server(f"--state_dir={state_dir}")
    try:
        listed = restarted.rpc.ListSessions(session_pb2.ListSessionsRequest(),
                                            timeout=10).sessions
        assert sorted(s.session_id for s in listed) == sorted(sessions)
        for info in listed:
            assert info.label == f"s{list(sessions).index(info.session_id)}"
            # Expiry restarts from the restore: a whole TTL from now.
            assert info.expires_unix_ms >= (started + 3600 - 5) * 1000
        for sid, expected in sessions.items():
            assert state(restarted, sid) == expected
    finally:
        restarted.close()
    assert leftovers(state_dir) == ["x.5678.session.corrupt"]
