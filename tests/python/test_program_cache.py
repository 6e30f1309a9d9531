"""The program cache: a request of a structure seen before (other parameter
values) is a hit and computes exactly what a fresh server computes; what
changes the program (shapes, attributes, node names, fetch, loss, wrt, mode)
is a miss; a small cache evicts and stays correct; a cache of 0 bytes
keeps nothing."""

import numpy as np

import gs
import models


def stats(server):
    return server.info().program_cache


def cnn_request(seed, batch=8, **kw):
    """The CNN (seeded dropout, BatchNorm) with the values of torch seed `seed`."""
    _, g = models.make("cnn", seed=seed, explicit_mask=False)
    feeds = models.batch("cnn", np.random.default_rng(seed), n=batch)
    feeds.pop("mask")
    args = dict(fetch=["logits", "drop_mask"], loss="L", seed=3)
    args.update(kw)
    return gs.compute_request(g, feeds, **args)


def assert_results_equal(a, b, what):
    for field in ("outputs", "gradients", "buffers"):
        gs.assert_same(getattr(a, field), getattr(b, field), f"{what}: {field}")


def test_same_structure_with_other_values_is_a_hit(start_server):
    server, fresh = start_server(), start_server()
    server.compute(cnn_request(seed=1))
    before = stats(server)
    assert before.misses == 1 and before.hits == 0 and before.entries == 1
    result = server.compute(cnn_request(seed=2))
    after = stats(server)
    assert after.hits == before.hits + 1
    assert after.misses == before.misses
    assert_results_equal(result, fresh.compute(cnn_request(seed=2)), "hit vs fresh server")
    assert stats(fresh).hits == 0
    # Not the same answer as the cached program's first values: the values bind.
    assert not gs.bitwise_equal(result.outputs["logits"],
                                server.compute(cnn_request(seed=1)).outputs["logits"])


def variants():
    """Requests that each need a program of their own."""
    base = cnn_request(seed=1)
    out = {"base": base}

    def variant(name, change):
        r = gs.pb.ComputeRequest()
        r.CopyFrom(base)
        change(r)
        out[name] = r

    variant("batch", lambda r: r.CopyFrom(cnn_request(seed=1, batch=6)))
    variant("fetch", lambda r: (r.ClearField("fetch"), r.fetch.append("logits")))
    variant("no loss", lambda r: r.ClearField("loss"))
    variant("wrt", lambda r: r.wrt.extend(["fc_weight", "x"]))
    variant("eval", lambda r: setattr(r, "mode", gs.pb.MODE_EVAL))
    variant("seeded", lambda r: r.output_gradients["logits"].CopyFrom(
        gs.tensor(np.ones((8, models.CNN_CLASSES), np.float32))))

    def attribute(r):
        r.graph.nodes[5].attributes["p"].f = 0.5  # the Dropout
    variant("attribute", attribute)

    def rename(r):  # dropout streams are per node name
        r.graph.nodes[5].name = "drop2"
    variant("node name", rename)

    def wider(r):  # another parameter shape, same everything else
        rng = np.random.default_rng(9)
        side = models.CNN_SHAPE[1] // 2
        r.graph.parameters["fc_weight"].CopyFrom(gs.tensor(rng.normal(
            size=(7, models.CNN_CHANNELS * side * side)).astype(np.float32)))
        r.graph.parameters["fc_bias"].CopyFrom(gs.tensor(np.zeros(7, np.float32)))
        labels = np.arange(8, dtype=np.int64) % 7
        r.feeds["labels"].CopyFrom(gs.tensor(labels))
    variant("parameter shape", wider)

    def epsilon(r):
        r.graph.nodes[1].attributes["epsilon"].f = 1e-3  # the BatchNorm
    variant("batch norm epsilon", epsilon)
    return out


def test_what_changes_the_program_is_a_miss_and_every_answer_is_right(start_server):
    cached, uncached = start_server(), start_server("--program_cache_bytes=0")
    requests = variants()
    answers = {name: cached.compute(r) for name, r in requests.items()}
    first = stats(cached)
    assert first.misses == len(requests) and first.hits == 0, first
    for name, r in requests.items():
        assert_results_equal(cached.compute(r), answers[name], f"{name} again")
        assert_results_equal(answers[name], uncached.compute(r), f"{name} vs uncached")
    second = stats(cached)
    assert second.hits == len(requests) and second.misses == len(requests), second
    # The variants really differ.
    logits = {k: v.outputs["logits"].tobytes() for k, v in answers.items()
              if "logits" in v.outputs and k not in ("fetch", "no loss", "wrt", "seeded")}
    assert len(set(logits.values())) == len(logits), sorted(logits)


