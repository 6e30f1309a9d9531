"""TLS, mutual TLS and bearer tokens with tenant isolation, over gRPC against
real server processes, with certificates made at test time by the openssl
CLI: results over TLS are those of plaintext; plaintext, untrusting and
uncertified clients are refused; bad files stop the server at start; calls
without a known token are UNAUTHENTICATED (health checks are not); a tenant
cannot see, list, use or close another's sessions, activations or
shared-memory regions: NOT_FOUND, as for ids that do not exist."""

import hashlib
import os
import subprocess

import grpc
import numpy as np
import pytest

import gs
import models
from gradserve.v1 import gradient_service_pb2 as pb
from gradserve.v1 import gradient_service_pb2_grpc as pb_grpc
from gradserve.v1 import session_pb2 as spb

NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
TOKENS = {"alice": "alice-token-" + "a" * 20, "bob": "bob-token-" + "b" * 20}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return gs.make_certificates(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "tokens"
    lines = ["# tenant sha256(token)"]
    lines += [f"{tenant} {hashlib.sha256(token.encode()).hexdigest()}"
              for tenant, token in TOKENS.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def tls_flags(certs, *more):
    return ("--tls_cert=" + certs["server_pem"], "--tls_key=" + certs["server_key"],
            "--workers=2", "--threads_per_worker=1", *more)


@pytest.fixture(scope="module")
def tls_server(certs):
    s = gs.Server(*tls_flags(certs), tls=gs.ClientTls(certs["ca_pem"]))
    yield s
    s.close()


@pytest.fixture(scope="module")
def mtls_server(certs):
    s = gs.Server(*tls_flags(certs, "--tls_client_ca=" + certs["ca_pem"]),
                  tls=gs.ClientTls(certs["ca_pem"], certs["client_pem"], certs["client_key"]))
    yield s
    s.close()


@pytest.fixture(scope="module")
def auth_server(certs, tokens_file):
    s = gs.Server(*tls_flags(certs, "--auth_tokens_file=" + tokens_file,
                             "--allow_shared_memory"),
                  tls=gs.ClientTls(certs["ca_pem"]), token=TOKENS["alice"])
    yield s
    s.close()


def mlp_request():
    _, g = models.make("mlp")
    return gs.compute_request(g, models.batch("mlp", np.random.default_rng(3)), loss="L")


def info_call(rpc):
    return rpc.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)


def refused(call, code):
    e = gs.rpc_error(call)
    assert e.code() == code, f"{e.code()}: {e.details()}"
    return e


# ---------------------------------------------------------------- TLS

def test_results_over_tls_are_those_of_plaintext(server, tls_server):
    request = mlp_request()
    plain = server.compute(request)
    secure = tls_server.compute(request)
    assert set(secure.gradients) == set(plain.gradients) and secure.gradients
    for name in plain.gradients:
        assert gs.bitwise_equal(secure.gradients[name], plain.gradients[name]), name
    assert {"tls"} <= set(tls_server.info().features)
    assert not {"tls", "mutual_tls", "auth"} & set(server.info().features)


def test_plaintext_client_to_a_tls_port_fails(tls_server):
    channel = grpc.insecure_channel(tls_server.address)
    try:
        refused(lambda: info_call(pb_grpc.GradientServiceStub(channel)), UNAVAILABLE)
    finally:
        channel.close()
    assert tls_server.alive() and tls_server.serving()


def test_client_that_does_not_trust_the_server_fails(tls_server, certs):
    channel = grpc.secure_channel(tls_server.address,
                                  gs.ClientTls(certs["rogue_ca_pem"]).credentials())
    try:
        refused(lambda: info_call(pb_grpc.GradientServiceStub(channel)), UNAVAILABLE)
    finally:
        channel.close()


def test_mutual_tls_needs_a_certificate_the_ca_signed(mtls_server, certs):
    assert {"tls", "mutual_tls"} <= set(mtls_server.info().features)
    for client in (gs.ClientTls(certs["ca_pem"]),  # none
                   gs.ClientTls(certs["ca_pem"], certs["rogue_pem"], certs["rogue_key"])):
        channel = grpc.secure_channel(mtls_server.address, client.credentials())
        try:
            refused(lambda: info_call(pb_grpc.GradientServiceStub(channel)), UNAVAILABLE)
        finally:
            channel.close()
    # A certified client on its own connection is served.
    channel, rpc = mtls_server.connect()
    try:
        assert info_call(rpc).version
    finally:
        channel.close()


def start_failure(*flags):
    """The exit code and what gradserve printed when it should not start."""
    run = subprocess.run([gs.GRADSERVE, "--address=127.0.0.1:0", *flags],
                         capture_output=True, text=True, timeout=60)
    return run.returncode, run.stderr


@pytest.mark.parametrize("case", ["key of another certificate", "missing key",
                                  "certificate not PEM", "client CA not PEM",
                                  "key without certificate", "tokens without TLS",
                                  "missing tokens file"])
def test_bad_security_settings_stop_the_server_at_start(certs, tokens_file, tmp_path, case):
    junk = tmp_path / "junk.pem"
    junk.write_text("not PEM\n")
    cert, key = "--tls_cert=" + certs["server_pem"], "--tls_key=" + certs["server_key"]
    flags, message = {
        "key of another certificate": (
            (cert, "--tls_key=" + certs["client_key"]),
            f"tls_key: {certs['client_key']} is not the private key of the certificate"),
        "missing key": ((cert, f"--tls_key={tmp_path}/none.key"),
                        f"tls_key: cannot read {tmp_path}/none.key"),
        "certificate not PEM": ((f"--tls_cert={junk}", key),
                                f"tls_cert: {junk} holds no PEM certificate"),
        "client CA not PEM": ((cert, key, f"--tls_client_ca={junk}"),
                              f"tls_client_ca: {junk} holds no PEM certificate"),
        "key without certificate": ((key,), "tls_cert and tls_key: give both"),
        "tokens without TLS": (("--auth_tokens_file=" + tokens_file,),
                               "auth_tokens_file needs tls_cert and tls_key"),
        "missing tokens file": ((cert, key, f"--auth_tokens_file={tmp_path}/none"),
                                f"auth_tokens_file: cannot read {tmp_path}/none"),
    }[case]
    code, stderr = start_failure(*flags)
    assert code == 1 and message in stderr, (code, stderr)


# ---------------------------------------------------------------- tokens

class TokenStub:
    """A GradientServiceStub whose calls carry `authorization` metadata."""

    def __init__(self, channel, authorization):
        self.rpc = pb_grpc.GradientServiceStub(channel)
        self.metadata = (("authorization", authorization),)

    def __getattr__(self, name):
        method = getattr(self.rpc, name)
        return lambda request, **kw: method(request, metadata=self.metadata, **kw)


class Tenant:
    """gs.Server's call wrappers with a tenant's token on a given channel."""

    def __init__(self, channel, tenant):
        self.rpc = TokenStub(channel, "Bearer " + TOKENS[tenant])

    compute = gs.Server.compute
    create_session = gs.Server.create_session
    close_session = gs.Server.close_session
    train_step = gs.Server.train_step
    get_parameters = gs.Server.get_parameters
    set_parameters = gs.Server.set_parameters
    forward = gs.Server.forward
    backward = gs.Server.backward


@pytest.fixture
def shared_channel(auth_server, certs):
    """One TLS connection without call credentials: each call says its token."""
    channel = grpc.secure_channel(auth_server.address,
                                  gs.ClientTls(certs["ca_pem"]).credentials(),
                                  options=[("grpc.use_local_subchannel_pool", 1)])
    yield channel
    channel.close()


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic " + TOKENS["alice"],
                                           TOKENS["alice"], "Bearer " + TOKENS["alice"] + "x"])
