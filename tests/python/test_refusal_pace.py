"""The pace of the wire check's refusals (--refusal_pace_*): a host whose
requests keep lying about sizes gets its first refusals at once and the rest
held back, with the same status (a ComputeStream's items in band, in order);
a valid call from that host, on the same connection or another, is never held; the access log says paced_ms= and the
metrics count each held refusal; 0 turns it off; bad values stop the server."""

import re
import subprocess

import grpc
import numpy as np
import pytest

import gs
from gradserve.v1 import gradient_service_pb2 as pb
from test_access_log import access_lines, raw
from test_metrics import Metrics, delta

BURST = 3
MAX_MS = 100


def lie(rpc="Compute"):
    """A [8, 16] float tensor declared, 4 bytes given: the wire check's."""
    g = gs.graph([gs.node("s", "Sum", ["x"], ["y"])], inputs=["x"], outputs=["y"])
    cls = pb.ComputeRequest if rpc == "Compute" else pb.ForwardRequest
    request = gs.model_request(cls, g, {"x": np.ones((8, 16), np.float32)})
    request.feeds["x"].data = b"\0\0\0\0"
    return request.SerializeToString()


def honest():
    g = gs.graph([gs.node("s", "Sum", ["x"], ["y"])], inputs=["x"], outputs=["y"])
    return gs.compute_request(g, {"x": np.arange(4, dtype=np.float32)}).SerializeToString()


def refused(call, data):
    with pytest.raises(grpc.RpcError) as e:
        call(data)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
    return e.value.details()


@pytest.fixture(scope="module")
def paced():
    port = gs.free_port()
    # One refusal per 2 s once the burst is spent: every later lie of the
    # test is held (for MAX_MS), however slowly the machine runs it.
    s = gs.Server(f"--metrics_address=127.0.0.1:{port}", "--log_level=info",
                  "--refusal_pace_per_second=0.5", f"--refusal_pace_burst={BURST}",
                  f"--refusal_pace_max_ms={MAX_MS}")
    s.metrics = Metrics(port)
    yield s
    s.close()


def paced_ms(server):
    """paced_ms of each access line that has it."""
    return [float(m.group(1)) for m in re.finditer(r"paced_ms=(\d+\.\d{3})", server.output())]


def test_a_host_that_keeps_lying_is_held_back_with_the_same_status(paced):
    compute = raw(paced.channel, "Compute")
    before = paced.metrics.scrape()
    messages = {refused(compute, lie()) for _ in range(BURST + 1 + 6)}
    after = paced.metrics.scrape()
    # Every refusal says the same, held or not; it names the tensor.
    assert len(messages) == 1 and "'x'" in messages.pop()
    assert delta(before, after, "gradserve_paced_refusals_total", rpc="Compute") == 6
    assert delta(before, after, "gradserve_calls_total", rpc="Compute",
                 code="INVALID_ARGUMENT") == BURST + 1 + 6
    held = paced_ms(paced)
    assert len(held) == 6 and all(0 < ms <= MAX_MS for ms in held), held
    # Held refusals are ordinary access lines with their wait at the end.
    lines = [line for line in paced.output().splitlines() if "paced_ms=" in line]
    assert all("rpc=Compute" in line and "code=INVALID_ARGUMENT" in line for line in lines)


def test_valid_calls_of_that_host_are_never_held(paced):
    compute = raw(paced.channel, "Compute")
    refused(compute, lie())  # the pace is spent: this one is held
    before = paced.metrics.scrape()
    other_channel, _ = paced.connect()
    answers = [compute(honest()), raw(other_channel, "Compute")(honest())]
    after = paced.metrics.scrape()
    other_channel.close()
    assert all(gs.to_numpy(pb.ComputeResponse.FromString(a).outputs["y"]) == 6
               for a in answers)
    assert delta(before, after, "gradserve_paced_refusals_total", rpc="Compute") == 0
    assert delta(before, after, "gradserve_calls_total", rpc="Compute", code="OK") == 2


def test_every_rpc_with_tensors_is_paced_and_a_new_connection_does_not_escape(paced):
    before = paced.metrics.scrape()
    channel, _ = paced.connect()
    refused(raw(channel, "Forward"), lie("Forward"))
    channel.close()
    after = paced.metrics.scrape()
    assert delta(before, after, "gradserve_paced_refusals_total", rpc="Forward") == 1


def test_the_access_line_format_holds_paced_lines(paced):
    # access_lines() refuses any ts= line that its pattern does not match.
    lines = access_lines(paced)
    assert sum(1 for line in lines if line.get("paced_ms")) == len(paced_ms(paced))


def test_a_streams_lies_are_paced_in_band_and_in_order(start_server):
    port = gs.free_port()
    s = start_server(f"--metrics_address=127.0.0.1:{port}", "--log_level=info",
                     "--refusal_pace_per_second=0.5", f"--refusal_pace_burst={BURST}",
                     f"--refusal_pace_max_ms={MAX_MS}")
    stream = s.channel.stream_stream("/gradserve.v1.GradientService/ComputeStream",
                                     request_serializer=lambda b: b,
                                     response_deserializer=pb.ComputeStreamResponse.FromString)
    items = [lie()] * (BURST + 1 + 3) + [honest()]
    replies = list(stream(iter(items), timeout=60))
    assert [r.index for r in replies] == list(range(len(items)))
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [r.code for r in replies] == [invalid] * (len(items) - 1) + [0]
    assert len({r.error_message for r in replies[:-1]}) == 1
    assert gs.to_numpy(replies[-1].response.outputs["y"]) == 6
    m = Metrics(port).scrape()
    assert m.get("gradserve_paced_refusals_total", rpc="ComputeStream") == 3
    # The stream's one access line says how long its items were held.
    [line] = [x for x in access_lines(s) if x["rpc"] == "ComputeStream"]
    assert line["code"] == "OK" and 0 < float(line["paced_ms"]) <= 3 * MAX_MS


def test_zero_turns_pacing_off(start_server):
    port = gs.free_port()
    s = start_server(f"--metrics_address=127.0.0.1:{port}", "--refusal_pace_per_second=0",
                     "--refusal_pace_burst=0")
    compute = raw(s.channel, "Compute")
    for _ in range(20):
        refused(compute, lie())
    m = Metrics(port).scrape()
    assert m.get("gradserve_paced_refusals_total", rpc="Compute") == 0
    assert m.get("gradserve_calls_total", rpc="Compute", code="INVALID_ARGUMENT") == 20


@pytest.mark.parametrize("flag", ["--refusal_pace_per_second=-1", "--refusal_pace_burst=-2",
                                  "--refusal_pace_max_ms=-5"])
def test_negative_values_stop_the_server(flag):
    result = subprocess.run([gs.GRADSERVE, "--address=127.0.0.1:0", flag],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "refusal_pace_per_second, refusal_pace_burst and refusal_pace_max_ms must be >= 0" \
        in result.stderr