def test_small_cache_evicts_and_stays_correct(start_server):
    probe, reference = start_server(), start_server("--program_cache_bytes=0")
    a, b = cnn_request(seed=1), cnn_request(seed=1, batch=6)
    probe.compute(a)
    size_a = stats(probe).bytes
    probe.compute(b)
    size_b = stats(probe).bytes - size_a
    assert size_a > 0 and size_b > 0
    small = start_server(f"--program_cache_bytes={max(size_a, size_b) + min(size_a, size_b) // 2}")
    for i in range(4):
        for request in (a, b):
            assert_results_equal(small.compute(request), reference.compute(request),
                                 f"round {i}")
    s = stats(small)
    assert s.entries == 1
    assert s.evictions >= 7 and s.hits == 0 and s.misses == 8, s
    assert s.bytes <= s.capacity_bytes


def test_zero_bytes_caches_nothing(start_server):
    server, fresh = start_server("--program_cache_bytes=0"), start_server()
    request = cnn_request(seed=4)
    results = [server.compute(request) for _ in range(3)]
    s = stats(server)
    assert (s.hits, s.misses, s.entries, s.bytes, s.capacity_bytes) == (0, 3, 0, 0, 0), s
    for r in results:
        assert_results_equal(r, fresh.compute(request), "uncached")


def test_sessions_share_the_cache(start_server):
    server = start_server()
    _, g = models.make("mlp", seed=1)
    sid = server.create_session(g, optimizer=gs.adam()).session_id
    rng = np.random.default_rng(1)
    server.train_step(sid, models.batch("mlp", rng), "L")
    before = stats(server)
    for _ in range(4):
        server.train_step(sid, models.batch("mlp", rng), "L")
    after = stats(server)
    assert after.misses == before.misses and after.hits == before.hits + 4
    # A stateless Compute of the same graph and request shape reuses a
    # session's compiled index key: one more program at most.
    server.compute(gs.compute_request(sid, models.batch("mlp", rng), loss="L"))
    server.compute(gs.compute_request(g, models.batch("mlp", rng), loss="L"))
    assert stats(server).misses <= after.misses + 1


def tiny_request(name="fc1"):
    """The tiny 3-layer MLP (a few hundred operations); `name` names its
    first node (a new name, a new program)."""
    return gs.tiny_compute_request(np.random.default_rng(1), first=name, fetch=["y"])


def test_a_tiny_cached_program_runs_on_grpcs_thread(start_server):
    """A cached program under --inline_compute_flops runs where the call
    arrives, not on the pool: it is served while the only worker is busy and
    the queue takes nothing, and computes what the pool computes, counted
    once in the cache's statistics."""
    server = start_server("--workers=1", "--max_queue=0")
    pooled = start_server("--inline_compute_flops=0")
    server.compute(tiny_request())  # compiled on the pool: now cached

    def send_slow():
        return server.rpc.Compute.future(gs.slow_compute_request(layers=48), timeout=120)

    slow_calls = [send_slow()]
    compiled = []  # probes the pool took (before the slow call had it)

    def worker_busy(probe=iter(range(10**6))):
        # A program not cached yet goes to the pool, which is full while the
        # slow call runs. A slow call already done was refused (a probe had
        # the worker when it came) or ran before any probe: send another.
        if slow_calls[-1].done():
            slow_calls.append(send_slow())
            return False
        try:
            server.rpc.Compute(tiny_request(f"probe{next(probe)}"), timeout=60)
            compiled.append(1)
            return False
        except gs.grpc.RpcError as e:
            assert e.code() == gs.grpc.StatusCode.RESOURCE_EXHAUSTED, e
            return True

    assert gs.wait_until(worker_busy, timeout=30)
    result = gs.Result(server.rpc.Compute(tiny_request(), timeout=60))
    slow = slow_calls[-1]
    assert not slow.done(), "the slow call ended first: nothing was shown"
    slow.result()
    ran = sum(1 for call in slow_calls if call.exception() is None)
    # Misses: the first tiny call, the first slow call that ran and the
    # probes the pool took (refused calls compile nothing); hits: the tiny
    # call served here and the slow calls that ran after the first.
    assert (stats(server).hits, stats(server).misses) == (ran, 2 + len(compiled))
    for _ in range(2):
        assert_results_equal(result, pooled.compute(tiny_request()), "inline vs pool")
    assert (stats(pooled).hits, stats(pooled).misses) == (1, 1)
