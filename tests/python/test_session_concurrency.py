"""Steps on one session apply one at a time, in arrival order, none lost;
different sessions train in parallel and do not disturb each other."""

import threading
import time

import numpy as np

import gs
import models

CLIENTS, STEPS_EACH = 4, 25


def run_threads(targets):
    errors = []

    def guarded(target):
        try:
            target()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def concurrent_steps(server, session, data):
    """Each client sends its share of `data`; returns {step number: (batch
    index, reply)} from the replies."""
    replies = {}
    lock = threading.Lock()

    def client(c):
        for i in range(c, len(data), CLIENTS):
            reply = server.train_step(session, data[i], "L")
            with lock:
                assert reply.step not in replies, f"step {reply.step} given twice"
                replies[reply.step] = (i, reply)

    run_threads([lambda c=c: client(c) for c in range(CLIENTS)])
    return replies


def sequential_reference(server, g, optimizer, data, order):
    session = server.create_session(g, optimizer=optimizer).session_id
    losses = [server.train_step(session, data[i], "L").loss for i in order]
    values = server.get_parameters(session, include_optimizer_state=True)
    server.close_session(session)
    return losses, values


def test_four_clients_on_one_session_equal_sequential_steps(quick_server):
    server = quick_server
    _, g = models.make("mlp", seed=1)
    rng = np.random.default_rng(1)
    data = [models.batch("mlp", rng) for _ in range(CLIENTS * STEPS_EACH)]
    optimizer = gs.adam(lr=0.01, max_grad_norm=1.0)
    session = server.create_session(g, optimizer=optimizer).session_id
    replies = concurrent_steps(server, session, data)
    assert sorted(replies) == list(range(1, len(data) + 1))
    values = server.get_parameters(session, include_optimizer_state=True)
    assert values.step == len(data)
    server.close_session(session)

    # The replies' step numbers are the order the server applied the
    # batches in; the same order, one at a time, gives the same bits.
    order = [replies[s][0] for s in sorted(replies)]
    losses, reference = sequential_reference(server, g, optimizer, data, order)
    for s, loss in enumerate(losses, start=1):
        gs.assert_same(replies[s][1].loss, loss, f"loss of step {s}")
    gs.assert_same(values.parameters, reference.parameters, "parameters")
    gs.assert_same(values.optimizer_state, reference.optimizer_state, "optimizer state")
    assert reference.step == values.step


def test_sessions_train_in_parallel_without_interfering(quick_server):
    server = quick_server
    # Session A: a few slow steps (a wide layer), queued at once on its
    # strand. Session B: many quick ones. With two workers, B is never held
    # up behind A's queue: all of B's steps finish before A's last one.
    rng = np.random.default_rng(2)
    wide = 768
    g_a = gs.graph([gs.node("fc1", "Linear", ["x", "W1"], ["h"]),
                    gs.node("act", "Tanh", ["h"], ["a"]),
                    gs.node("fc2", "Linear", ["a", "W2"], ["y"]),
                    gs.node("loss", "MSELoss", ["y", "t"], ["L"])],
                   inputs=["x", "t"],
                   parameters={"W1": rng.normal(size=(wide, wide)).astype(np.float32) * 0.03,
                               "W2": rng.normal(size=(wide, wide)).astype(np.float32) * 0.03})
    data_a = [{"x": rng.normal(size=(384, wide)).astype(np.float32),
               "t": rng.normal(size=(384, wide)).astype(np.float32)} for _ in range(8)]
    _, g_b = models.make("cnn", seed=2)
    data_b = [models.batch("cnn", rng) for _ in range(6)]
    opt_a, opt_b = gs.sgd(lr=0.01, momentum=0.9), gs.adam(lr=0.01)
    a = server.create_session(g_a, optimizer=opt_a).session_id
    b = server.create_session(g_b, optimizer=opt_b).session_id
    server.train_step(a, data_a[0], "L")  # compiled before the clock starts
    server.train_step(b, data_b[0], "L")

    finished = {}
    order_a, order_b = {}, {}

    def step_a(i):
        reply = server.train_step(a, data_a[i], "L", timeout=300)
        order_a[reply.step] = i
        finished.setdefault("a", []).append(time.monotonic())

    def steps_b():
        time.sleep(0.05)  # A's queue is in place
        for i in range(1, len(data_b)):
            order_b[server.train_step(b, data_b[i], "L").step] = i
        finished["b"] = time.monotonic()

    run_threads([lambda i=i: step_a(i) for i in range(1, len(data_a))] + [steps_b])
    assert finished["b"] < max(finished["a"]), "session B waited for session A's steps"

    for session, g, opt, data, order in ((a, g_a, opt_a, data_a, order_a),
                                         (b, g_b, opt_b, data_b, order_b)):
        values = server.get_parameters(session, include_optimizer_state=True)
        assert values.step == len(data)
        server.close_session(session)
        applied = [0] + [order[s] for s in sorted(order)]
        _, reference = sequential_reference(server, g, opt, data, applied)
        gs.assert_same(values.parameters, reference.parameters, "parameters")
        gs.assert_same(values.optimizer_state, reference.optimizer_state, "state")


def test_readers_see_whole_versions_while_steps_apply(quick_server):
    # Compute and GetParameters on a session while TrainSteps publish new
    # versions: every answer is one of the versions the steps produced,
    # never a mix of two.
    server = quick_server
    _, g = models.make("mlp", seed=5)
    rng = np.random.default_rng(5)
    data = [models.batch("mlp", rng) for _ in range(20)]
    probe = models.batch("mlp", rng)
    optimizer = gs.sgd(lr=0.2, momentum=0.9)

    def logits(session):
        request = gs.compute_request(session, probe, fetch=["logits"])
        return server.compute(request).outputs["logits"].tobytes()

    def parameters(session):
        values = server.get_parameters(session).parameters
        return tuple(values[k].tobytes() for k in sorted(values))

    reference = server.create_session(g, optimizer=optimizer).session_id
    versions_logits, versions = [logits(reference)], [parameters(reference)]
    for feeds in data:
        server.train_step(reference, feeds, "L")
        versions_logits.append(logits(reference))
        versions.append(parameters(reference))
    server.close_session(reference)
    assert len(set(versions)) == len(versions)

    session = server.create_session(g, optimizer=optimizer).session_id
    done = threading.Event()
    seen_logits, seen = [], []

    def trainer():
        for feeds in data:
            server.train_step(session, feeds, "L")
        done.set()

    def compute_reader():
        while not done.is_set():
            seen_logits.append(logits(session))

    def parameter_reader():
        while not done.is_set():
            seen.append(parameters(session))

    run_threads([trainer, compute_reader, parameter_reader])
    server.close_session(session)
    assert seen_logits and seen
    assert set(seen_logits) <= set(versions_logits)
    assert set(seen) <= set(versions)
    # They ran during the steps, not only before or after them.
    assert len(set(seen_logits)) >= 2 and len(set(seen)) >= 2
