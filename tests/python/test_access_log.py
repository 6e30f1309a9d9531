"""The access log: one key=value line on stderr per finished call of
gradserve.v1.GradientService, with the RPC, peer, tenant, status code,
bytes in and out and milliseconds, at --log_level (info: every call;
warning, the default: overload and server failures; error: failures only).
It never holds tokens (a TLS server with tokens is called with good and
wrong ones, and its whole output is searched for them) nor tensor values."""

import hashlib
import re
import subprocess

import grpc
import numpy as np
import pytest

import gs

TOKEN = "s3cret-token-" + "q" * 24
WRONG = "wr0ng-token-" + "z" * 24
LINE = re.compile(r"^ts=\S+Z level=(error|warning|info) rpc=(\w+) peer=(\S+) "
                  r"tenant=(\S+) code=([A-Z_]+) bytes_in=(\d+) bytes_out=(\d+) "
                  r"ms=(\d+\.\d{3})(?: paced_ms=(\d+\.\d{3}))?$")


def access_lines(server):
    """The access lines so far, parsed: every line that starts with ts=
    must match."""
    lines = []
    for line in server.output().splitlines():
        if line.startswith("ts="):
            m = LINE.match(line)
            assert m, f"malformed access line: {line!r}"
            lines.append(dict(zip(("level", "rpc", "peer", "tenant", "code", "bytes_in",
                                   "bytes_out", "ms", "paced_ms"), m.groups())))
    return lines


def raw(channel, rpc, metadata=None):
    call = channel.unary_unary(f"/gradserve.v1.GradientService/{rpc}",
                               request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    return lambda data: call(data, timeout=60, metadata=metadata)


def small_compute(value):
    g = gs.graph([gs.node("s", "Sum", ["x"], ["y"])], inputs=["x"], outputs=["y"])
    return gs.compute_request(g, {"x": np.full((3,), value, np.float32)}).SerializeToString()


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    directory = tmp_path_factory.mktemp("log")
    certs = gs.make_certificates(str(directory))
    tokens = directory / "tokens"
    tokens.write_text(f"team-a {hashlib.sha256(TOKEN.encode()).hexdigest()}\n")
    s = gs.Server("--tls_cert=" + certs["server_pem"], "--tls_key=" + certs["server_key"],
                  "--auth_tokens_file=" + str(tokens), "--log_level=info",
                  "--workers=1", "--threads_per_worker=1",
                  tls=gs.ClientTls(certs["ca_pem"]), token=TOKEN)
    s.certs = certs
    yield s
    s.close()


def test_a_line_per_call_with_its_code_and_never_a_token(logged):
    before = len(access_lines(logged))
    # A value no log may show, in the tensor's bytes and as text.
    secret = 1234.5678
    ok = small_compute(secret)
    reply = raw(logged.channel, "Compute")(ok)
    bad = gs.compute_request(gs.graph([gs.node("n", "NoSuchOp", ["x"], ["y"])],
                                      inputs=["x"])).SerializeToString()
    with pytest.raises(grpc.RpcError) as e:
        raw(logged.channel, "Compute")(bad)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    info = raw(logged.channel, "GetServerInfo")(b"")
    # A wrong token on a connection without call credentials.
    channel = grpc.secure_channel(logged.address,
                                  gs.ClientTls(logged.certs["ca_pem"]).credentials())
    with pytest.raises(grpc.RpcError) as e:
        raw(channel, "Compute", (("authorization", "Bearer " + WRONG),))(ok)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()
    assert logged.serving()  # health checks are not logged

    lines = access_lines(logged)[before:]
    assert [(l["rpc"], l["code"], l["level"]) for l in lines] == [
        ("Compute", "OK", "info"), ("Compute", "UNIMPLEMENTED", "info"),
        ("GetServerInfo", "OK", "info")], lines
    assert [l["tenant"] for l in lines] == ["team-a", "team-a", "team-a"]
    assert (int(lines[0]["bytes_in"]), int(lines[0]["bytes_out"])) == (len(ok), len(reply))
    assert int(lines[2]["bytes_out"]) == len(info)
    assert all(l["peer"].startswith("ipv4:127.0.0.1:") for l in lines)
    output = logged.output()
    assert TOKEN not in output and WRONG not in output
    assert hashlib.sha256(TOKEN.encode()).hexdigest() not in output
    assert str(secret) not in output and np.float32(secret).tobytes().hex() not in output


def test_a_stream_is_one_line_when_it_ends(logged):
    before = len(access_lines(logged))
    stream = logged.channel.stream_stream("/gradserve.v1.GradientService/ComputeStream",
                                          request_serializer=lambda b: b,
                                          response_deserializer=lambda b: b)
    data = small_compute(1.0)
    replies = list(stream(iter([data, data]), timeout=60))
    lines = access_lines(logged)[before:]
    assert [(l["rpc"], l["code"]) for l in lines] == [("ComputeStream", "OK")]
    assert int(lines[0]["bytes_in"]) == 2 * len(data)
    assert int(lines[0]["bytes_out"]) == sum(map(len, replies))


def test_the_default_level_logs_overload_not_every_call(start_server):
    server = start_server("--max_inflight_bytes=4096")
    raw(server.channel, "Compute")(small_compute(1.0))  # not logged
    g = gs.graph([gs.node("s", "Sum", ["x"], ["y"])], inputs=["x"], outputs=["y"])
    over = gs.compute_request(g, {"x": np.ones((4096,), np.float32)}).SerializeToString()
    with pytest.raises(grpc.RpcError) as e:
        raw(server.channel, "Compute")(over)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    lines = access_lines(server)
    assert [(l["rpc"], l["code"], l["level"]) for l in lines] == [
        ("Compute", "RESOURCE_EXHAUSTED", "warning")]
    assert lines[0]["tenant"] == '""'


def test_error_level_and_bad_levels(start_server):
    server = start_server("--max_inflight_bytes=4096", "--log_level=error")
    g = gs.graph([gs.node("s", "Sum", ["x"], ["y"])], inputs=["x"], outputs=["y"])
    over = gs.compute_request(g, {"x": np.ones((4096,), np.float32)}).SerializeToString()
    with pytest.raises(grpc.RpcError):
        raw(server.channel, "Compute")(over)
    assert access_lines(server) == []
    result = subprocess.run([gs.GRADSERVE, "--address=127.0.0.1:0", "--log_level=verbose"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "log_level: 'verbose' is not one of error, warning, info" in result.stderr
