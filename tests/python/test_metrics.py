"""Prometheus metrics on --metrics_address: a server of its own is called
(good and failing calls, a session, a Forward handle, a stream) and /metrics
is scraped with urllib between calls; the exposition is parsed (format
0.0.4) and each counter must move by exactly what the calls did. Calls go
through raw (bytes in, bytes out) stubs, so the byte counters can be
checked to the byte."""

import re
import subprocess
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

import gs
from gradserve.v1 import session_pb2 as spb

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m, f"bad labels: {text!r}"
        labels[m[1]] = re.sub(r"\\(.)", lambda e: "\n" if e[1] == "n" else e[1], m[2])
        pos = m.end()
    return labels


def parse(text):
    """{(name, ((label, value), ...)): float}, and {family: type}; fails on
    what the format does not allow."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            assert family not in types, f"{family} typed twice"
            types[family] = kind
            continue
        if line.startswith("# HELP ") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels = m[1], parse_labels(m[2] or "")
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        family = family if types.get(family) == "histogram" else name
        assert family in types, f"{name} has no TYPE line before it"
        key = (name, tuple(sorted(labels.items())))
        assert key not in samples, f"{key} twice"
        samples[key] = float(m[3])
    return samples, types


class Scrape:
    """One reading of /metrics."""

    def __init__(self, text):
        self.samples, self.types = parse(text)

    def get(self, name, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def histogram(self, name, **labels):
        """[(le, cumulative count)], sum, count."""
        buckets = sorted((float(dict(k[1])["le"]), v) for k, v in self.samples.items()
                         if k[0] == name + "_bucket"
                         and {a: b for a, b in k[1] if a != "le"} == labels)
        return buckets, self.get(name + "_sum", **labels), self.get(name + "_count", **labels)


class Metrics:
    def __init__(self, port):
        self.port = port
        self.url = f"http://127.0.0.1:{port}/metrics"

    def scrape(self):
        with urllib.request.urlopen(self.url, timeout=10) as reply:
            assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            return Scrape(reply.read().decode())


def delta(before, after, name, **labels):
    return after.get(name, **labels) - before.get(name, **labels)


@pytest.fixture(scope="module")
def metered():
    port = gs.free_port()
    s = gs.Server(f"--metrics_address=127.0.0.1:{port}", "--workers=2",
                  "--threads_per_worker=1")
    s.metrics = Metrics(port)
    yield s
    s.close()


def raw(server, rpc):
    return server.channel.unary_unary(f"/gradserve.v1.GradientService/{rpc}",
                                      request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)


def linear_request(seed, batch=4):
    """Compute of Linear then Sum (the loss): one node of each per pass."""
    rng = np.random.default_rng(seed)
    g = gs.graph([gs.node("fc", "Linear", ["x", "W"], ["h"]),
                  gs.node("loss", "Sum", ["h"], ["L"])], inputs=["x"],
                 parameters={"W": rng.normal(size=(3, 5)).astype(np.float32)})
    return g, gs.compute_request(g, {"x": rng.normal(size=(batch, 5))}, loss="L")


def test_exposition_is_well_formed_and_lists_every_metric(metered):
    m = metered.metrics.scrape()
    expected = {
        "gradserve_calls_total": "counter", "gradserve_call_duration_seconds": "histogram",
        "gradserve_received_bytes_total": "counter", "gradserve_sent_bytes_total": "counter",
        "gradserve_paced_refusals_total": "counter",
        "gradserve_compute_queue_depth": "gauge", "gradserve_compute_workers_busy": "gauge",
        "gradserve_compute_workers": "gauge", "gradserve_sessions": "gauge",
        "gradserve_session_bytes": "gauge", "gradserve_activations": "gauge",
        "gradserve_activation_bytes": "gauge", "gradserve_memory_in_use_bytes": "gauge",
        "gradserve_program_cache_hits_total": "counter",
        "gradserve_program_cache_misses_total": "counter",
        "gradserve_program_cache_evictions_total": "counter",
        "gradserve_program_cache_entries": "gauge", "gradserve_program_cache_bytes": "gauge",
        "gradserve_op_compute_seconds_total": "counter", "gradserve_op_runs_total": "counter",
    }
    assert {k: v for k, v in m.types.items() if k in expected} == expected
    assert m.get("gradserve_compute_workers") == 2
    # Every RPC of the service has its latency histogram and byte counters.
    rpcs = {dict(k[1])["rpc"] for k in m.samples if k[0] == "gradserve_received_bytes_total"}
    assert {"Compute", "ComputeStream", "Forward", "Backward", "CreateSession",
            "TrainStep", "GetServerInfo"} <= rpcs
    assert "metrics" in metered.info().features


def test_other_paths_are_not_found(metered):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(metered.metrics.url.replace("/metrics", "/other"), timeout=10)
    assert e.value.code == 404


def test_calls_latency_bytes_cache_and_op_times_move(metered):
    m = metered.metrics
    before = m.scrape()
    g, request = linear_request(seed=1)
    data = request.SerializeToString()
    replies = [raw(metered, "Compute")(data, timeout=60) for _ in range(2)]
    bad = gs.compute_request(gs.graph([gs.node("n", "NoSuchOp", ["x"], ["y"])], inputs=["x"]),
                             {"x": np.ones(2, np.float32)}).SerializeToString()
    with pytest.raises(grpc.RpcError) as e:
        raw(metered, "Compute")(bad, timeout=60)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    after = m.scrape()

    def moved(name, **labels):
        return delta(before, after, name, **labels)

    assert moved("gradserve_calls_total", rpc="Compute", code="OK") == 2
    assert moved("gradserve_calls_total", rpc="Compute", code="UNIMPLEMENTED") == 1
    assert moved("gradserve_received_bytes_total", rpc="Compute") == 2 * len(data) + len(bad)
    assert moved("gradserve_sent_bytes_total", rpc="Compute") == sum(map(len, replies))
    # A compile, then the cached program; the unknown op's graph misses too
    # (and fails to compile).
    assert moved("gradserve_program_cache_misses_total") == 2
    assert moved("gradserve_program_cache_hits_total") == 1
    assert after.get("gradserve_program_cache_entries") >= 1
    assert after.get("gradserve_program_cache_bytes") > 0
    # Each call runs Linear and Sum forward and backward once.
    for op in ("Linear", "Sum"):
        for direction in ("forward", "backward"):
            labels = {"op": op, "pass": direction}
            assert moved("gradserve_op_runs_total", **labels) == 2, labels
            assert moved("gradserve_op_compute_seconds_total", **labels) > 0, labels
    # The latency histogram: cumulative buckets, +Inf is the count.
    buckets, total, count = after.histogram("gradserve_call_duration_seconds", rpc="Compute")
    _, total_before, count_before = before.histogram("gradserve_call_duration_seconds",
                                                     rpc="Compute")
    assert count - count_before == 3
    assert total > total_before
    assert buckets[-1] == (float("inf"), count)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    assert [le for le, _ in buckets][:3] == [0.0001, 0.00025, 0.0005]


def test_sessions_and_activations_are_counted_while_held(metered):
    m = metered.metrics
    before = m.scrape()
    g, _ = linear_request(seed=2)
    created = spb.CreateSessionRequest(graph=g, optimizer=gs.sgd(0.1)).SerializeToString()
    session = spb.CreateSessionResponse.FromString(
        raw(metered, "CreateSession")(created, timeout=60)).session
    held = m.scrape()
    assert held.get("gradserve_sessions") == 1
    assert held.get("gradserve_session_bytes") >= 3 * 5 * 4  # W
    assert delta(before, held, "gradserve_calls_total", rpc="CreateSession", code="OK") == 1

    forward = metered.forward(g, {"x": np.ones((4, 5), np.float32)}, loss="L")
    held = m.scrape()
    assert held.get("gradserve_activations") == 1
    assert held.get("gradserve_activation_bytes") > 0
    metered.backward(forward.activation_id, from_loss=True)
    metered.close_session(session.session_id)
    with pytest.raises(grpc.RpcError):
        metered.close_session(session.session_id)  # NOT_FOUND now
    after = m.scrape()
    for gauge in ("gradserve_activations", "gradserve_activation_bytes", "gradserve_sessions",
                  "gradserve_session_bytes", "gradserve_memory_in_use_bytes"):
        assert after.get(gauge) == 0, gauge
    for rpc, code in (("Forward", "OK"), ("Backward", "OK"), ("CloseSession", "OK"),
                      ("CloseSession", "NOT_FOUND")):
        assert delta(before, after, "gradserve_calls_total", rpc=rpc, code=code) == 1, rpc


def test_a_stream_counts_once_with_all_its_bytes(metered):
    m = metered.metrics
    before = m.scrape()
    _, request = linear_request(seed=3)
    data = request.SerializeToString()
    stream = metered.channel.stream_stream("/gradserve.v1.GradientService/ComputeStream",
                                           request_serializer=lambda b: b,
                                           response_deserializer=lambda b: b)
    replies = list(stream(iter([data] * 3), timeout=60))
    assert len(replies) == 3
    after = m.scrape()
    assert delta(before, after, "gradserve_calls_total", rpc="ComputeStream", code="OK") == 1
    assert delta(before, after, "gradserve_received_bytes_total",
                 rpc="ComputeStream") == 3 * len(data)
    assert delta(before, after, "gradserve_sent_bytes_total",
                 rpc="ComputeStream") == sum(map(len, replies))


def test_busy_workers_and_queue_depth_follow_the_pool(metered):
    m = metered.metrics
    assert m.scrape().get("gradserve_compute_workers_busy") == 0
    data = gs.slow_compute_request().SerializeToString()
    calls = [threading.Thread(target=raw(metered, "Compute"), args=(data,),
                              kwargs={"timeout": 120}) for _ in range(3)]
    for c in calls:
        c.start()

    def two_run_one_waits():  # two workers
        now = m.scrape()
        return (now.get("gradserve_compute_workers_busy") == 2
                and now.get("gradserve_compute_queue_depth") == 1)

    assert gs.wait_until(two_run_one_waits, timeout=30)
    for c in calls:
        c.join()
    # A worker counts as busy until its task returns, just after the reply
    # went out: the client may read it first.
    assert gs.wait_until(lambda: m.scrape().get("gradserve_compute_workers_busy") == 0,
                         timeout=10)
    assert m.scrape().get("gradserve_compute_queue_depth") == 0


def test_a_metrics_address_in_use_stops_the_server(metered):
    address = f"127.0.0.1:{metered.metrics.port}"
    result = subprocess.run([gs.GRADSERVE, "--address=127.0.0.1:0",
                             "--metrics_address=" + address],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"metrics_address: cannot listen on {address}" in result.stderr
