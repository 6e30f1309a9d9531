"""ComputeStream: replies in request order, each equal to what unary Compute
answers for the same bytes (a bad request's code and message in band, and
the stream goes on); a stream the client cancels leaves the server
healthy; an empty stream ends OK."""

import threading

import grpc
import numpy as np
import pytest

import gs
import models

N = 1000


def raw_unary(server):
    return server.channel.unary_unary("/gradserve.v1.GradientService/Compute",
                                      request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)


def raw_stream(server):
    return server.channel.stream_stream("/gradserve.v1.GradientService/ComputeStream",
                                        request_serializer=lambda b: b,
                                        response_deserializer=gs.pb.ComputeStreamResponse
                                        .FromString)


def kinds(server, session):
    """Distinct requests as bytes, good and bad."""
    rng = np.random.default_rng(0)
    _, mlp = models.make("mlp", seed=1)
    _, cnn = models.make("cnn", seed=2, explicit_mask=False)
    mlp_feeds = models.batch("mlp", rng)
    cnn_feeds = models.batch("cnn", rng)
    cnn_feeds.pop("mask")
    bad_shape = {**mlp_feeds, "x": np.ones((8, 7), np.float32)}
    unknown_op = gs.graph([gs.node("n", "NoSuchOp", ["x"], ["y"])], inputs=["x"])
    cycle = gs.graph([gs.node("a", "ReLU", ["v"], ["u"]), gs.node("b", "ReLU", ["u"], ["v"])])
    requests = {
        "mlp": gs.compute_request(mlp, mlp_feeds, fetch=["logits"], loss="L"),
        "mlp forward": gs.compute_request(mlp, mlp_feeds, fetch=["logits"]),
        "cnn": gs.compute_request(cnn, cnn_feeds, fetch=["logits", "drop_mask"], loss="L",
                                  seed=5),
        "cnn eval": gs.compute_request(cnn, cnn_feeds, loss="L", mode=gs.pb.MODE_EVAL),
        "session": gs.compute_request(session, mlp_feeds, loss="L", wrt=["fc1_weight", "x"]),
        "unknown session": gs.compute_request("nosuch." + "1" * 32, mlp_feeds, loss="L"),
        "wrong feed shape": gs.compute_request(mlp, bad_shape, loss="L"),
        "unknown op": gs.compute_request(unknown_op, {"x": np.ones(3, np.float32)}),
        "cycle": gs.compute_request(cycle),
        "no model": gs.pb.ComputeRequest(),
    }
    raw = {k: r.SerializeToString() for k, r in requests.items()}
    raw["garbage"] = b"\xff\xff\xff\xff"
    return raw


def unary_answer(server, data):
    """(code, message, ComputeResponse or None) from unary Compute."""
    try:
        reply = raw_unary(server)(data, timeout=60)
        return 0, "", gs.pb.ComputeResponse.FromString(reply)
    except grpc.RpcError as e:
        return e.code().value[0], e.details(), None


@pytest.fixture
def session(quick_server):
    server = quick_server
    _, g = models.make("mlp", seed=1)
    sid = server.create_session(g, optimizer=gs.sgd(lr=0.1)).session_id
    yield sid
    server.close_session(sid)


def test_a_thousand_mixed_requests_in_order(quick_server, session):
    server = quick_server
    raw = kinds(server, session)
    expected = {k: unary_answer(server, data) for k, data in raw.items()}
    good = {k for k, (code, _, _) in expected.items() if code == 0}
    assert good == {"mlp", "mlp forward", "cnn", "cnn eval", "session"}
    codes = {k: grpc.StatusCode.INVALID_ARGUMENT.value[0] for k in
             ("wrong feed shape", "cycle", "no model", "garbage")}
    codes.update({"unknown session": grpc.StatusCode.NOT_FOUND.value[0],
                  "unknown op": grpc.StatusCode.UNIMPLEMENTED.value[0]})
    for k, code in codes.items():
        assert expected[k][0] == code, (k, expected[k][:2])
    assert "nosuch." + "1" * 32 in expected["unknown session"][1]
    assert "NoSuchOp" in expected["unknown op"][1]

    names = sorted(raw)
    order = [names[i] for i in np.random.default_rng(1).integers(0, len(names), size=N)]
    replies = list(raw_stream(server)(iter([raw[k] for k in order]), timeout=300))
    assert [r.index for r in replies] == list(range(N))
    for reply, name in zip(replies, order):
        code, message, response = expected[name]
        assert (reply.code, reply.error_message) == (code, message), (reply.index, name)
        if code == 0:
            assert reply.response == response, (reply.index, name)
        else:
            assert not reply.response.outputs and not reply.response.gradients
    assert {n for n in order} == set(names)


