"""Per-tenant quotas over gRPC: two tenants with tokens on one server; alice
has tight quotas of her own (from the tokens file), bob the server's
--tenant_max_* defaults. Alice hits each quota (sessions held; bytes held by
sessions, Forward activations and shared-memory regions; calls in flight)
with RESOURCE_EXHAUSTED naming the quota, the tenant, the limit and the use;
bob is not held back; and what alice held comes back on every path (close,
Backward, expiry, errors, cancelled and timed-out calls)."""

import concurrent.futures
import hashlib

import grpc
import numpy as np
import pytest

import gs
import models
from gradserve.v1 import gradient_service_pb2 as pb
from gradserve.v1 import session_pb2 as spb
from test_security import TokenStub, refused

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
TOKENS = {"alice": "alice-quota-token-" + "a" * 16, "bob": "bob-quota-token-" + "b" * 16}
ALICE_BYTES = 256 << 10
# Alice's own quotas; bob's come from the flags.
QUOTAS = {"alice": f"max_sessions=2 max_bytes={ALICE_BYTES} max_concurrent_calls=2",
          "bob": ""}


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory):
    certs = gs.make_certificates(str(tmp_path_factory.mktemp("certs")))
    tokens = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens.write_text("".join(
        f"{tenant} {hashlib.sha256(TOKENS[tenant].encode()).hexdigest()} {QUOTAS[tenant]}\n"
        for tenant in TOKENS))
    s = gs.Server("--tls_cert=" + certs["server_pem"], "--tls_key=" + certs["server_key"],
                  "--auth_tokens_file=" + str(tokens), "--allow_shared_memory",
                  "--workers=1", "--threads_per_worker=1", "--tenant_max_sessions=5",
                  "--tenant_max_bytes=0", "--tenant_max_concurrent_calls=0",
                  tls=gs.ClientTls(certs["ca_pem"]), token=TOKENS["alice"])
    yield s
    s.close()


class Tenant:
    def __init__(self, server, tenant):
        self.name = tenant
        self.channel, _ = server.connect(token=TOKENS[tenant])
        self.rpc = TokenStub(self.channel, "Bearer " + TOKENS[tenant])

    create_session = gs.Server.create_session
    close_session = gs.Server.close_session
    train_step = gs.Server.train_step
    forward = gs.Server.forward
    backward = gs.Server.backward

    def compute_future(self, request, timeout):
        return self.rpc.rpc.Compute.future(request, timeout=timeout,
                                           metadata=self.rpc.metadata)

    def quota(self):
        return self.rpc.GetServerInfo(pb.GetServerInfoRequest(), timeout=30).tenant_quota

    def idle(self):
        """Holds nothing but this call (which is refused while the tenant's
        calls in flight are at its limit)."""
        try:
            q = self.quota()
        except grpc.RpcError as e:
            if e.code() == EXHAUSTED:
                return False
            raise
        return (q.sessions, q.bytes, q.concurrent_calls) == (0, 0, 1)


@pytest.fixture
def tenants(quota_server):
    alice, bob = Tenant(quota_server, "alice"), Tenant(quota_server, "bob")
    yield alice, bob
    # Every test gives back all it took.
    for t in (alice, bob):
        assert gs.wait_until(t.idle, timeout=10), (t.name, t.quota())
        t.channel.close()


def exhausted(call, *parts):
    e = refused(call, EXHAUSTED)
    for part in parts:
        assert part in e.details(), (part, e.details())
    return e


def test_getserverinfo_shows_each_tenants_limits(tenants):
    alice, bob = tenants
    a, b = alice.quota(), bob.quota()
    assert (a.tenant, a.max_sessions, a.max_bytes, a.max_concurrent_calls) == (
        "alice", 2, ALICE_BYTES, 2)
    assert (b.tenant, b.max_sessions, b.max_bytes, b.max_concurrent_calls) == ("bob", 5, 0, 0)


def test_sessions_quota(tenants):
    alice, bob = tenants
    _, g = models.make("mlp")
    mine = [alice.create_session(g, optimizer=gs.sgd(lr=0.1)).session_id for _ in range(2)]
    exhausted(lambda: alice.create_session(g), "tenant_max_sessions", "tenant 'alice'",
              "holds 2 sessions", "limit 2")
    # Bob has room of his own, up to his limit.
    his = [bob.create_session(g).session_id for _ in range(5)]
    exhausted(lambda: bob.create_session(g), "tenant 'bob'", "limit 5")
    q = alice.quota()
    assert q.sessions == 2 and q.bytes > 0
    # A closed session is given back at once; an expired one too.
    alice.close_session(mine.pop())
    assert alice.quota().sessions == 1
    mine.append(alice.create_session(g, ttl_seconds=1).session_id)
    assert gs.wait_until(lambda: alice.quota().sessions == 1, timeout=5)
    for sid in mine[:1] + his:
        (alice if sid in mine else bob).close_session(sid)


def wide_linear(width):
    """x [N, width] -> Linear(width -> width) -> Sum; W is width^2 floats."""
    rng = np.random.default_rng(1)
    g = gs.graph([gs.node("fc", "Linear", ["x", "W"], ["y"]),
                  gs.node("relu", "ReLU", ["y"], ["h"]),
                  gs.node("sum", "Sum", ["h"], ["L"])],
                 inputs=["x"],
                 parameters={"W": rng.standard_normal((width, width)).astype(np.float32)})
    return g