def test_calls_without_a_known_token_are_unauthenticated(auth_server, shared_channel,
                                                         authorization):
    rpc = (pb_grpc.GradientServiceStub(shared_channel) if authorization is None
            else TokenStub(shared_channel, authorization))
    refused(lambda: info_call(rpc), UNAUTHENTICATED)
    refused(lambda: rpc.Compute(mlp_request(), timeout=30), UNAUTHENTICATED)
    refused(lambda: rpc.ListSessions(spb.ListSessionsRequest(), timeout=10), UNAUTHENTICATED)
    # With the token, the same connection is served.
    good = TokenStub(shared_channel, "bearer " + TOKENS["alice"])  # the scheme's case is free
    assert "auth" in info_call(good).features


def test_health_needs_no_token_and_reflection_does(auth_server, shared_channel):
    def raw(method):
        return shared_channel.unary_unary(method, request_serializer=lambda b: b,
                                          response_deserializer=lambda b: b)
    assert raw("/grpc.health.v1.Health/Check")(b"", timeout=10) == b"\x08\x01"
    # ServerReflectionInfo: a list_services request (field 7) on the stream.
    reflect = shared_channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda b: b, response_deserializer=lambda b: b)
    list_services = b"\x3a\x00"
    e = refused(lambda: list(reflect(iter([list_services]), timeout=10)), UNAUTHENTICATED)
    assert "token" in e.details()
    answer = list(reflect(iter([list_services]), timeout=10,
                          metadata=(("authorization", "Bearer " + TOKENS["bob"]),)))
    assert len(answer) == 1 and b"gradserve.v1.GradientService" in answer[0]