def test_empty_stream_ends_ok(server):
    call = raw_stream(server)(iter([]), timeout=30)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


def slow_request():
    # About a hundred milliseconds of compute each.
    rng = np.random.default_rng(2)
    width = 512
    g = gs.graph([gs.node("fc", "Linear", ["x", "W"], ["h"]),
                  gs.node("act", "Tanh", ["h"], ["a"]),
                  gs.node("fc2", "Linear", ["a", "W"], ["y"]),
                  gs.node("loss", "Sum", ["y"], ["L"])], inputs=["x"],
                 parameters={"W": rng.normal(size=(width, width)).astype(np.float32) * 0.05})
    return gs.compute_request(g, {"x": rng.normal(size=(256, width)).astype(np.float32)},
                              loss="L").SerializeToString()


@pytest.mark.parametrize("read_before_cancel", [0, 1, 3])
def test_cancelled_stream_leaves_the_server_healthy(server, read_before_cancel):
    data = slow_request()
    stop = threading.Event()

    def requests():
        for _ in range(50):
            if stop.is_set():
                return
            yield data

    call = raw_stream(server)(requests(), timeout=120)
    got = []
    while len(got) < read_before_cancel:
        got.append(next(call))
    call.cancel()
    stop.set()
    assert call.code() == grpc.StatusCode.CANCELLED
    assert [r.index for r in got] == list(range(len(got)))
    assert all(r.code == 0 for r in got)
    # The server answers, unary and streamed, and lost nothing of its state.
    assert server.alive(), server.output()
    small = kinds(server, "nosuch." + "2" * 32)["mlp"]
    assert unary_answer(server, small)[0] == 0
    replies = list(raw_stream(server)(iter([small] * 5), timeout=60))
    assert [r.code for r in replies] == [0] * 5


def chain_request(tanh_nodes, width, batch):
    """Linear then `tanh_nodes` Tanh nodes, summed: node boundaries as many
    as wanted, the first node as long as wanted."""
    rng = np.random.default_rng(3)
    nodes = [gs.node("fc", "Linear", ["x", "W"], ["h0"])]
    nodes += [gs.node(f"t{i}", "Tanh", [f"h{i}"], [f"h{i + 1}"]) for i in range(tanh_nodes)]
    nodes.append(gs.node("loss", "Sum", [f"h{tanh_nodes}"], ["L"]))
    g = gs.graph(nodes, inputs=["x"],
                 parameters={"W": rng.normal(size=(width, width)).astype(np.float32) * 0.05})
    return gs.compute_request(g, {"x": rng.normal(size=(batch, width)).astype(np.float32)},
                              loss="L").SerializeToString()


def test_stream_ending_while_a_later_item_computes(quick_server):
    # Two workers. After the first reply the client cancels: the second item
    # (many short nodes) stops at once and its reply fails to send, which
    # ends the call, while the third is still inside its one long node. That
    # item must not touch the finished call (under valgrind it read the
    # freed gRPC context, and crashed the server).
    server = quick_server
    quick, many_nodes, long_node = (chain_request(1, 8, 2), chain_request(400, 16, 4),
                                    chain_request(1, 1024, 2048))
    for _ in range(2):
        call = raw_stream(server)(iter([quick, many_nodes, long_node, quick]), timeout=120)
        assert next(call).code == 0
        call.cancel()
        assert call.code() == grpc.StatusCode.CANCELLED
    assert gs.wait_until(lambda: unary_answer(server, quick)[0] == 0, timeout=30)
    assert server.alive(), server.output()