def test_bytes_quota_counts_sessions_activations_and_regions(tenants):
    alice, bob = tenants
    big = wide_linear(300)  # W: 360000 bytes, over alice's 256 KiB alone
    exhausted(lambda: alice.create_session(big), "CreateSession", "tenant_max_bytes",
              "tenant 'alice'", f"limit {ALICE_BYTES}", "360000 more")
    bob.close_session(bob.create_session(big).session_id)
    # Activations: a Forward whose saved tensors would pass the quota.
    small = wide_linear(16)
    x = np.ones((4096, 16), np.float32)  # 256 KiB in, x and h saved: 512 KiB
    exhausted(lambda: alice.forward(small, {"x": x}, loss="L"), "Forward's activations",
              "tenant_max_bytes", "tenant 'alice'")
    assert alice.quota().bytes == 0
    held = bob.forward(small, {"x": x}, loss="L").activation_id
    bob.backward(held, from_loss=True)
    # Regions: bytes registered count too.
    with gs.SharedMemory(alice.rpc, ALICE_BYTES + 4096, register=False) as region:
        exhausted(region.register, "RegisterSharedMemory", "tenant_max_bytes",
                  "tenant 'alice'")
    with gs.SharedMemory(bob.rpc, ALICE_BYTES + 4096):
        assert bob.quota().bytes == ALICE_BYTES + 4096
    # Shares add up over the three, and each comes back.
    sid = alice.create_session(small, optimizer=gs.sgd(lr=0.1, momentum=0.9)).session_id
    session_bytes = alice.quota().bytes
    assert session_bytes == 2 * 16 * 16 * 4
    activation = alice.forward(small, {"x": x[:64]}, loss="L").activation_id
    assert alice.quota().bytes > session_bytes
    with gs.SharedMemory(alice.rpc, 64 << 10):
        exhausted(lambda: alice.forward(sid, {"x": x[:1800]}, loss="L"), "tenant_max_bytes",
                  "tenant 'alice'")
    alice.backward(activation, from_loss=True)
    assert alice.quota().bytes == session_bytes
    expiring = alice.forward(sid, {"x": x[:64]}, loss="L", ttl_seconds=1).activation_id
    assert expiring and alice.quota().bytes > session_bytes
    assert gs.wait_until(lambda: alice.quota().bytes == session_bytes, timeout=5)
    alice.close_session(sid)


def slow_graph(size=256, matmuls=8):
    """MatMuls on one thread (about a tenth of a second at the defaults): a
    graph and its feeds."""
    rng = np.random.default_rng(2)
    nodes, value = [], "x"
    for i in range(matmuls):
        nodes.append(gs.node(f"mm{i}", "MatMul", [value, "W"], [f"h{i}"]))
        value = f"h{i}"
    nodes.append(gs.node("sum", "Sum", [value], ["L"]))
    w = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
    g = gs.graph(nodes, inputs=["x"], parameters={"W": w})
    return g, {"x": rng.standard_normal((size, size)).astype(np.float32)}


def slow_request():
    g, feeds = slow_graph()
    return gs.compute_request(g, feeds, loss="L")


def burst(tenant, request, n, timeout=60):
    """`n` Computes sent at once; their status codes."""
    futures = [tenant.compute_future(request, timeout) for _ in range(n)]
    codes = []
    for f in futures:
        try:
            f.result()
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            codes.append(e.code())
            if e.code() == EXHAUSTED:
                assert "tenant_max_concurrent_calls" in e.details(), e.details()
                assert "tenant 'alice'" in e.details() and "limit 2" in e.details()
    return codes


def test_concurrent_calls_quota(tenants):
    alice, bob = tenants
    request = slow_request()
    codes = burst(alice, request, 8)
    assert set(codes) <= {grpc.StatusCode.OK, EXHAUSTED}, codes
    assert codes.count(grpc.StatusCode.OK) >= 2 and codes.count(EXHAUSTED) >= 1, codes
    assert burst(bob, request, 8) == [grpc.StatusCode.OK] * 8
    # On a stream, each request queued or computing counts; refused ones are
    # answered in band and the stream goes on.
    replies = list(alice.rpc.ComputeStream(iter([request] * 8), timeout=120))
    assert [r.index for r in replies] == list(range(8))
    assert {r.code for r in replies} <= {0, EXHAUSTED.value[0]}
    assert any(r.code == 0 for r in replies)


def test_cancelled_timed_out_and_failed_calls_give_everything_back(tenants):
    alice, _ = tenants
    request = slow_request()
    futures = [alice.compute_future(request, 0.02) for _ in range(4)]
    futures += [alice.compute_future(request, 60) for _ in range(2)]
    futures[-1].cancel()
    for f in futures:
        try:
            f.result()
        except (grpc.RpcError, grpc.FutureCancelledError):
            pass
    # The server may still be computing a call its client gave up on; it
    # gives it back when it notices (between nodes, or when compiled).
    assert gs.wait_until(alice.idle, timeout=10), alice.quota()
    bad = gs.compute_request(wide_linear(4), {"x": np.ones((3, 5), np.float32)}, loss="L")
    refused(lambda: alice.rpc.Compute(bad, timeout=30), grpc.StatusCode.INVALID_ARGUMENT)
    refused(lambda: alice.rpc.TrainStep(spb.TrainStepRequest(session_id="x." + "0" * 32),
                                        timeout=30), grpc.StatusCode.NOT_FOUND)
    assert gs.wait_until(alice.idle, timeout=10), alice.quota()