def not_found_as_unknown(call, object_id, unknown_id):
    """`call(object_id)` is NOT_FOUND with the message an unknown id gets."""
    e = refused(lambda: call(object_id), NOT_FOUND)
    u = refused(lambda: call(unknown_id), NOT_FOUND)
    assert e.details() == u.details().replace(unknown_id, object_id), (e.details(), u.details())


def analysis(caller, rpc, session_id, feeds):
    """An analysis call on a session (its bad-id path is all that matters)."""
    request = getattr(pb, rpc + "Request")(session_id=session_id, loss="L")
    gs.fill(request.feeds, feeds)
    return getattr(caller.rpc, rpc)(request, timeout=60)


def test_a_tenant_cannot_touch_another_tenants_sessions(shared_channel):
    alice, bob = Tenant(shared_channel, "alice"), Tenant(shared_channel, "bob")
    _, g = models.make("mlp")
    feeds = models.batch("mlp", np.random.default_rng(4))
    sid = alice.create_session(g, optimizer=gs.sgd(lr=0.1), label="alice's").session_id
    bobs = bob.create_session(g, label="bob's").session_id
    try:
        alice.train_step(sid, feeds, "L")
        before = alice.get_parameters(sid)
        listed = {s.session_id for s in bob.rpc.ListSessions(spb.ListSessionsRequest(),
                                                             timeout=10).sessions}
        assert sid not in listed and bobs in listed
        listed = {s.session_id for s in alice.rpc.ListSessions(spb.ListSessionsRequest(),
                                                               timeout=10).sessions}
        assert sid in listed and bobs not in listed
        unknown = gs.route_of(sid) + "." + "0" * 32
        calls = {
            "GetParameters": lambda i: bob.get_parameters(i),
            "SetParameters": lambda i: bob.set_parameters(i, step=7),
            "TrainStep": lambda i: bob.train_step(i, feeds, "L"),
            "Compute": lambda i: bob.compute(gs.compute_request(i, feeds, loss="L")),
            "Describe": lambda i: bob.rpc.Describe(pb.DescribeRequest(session_id=i),
                                                   timeout=30),
            "Forward": lambda i: bob.forward(i, feeds, loss="L"),
            "CloseSession": lambda i: bob.close_session(i),
        }
        for rpc in ("CheckGradients", "HessianVectorProduct", "HessianEigenvalues"):
            calls[rpc] = lambda i, rpc=rpc: analysis(bob, rpc, i, feeds)
        for name, call in calls.items():
            not_found_as_unknown(call, sid, unknown)
        # On ComputeStream, in band: alice's session is not found, bob's is.
        replies = list(bob.rpc.ComputeStream(iter([
            gs.compute_request(sid, feeds, loss="L"),
            gs.compute_request(bobs, feeds, loss="L")]), timeout=60))
        assert replies[0].code == NOT_FOUND.value[0] and sid in replies[0].error_message
        assert replies[1].code == 0 and replies[1].response.gradients
        refused(lambda: list(pb_grpc.GradientServiceStub(shared_channel).ComputeStream(
            iter([gs.compute_request(bobs, feeds, loss="L")]), timeout=30)), UNAUTHENTICATED)
        # Untouched: the same parameters and step, and alice goes on training.
        after = alice.get_parameters(sid)
        assert after.step == before.step == 1
        gs.assert_same(after.parameters, before.parameters, "after bob's calls")
        assert alice.train_step(sid, feeds, "L").step == 2
    finally:
        alice.close_session(sid)
        bob.close_session(bobs)


def test_a_tenant_cannot_backward_another_tenants_activation(shared_channel):
    alice, bob = Tenant(shared_channel, "alice"), Tenant(shared_channel, "bob")
    _, g = models.make("mlp")
    feeds = models.batch("mlp", np.random.default_rng(5))
    activation = alice.forward(g, feeds, loss="L").activation_id
    unknown = gs.route_of(activation) + "." + "0" * 32
    not_found_as_unknown(lambda i: bob.backward(i, from_loss=True), activation, unknown)
    # Still held for alice, with the gradients of a one-shot Compute.
    grads = alice.backward(activation, from_loss=True)
    plain = alice.compute(gs.compute_request(g, feeds, loss="L"))
    for name in g.parameters:
        assert gs.bitwise_equal(grads[name], plain.gradients[name]), name


def scale_request(memory, x):
    g = gs.graph([gs.node("s", "Scale", ["x"], ["y"], factor=3.0)], inputs=["x"])
    request = gs.compute_request(g, fetch=["y"])
    request.feeds["x"].CopyFrom(memory.put(x))
    request.output_placement["y"].CopyFrom(memory.place(x.shape))
    return request


def test_a_tenant_cannot_use_another_tenants_region(shared_channel):
    """Same connection, same region name: the regions are each tenant's."""
    alice, bob = Tenant(shared_channel, "alice"), Tenant(shared_channel, "bob")
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    with gs.SharedMemory(alice.rpc, 1 << 16) as mine:
        e = refused(lambda: bob.rpc.Compute(scale_request(mine, x), timeout=30), NOT_FOUND)
        assert f"region '{mine.region}'" in e.details()
        refused(lambda: bob.rpc.UnregisterSharedMemory(
            pb.UnregisterSharedMemoryRequest(region=mine.region), timeout=10), NOT_FOUND)
        # Bob may hold a region of that name; each sees its own file.
        with gs.SharedMemory(bob.rpc, 1 << 16, region=mine.region) as his:
            reply = bob.rpc.Compute(scale_request(his, 2 * x), timeout=30)
            np.testing.assert_array_equal(his.read(reply.outputs["y"]), 6 * x)
        reply = alice.rpc.Compute(scale_request(mine, x), timeout=30)
        np.testing.assert_array_equal(mine.read(reply.outputs["y"]), 3 * x)


# ---------------------------------------------------------------- gradctl

def gradctl(server, *args, env=None):
    """gradctl with `env` (by default: this process's, without a token)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "GRADSERVE_TOKEN"}
    return subprocess.run([gs.GRADCTL, f"--server={server.address}", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_gradctl_with_tls_and_a_token(auth_server, certs, tmp_path):
    bob = Tenant(grpc.secure_channel(auth_server.address,
                                     gs.ClientTls(certs["ca_pem"]).credentials()), "bob")
    _, g = models.make("mlp")
    bobs = bob.create_session(g, label="bobs-session").session_id
    token_file = tmp_path / "token"
    token_file.write_text(TOKENS["bob"] + "\n")
    tls = ["--tls_ca=" + certs["ca_pem"]]
    try:
        run = gradctl(auth_server, *tls, f"--token_file={token_file}", "sessions", "list")
        assert run.returncode == 0, run.stderr
        assert bobs in run.stdout and "bobs-session" in run.stdout
        # The token from the environment: alice does not see bob's session.
        env = {"GRADSERVE_TOKEN": TOKENS["alice"]}
        run = gradctl(auth_server, *tls, "sessions", "list", env=env)
        assert run.returncode == 0 and bobs not in run.stdout, run.stdout + run.stderr
        run = gradctl(auth_server, *tls, "sessions", "close", bobs, env=env)
        assert run.returncode == 1 and "NOT_FOUND" in run.stderr, run.stderr
        assert bob.rpc.ListSessions(spb.ListSessionsRequest(), timeout=10).sessions
    finally:
        bob.close_session(bobs)
    run = gradctl(auth_server, *tls, "info", env={})
    assert run.returncode == 1 and "UNAUTHENTICATED" in run.stderr, run.stderr
    run = gradctl(auth_server, *tls, "info", env={"GRADSERVE_TOKEN": "wrong"})
    assert run.returncode == 1 and "unknown token" in run.stderr, run.stderr
    # Health needs no token.
    run = gradctl(auth_server, *tls, "health", env={})
    assert run.returncode == 0 and "SERVING" in run.stdout, run.stdout + run.stderr


def test_gradctl_tls_failures(tls_server, mtls_server, certs, tmp_path):
    run = gradctl(tls_server, "--timeout=5", "info")  # plaintext
    assert run.returncode == 1 and "UNAVAILABLE" in run.stderr, run.stderr
    run = gradctl(tls_server, "--timeout=5", "--tls_ca=" + certs["rogue_ca_pem"], "info")
    assert run.returncode == 1 and "UNAVAILABLE" in run.stderr, run.stderr
    run = gradctl(tls_server, "--tls_ca=" + certs["ca_pem"], "info")
    assert run.returncode == 0 and "tls" in run.stdout, run.stdout + run.stderr
    # Mutual TLS: with the CA's client certificate only.
    tls = ["--tls_ca=" + certs["ca_pem"]]
    run = gradctl(mtls_server, "--timeout=5", *tls, "info")
    assert run.returncode == 1 and "UNAVAILABLE" in run.stderr, run.stderr
    run = gradctl(mtls_server, *tls, "--tls_cert=" + certs["client_pem"],
                  "--tls_key=" + certs["client_key"], "info")
    assert run.returncode == 0 and "mutual_tls" in run.stdout, run.stdout + run.stderr
    # Usage errors: a token over plaintext, half a certificate, a missing file.
    token_file = tmp_path / "token"
    token_file.write_text("t\n")
    for args, message in ((["--token_file", str(token_file)], "a token needs TLS"),
                          (tls + ["--tls_cert=" + certs["client_pem"]],
                           "needs its private key"),
                          (["--tls_ca=/nonexistent.pem"], "--tls_ca: /nonexistent.pem")):
        run = gradctl(tls_server, *args, "info")
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)
