"""Same-host shared memory over gRPC: feeds, parameters and seeds read from
registered regions and outputs and gradients placed there give bit for bit
what the plain transport gives, in every RPC that takes tensors; the bad
inputs (offset past the end, overlapping placements, unknown regions,
another connection's region, files replaced, truncated or symlinked after
or at registration, keys leaving the directory, byte sizes that do not
match the shape) each get their code and a message naming the region or
tensor, and the server goes on; regions go with their connection, by RPC
or after the idle TTL; all of it is off by default."""

import os
import subprocess
import time

import grpc
import numpy as np
import pytest

import gs

pb = gs.pb
spb = gs.spb
tensor_pb2 = gs.tensor_pb2

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
FAILED = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture(scope="module")
def shm_server():
    s = gs.Server("--allow_shared_memory", "--workers=2", "--threads_per_worker=1")
    yield s
    assert s.alive(), f"gradserve died during the tests: {s.output()}"
    s.close()


@pytest.fixture
def region(shm_server):
    with gs.SharedMemory(shm_server.rpc, 4 << 20) as m:
        yield m


def linear(rng, n=8, k=32, m=16):
    W = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    x = rng.standard_normal((n, k)).astype(np.float32)
    dy = rng.standard_normal((n, m)).astype(np.float32)
    g = gs.graph([gs.node("fc", "Linear", ["x", "W", "b"], ["y"])], inputs=["x"],
                 parameters={"W": W, "b": b})
    return g, W, b, x, dy


def linear_over_shm(m, g, W, b, x, dy, place=("y", "W", "b", "x")):
    """The Linear fwd+bwd with every tensor in `m` and `place` placed there."""
    request = gs.compute_request(g, fetch=["y"], wrt=["W", "b", "x"])
    request.graph.parameters["W"].CopyFrom(m.put(W))
    request.graph.parameters["b"].CopyFrom(m.put(b))
    request.feeds["x"].CopyFrom(m.put(x))
    request.output_gradients["y"].CopyFrom(m.put(dy))
    shapes = {"y": dy.shape, "W": W.shape, "b": b.shape, "x": x.shape}
    for name in place:
        request.output_placement[name].CopyFrom(m.place(shapes[name]))
    return request


def error(call, request, code, *parts):
    e = gs.rpc_error(call, request, timeout=30)
    assert e.code() == code, e
    for part in parts:
        assert part in e.details(), f"{part!r} not in {e.details()!r}"
    return e


# ---------------------------------------------------------------- off


def test_off_unless_the_server_allows_it(server, tmp_path):
    assert "shared_memory" not in server.info().features
    error(server.rpc.RegisterSharedMemory,
          pb.RegisterSharedMemoryRequest(region="r", key="k", byte_size=8), FAILED,
          "--allow_shared_memory")
    error(server.rpc.UnregisterSharedMemory, pb.UnregisterSharedMemoryRequest(region="r"),
          FAILED, "--allow_shared_memory")
    g, W, b, x, dy = linear(np.random.default_rng(0))
    request = gs.compute_request(g, feeds={"x": x}, fetch=["y"])
    request.feeds["x"].ClearField("data")
    request.feeds["x"].shared_memory.CopyFrom(
        tensor_pb2.SharedMemoryRef(region="r", byte_size=x.nbytes))
    error(server.rpc.Compute, request, FAILED, "feeds['x']", "--allow_shared_memory")
    request = gs.compute_request(g, feeds={"x": x}, fetch=["y"])
    request.output_placement["y"].CopyFrom(
        tensor_pb2.SharedMemoryRef(region="r", byte_size=dy.nbytes))
    error(server.rpc.Compute, request, FAILED, "output_placement['y']",
          "--allow_shared_memory")
    assert server.compute(gs.compute_request(g, feeds={"x": x}, fetch=["y"])).outputs["y"] \
        .shape == dy.shape


def test_feature_listed_when_on(shm_server):
    assert "shared_memory" in shm_server.info().features


# ---------------------------------------------------------------- round trips


def test_linear_fwd_bwd_through_shared_memory_is_bitwise_the_plain_path(shm_server, region):
    g, W, b, x, dy = linear(np.random.default_rng(1), n=64, k=256, m=128)
    plain = shm_server.compute(gs.compute_request(
        g, feeds={"x": x}, fetch=["y"], output_gradients={"y": dy}, wrt=["W", "b", "x"]))
    reply = shm_server.rpc.Compute(linear_over_shm(region, g, W, b, x, dy), timeout=60)
    assert not reply.outputs["y"].data
    assert list(reply.outputs["y"].shape) == [64, 128]
    assert reply.outputs["y"].dtype == tensor_pb2.DATA_TYPE_FLOAT32
    gs.assert_same(region.read(reply.outputs["y"]), plain.outputs["y"], "y")
    gs.assert_same({k: region.read(v) for k, v in reply.gradients.items()}, plain.gradients,
                   "gradients")


def test_placed_and_replied_tensors_mix(shm_server, region):
    g, W, b, x, dy = linear(np.random.default_rng(2))
    plain = shm_server.compute(gs.compute_request(
        g, feeds={"x": x}, fetch=["y"], output_gradients={"y": dy}, wrt=["W", "b", "x"]))
    reply = gs.Result(shm_server.rpc.Compute(
        linear_over_shm(region, g, W, b, x, dy, place=()), timeout=60))
    gs.assert_same(reply.outputs, plain.outputs, "outputs")
    gs.assert_same(reply.gradients, plain.gradients, "gradients")
    raw = shm_server.rpc.Compute(linear_over_shm(region, g, W, b, x, dy, place=("W",)),
                                 timeout=60)
    gs.assert_same(region.read(raw.gradients["W"]), plain.gradients["W"], "W")
    gs.assert_same(gs.to_numpy(raw.gradients["b"]), plain.gradients["b"], "b")
    gs.assert_same(gs.to_numpy(raw.outputs["y"]), plain.outputs["y"], "y")


def test_int64_and_bfloat16_feeds(shm_server, region):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((6, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 6).astype(np.int64)
    g = gs.graph([gs.node("ce", "CrossEntropyLoss", ["z", "t"], ["L"])], inputs=["z", "t"])
    plain = shm_server.compute(gs.compute_request(g, feeds={"z": logits, "t": labels},
                                                  fetch=["L"], loss="L", wrt=["z"]))
    request = gs.compute_request(g, fetch=["L"], loss="L", wrt=["z"])
    request.feeds["z"].CopyFrom(region.put(logits))
    request.feeds["t"].CopyFrom(region.put(labels))
    request.output_placement["z"].CopyFrom(region.place(logits.shape))
    reply = shm_server.rpc.Compute(request, timeout=30)
    gs.assert_same(gs.to_numpy(reply.outputs["L"]), plain.outputs["L"], "L")
    gs.assert_same(region.read(reply.gradients["z"]), plain.gradients["z"], "dz")

    halves = logits.view(np.uint16)[:, 1::2].copy()  # the upper halves: bfloat16
    by_data = tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_BFLOAT16, shape=[6, 5],
                                data=halves.tobytes())
    offset = region.alloc(halves.nbytes)
    region.map[offset:offset + halves.nbytes] = halves.tobytes()
    by_shm = tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_BFLOAT16, shape=[6, 5],
                               shared_memory=region.ref(offset, halves.nbytes))
    answers = []
    for t in (by_data, by_shm):
        request = gs.compute_request(g, feeds={"t": labels}, fetch=["L"], loss="L", wrt=["z"])
        request.feeds["z"].CopyFrom(t)
        answers.append(gs.Result(shm_server.rpc.Compute(request, timeout=30)))
    gs.assert_same(answers[1].outputs, answers[0].outputs, "bfloat16 outputs")
    gs.assert_same(answers[1].gradients, answers[0].gradients, "bfloat16 gradients")


def test_forward_backward_sessions_and_stream_read_shared_memory(shm_server, region):
    rng = np.random.default_rng(4)
    g, W, b, x, dy = linear(rng)
    s = shm_server
    # Forward / Backward: feeds and seeds from the region.
    plain_fwd = s.forward(g, feeds={"x": x}, fetch=["y"], wrt=["W", "x"])
    plain_bwd = s.backward(plain_fwd.activation_id, output_gradients={"y": dy})
    request = pb.ForwardRequest(graph=g, fetch=["y"], wrt=["W", "x"])
    request.feeds["x"].CopyFrom(region.put(x))
    fwd = s.rpc.Forward(request, timeout=30)
    gs.assert_same(gs.arrays(fwd.outputs), gs.arrays(plain_fwd.outputs), "Forward")
    request = pb.BackwardRequest(activation_id=fwd.activation_id)
    request.output_gradients["y"].CopyFrom(region.put(dy))
    gs.assert_same(gs.arrays(s.rpc.Backward(request, timeout=30).gradients), plain_bwd,
                   "Backward")

    # Sessions: parameters set and a step's feeds from the region.
    t = rng.standard_normal((8, 16)).astype(np.float32)
    loss_graph = gs.graph([gs.node("fc", "Linear", ["x", "W", "b"], ["y"]),
                           gs.node("mse", "MSELoss", ["y", "t"], ["L"])],
                          inputs=["x", "t"], parameters={"W": W, "b": b})
    W2 = rng.standard_normal(W.shape).astype(np.float32)
    steps = []
    for use_shm in (False, True):
        session = s.create_session(loss_graph, optimizer=gs.sgd(0.1)).session_id
        request = spb.SetParametersRequest(session_id=session)
        request.parameters["W"].CopyFrom(region.put(W2) if use_shm else gs.tensor(W2))
        s.rpc.SetParameters(request, timeout=30)
        request = spb.TrainStepRequest(session_id=session, loss="L", fetch=["y"])
        for name, value in (("x", x), ("t", t)):
            request.feeds[name].CopyFrom(region.put(value) if use_shm else gs.tensor(value))
        step = gs.Step(s.rpc.TrainStep(request, timeout=30))
        steps.append((step.loss, step.outputs, s.get_parameters(session).parameters))
        s.close_session(session)
    gs.assert_same(steps[1][0], steps[0][0], "TrainStep loss")
    gs.assert_same(steps[1][1], steps[0][1], "TrainStep outputs")
    gs.assert_same(steps[1][2], steps[0][2], "parameters after the step")

    # ComputeStream: each item reads and places like unary Compute.
    plain = s.compute(gs.compute_request(
        g, feeds={"x": x}, fetch=["y"], output_gradients={"y": dy}, wrt=["W", "b", "x"]))
    requests = [linear_over_shm(region, g, W, b, x, dy) for _ in range(3)]
    replies = list(s.rpc.ComputeStream(iter(requests), timeout=60))
    assert [r.code for r in replies] == [0, 0, 0], replies
    for r in replies:
        gs.assert_same(region.read(r.response.outputs["y"]), plain.outputs["y"], "stream y")
        gs.assert_same({k: region.read(v) for k, v in r.response.gradients.items()},
                       plain.gradients, "stream gradients")


def test_a_window_of_a_file_is_a_region(shm_server):
    # Regions cover [offset, offset + byte_size) of their file; references
    # are relative to the region's start.
    s = shm_server
    with gs.SharedMemory(s.rpc, 1 << 16, register=False) as m:
        m.register(offset=4096, byte_size=8192)
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        m.map[4096 + 128:4096 + 128 + x.nbytes] = x.tobytes()
        g = gs.graph([gs.node("s", "Scale", ["x"], ["y"], factor=2.0)], inputs=["x"])
        request = gs.compute_request(g, fetch=["y"])
        request.feeds["x"].CopyFrom(tensor_pb2.Tensor(
            dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[3, 4],
            shared_memory=m.ref(128, x.nbytes)))
        request.output_placement["y"].CopyFrom(m.ref(1024, x.nbytes))
        reply = s.rpc.Compute(request, timeout=30)
        np.testing.assert_array_equal(m.array(4096 + 1024, (3, 4), np.float32), 2 * x)
        assert reply.outputs["y"].shared_memory.offset == 1024
        request.feeds["x"].shared_memory.offset = 8192 - 16  # past the region
        error(s.rpc.Compute, request, INVALID, "feeds['x']", f"region '{m.region}'",
              "past the end", "8192 bytes")


# ---------------------------------------------------------------- bad input


def scale_request(m, x, place=True):
    g = gs.graph([gs.node("s", "Scale", ["x"], ["y"], factor=3.0)], inputs=["x"])
    request = gs.compute_request(g, fetch=["y"])
    request.feeds["x"].CopyFrom(m.put(x))
    if place:
        request.output_placement["y"].CopyFrom(m.place(x.shape))
    return request


X = np.arange(256, dtype=np.float32).reshape(16, 16)


def still_answers(s, m):
    reply = s.rpc.Compute(scale_request(m, X), timeout=30)
    np.testing.assert_array_equal(m.read(reply.outputs["y"]), 3 * X)


def test_offset_past_the_end(shm_server, region):
    request = scale_request(region, X)
    request.feeds["x"].shared_memory.offset = region.nbytes - 100
    error(shm_server.rpc.Compute, request, INVALID, "feeds['x']",
          f"region '{region.region}'", "past the end")
    request = scale_request(region, X)
    request.output_placement["y"].offset = 2**64 - 8  # offset + byte_size wraps
    error(shm_server.rpc.Compute, request, INVALID, "output_placement['y']",
          f"region '{region.region}'", "past the end")
    still_answers(shm_server, region)


def test_overlapping_output_placements(shm_server, region):
    g, W, b, x, dy = linear(np.random.default_rng(5))
    request = linear_over_shm(region, g, W, b, x, dy)
    request.output_placement["x"].offset = request.output_placement["W"].offset + 64
    error(shm_server.rpc.Compute, request, INVALID, "output_placement['W']",
          "output_placement['x']", "overlap")
    # An output over an input of the same request.
    request = linear_over_shm(region, g, W, b, x, dy)
    request.output_placement["x"].offset = request.feeds["x"].shared_memory.offset
    error(shm_server.rpc.Compute, request, INVALID, "output_placement['x']", "feeds['x']",
          "overlap")
    # Two regions over the same bytes of one file overlap too.
    other = "other-" + region.region
    shm_server.rpc.RegisterSharedMemory(pb.RegisterSharedMemoryRequest(
        region=other, key=region.key, byte_size=region.nbytes), timeout=30)
    try:
        request = linear_over_shm(region, g, W, b, x, dy)
        request.output_placement["y"].region = other
        request.output_placement["y"].offset = request.output_placement["b"].offset
        e = error(shm_server.rpc.Compute, request, INVALID, "output_placement['b']",
                  "output_placement['y']", "overlap")
        assert f"'{other}'" in e.details() and f"'{region.region}'" in e.details()
    finally:
        shm_server.rpc.UnregisterSharedMemory(
            pb.UnregisterSharedMemoryRequest(region=other), timeout=30)
    still_answers(shm_server, region)


def test_unknown_region(shm_server, region):
    request = scale_request(region, X)
    request.feeds["x"].shared_memory.region = "no-such-region"
    error(shm_server.rpc.Compute, request, NOT_FOUND, "feeds['x']", "'no-such-region'")
    request = scale_request(region, X)
    request.output_placement["y"].region = "no-such-region"
    error(shm_server.rpc.Compute, request, NOT_FOUND, "output_placement['y']",
          "'no-such-region'")
    error(shm_server.rpc.UnregisterSharedMemory,
          pb.UnregisterSharedMemoryRequest(region="no-such-region"), NOT_FOUND,
          "'no-such-region'")
    still_answers(shm_server, region)


def test_region_of_another_connection(shm_server, region):
    # With auth off, the caller is the connection: another one's regions are
    # not found (tenants are tested in tests/runtime/shared_memory_test.cc).
    channel, other = shm_server.connect()
    try:
        error(other.Compute, scale_request(region, X), NOT_FOUND, "feeds['x']",
              f"region '{region.region}'", "not registered by this caller")
        error(other.UnregisterSharedMemory,
              pb.UnregisterSharedMemoryRequest(region=region.region), NOT_FOUND,
              f"region '{region.region}'")
        # The other connection may use the same name for its own region.
        with gs.SharedMemory(other, 1 << 16, region=region.region) as mine:
            reply = other.Compute(scale_request(mine, X), timeout=30)
            np.testing.assert_array_equal(mine.read(reply.outputs["y"]), 3 * X)
    finally:
        channel.close()
    still_answers(shm_server, region)


def test_file_replaced_after_registration(shm_server):
    with gs.SharedMemory(shm_server.rpc, 1 << 16) as m:
        request = scale_request(m, X)
        replacement = m.path + ".new"
        with open(replacement, "wb") as f:
            f.write(bytes(1 << 16))
        os.rename(replacement, m.path)
        error(shm_server.rpc.Compute, request, FAILED, "feeds['x']",
              f"region '{m.region}'", f"file '{m.key}'", "replaced")
        os.unlink(m.path)
        error(shm_server.rpc.Compute, request, FAILED, "feeds['x']", "removed")
    with gs.SharedMemory(shm_server.rpc, 1 << 20) as m:
        still_answers(shm_server, m)


def test_file_truncated_after_registration(shm_server):
    with gs.SharedMemory(shm_server.rpc, 1 << 16) as m:
        request = scale_request(m, X)
        os.truncate(m.path, 100)  # the client must not touch the map now either
        error(shm_server.rpc.Compute, request, FAILED, "feeds['x']",
              f"region '{m.region}'", "truncated to 100 bytes")
        request.feeds["x"].CopyFrom(gs.tensor(X))  # now only the output is in the file
        error(shm_server.rpc.Compute, request, FAILED, "output_placement['y']",
              "truncated to 100 bytes")
        assert os.path.getsize(m.path) == 100  # not grown back by the write
    with gs.SharedMemory(shm_server.rpc, 1 << 20) as m:
        still_answers(shm_server, m)


def test_symlinks_and_keys_outside_the_directory(shm_server, region):
    link = f"gradserve-test-link-{os.getpid()}"
    os.symlink(region.path, os.path.join("/dev/shm", link))
    try:
        request = pb.RegisterSharedMemoryRequest(region="l", key=link, byte_size=64)
        error(shm_server.rpc.RegisterSharedMemory, request, INVALID, f"key '{link}'",
              "symbolic link")
    finally:
        os.unlink(os.path.join("/dev/shm", link))
    for key in ["../" + region.key, "../shm/" + region.key, "/dev/shm/" + region.key,
                "..", ".", ""]:
        request = pb.RegisterSharedMemoryRequest(region="k", key=key, byte_size=64)
        error(shm_server.rpc.RegisterSharedMemory, request, INVALID, "plain file name")
    request = pb.RegisterSharedMemoryRequest(region="k", key="gradserve-no-such-file",
                                             byte_size=64)
    error(shm_server.rpc.RegisterSharedMemory, request, NOT_FOUND,
          "key 'gradserve-no-such-file'")
    request = pb.RegisterSharedMemoryRequest(region="k", key=region.key,
                                             offset=region.nbytes - 8, byte_size=64)
    error(shm_server.rpc.RegisterSharedMemory, request, INVALID, f"key '{region.key}'",
          "ends past it")
    request = pb.RegisterSharedMemoryRequest(region=region.region, key=region.key,
                                             byte_size=64)
    error(shm_server.rpc.RegisterSharedMemory, request, grpc.StatusCode.ALREADY_EXISTS,
          f"region '{region.region}'")
    still_answers(shm_server, region)


def test_byte_size_must_match_the_shape(shm_server, region):
    request = scale_request(region, X)
    request.feeds["x"].shared_memory.byte_size -= 4
    error(shm_server.rpc.Compute, request, INVALID, "feeds['x']", "byte_size is 1020",
          "expected 1024", f"region '{region.region}'")
    request = scale_request(region, X)
    request.output_placement["y"].byte_size = 2048
    error(shm_server.rpc.Compute, request, INVALID, "output_placement['y']",
          "byte_size is 2048", "takes 1024")
    request = scale_request(region, X)
    request.feeds["x"].data = X.tobytes()  # two carriers
    error(shm_server.rpc.Compute, request, INVALID, "feeds['x']", "exactly one of")
    request = scale_request(region, X)
    request.output_placement["z"].CopyFrom(region.place((4,)))
    error(shm_server.rpc.Compute, request, INVALID, "output_placement['z']",
          "neither an output nor a gradient", "outputs [y]")
    still_answers(shm_server, region)


def test_register_from_another_host_is_refused(tmp_path):
    try:
        addresses = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                                   capture_output=True, text=True).stdout.split()
    except FileNotFoundError:
        addresses = []
    ips = [a.split("/")[0] for i, a in enumerate(addresses) if i and addresses[i - 1] == "inet"]
    if not ips:
        pytest.skip("no non-loopback IPv4 address to connect from")
    port = gs.free_port()
    s = gs.Server("--allow_shared_memory", "--threads_per_worker=1",
                  also_listen=[f"{ips[0]}:{port}"])
    try:
        channel = grpc.insecure_channel(f"{ips[0]}:{port}")
        stub = gs.pb_grpc.GradientServiceStub(channel)
        with gs.SharedMemory(s.rpc, 4096, register=False) as m:
            e = gs.rpc_error(stub.RegisterSharedMemory, pb.RegisterSharedMemoryRequest(
                region="r", key=m.key, byte_size=4096), timeout=30)
            assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e
            assert "server's host" in e.details() and ips[0] in e.details()
        channel.close()
    finally:
        s.close()


# ---------------------------------------------------------------- lifetime


def open_files(server, path):
    """How many of the server's descriptors are open on `path`."""
    fds = f"/proc/{server.process.pid}/fd"
    count = 0
    for fd in os.listdir(fds):
        try:
            count += os.readlink(os.path.join(fds, fd)) == path
        except OSError:
            pass
    return count


def test_unregister_closes_the_file(shm_server):
    m = gs.SharedMemory(shm_server.rpc, 4096)
    try:
        assert open_files(shm_server, m.path) == 1
        m.unregister()
        assert open_files(shm_server, m.path) == 0
        error(shm_server.rpc.Compute, scale_request(m, np.zeros(4, np.float32), place=False),
              NOT_FOUND, f"region '{m.region}'")
    finally:
        m.close()


def test_regions_go_when_their_tcp_connection_closes(start_server):
    s = start_server("--allow_shared_memory", "--shared_memory_max_regions=1",
                     "--shared_memory_ttl_seconds=0")
    channel, first = s.connect()
    a = gs.SharedMemory(first, 4096)
    channel2, second = s.connect()
    b = gs.SharedMemory(second, 4096, register=False)
    try:
        # One region for the (only) tenant: the second connection waits for it.
        error(second.RegisterSharedMemory, pb.RegisterSharedMemoryRequest(
            region="b", key=b.key, byte_size=4096), grpc.StatusCode.RESOURCE_EXHAUSTED,
            "--shared_memory_max_regions")
        # Kept while the connection is open, over several passes of the watch.
        time.sleep(2.5)
        assert open_files(s, a.path) == 1
        reply = first.Compute(scale_request(a, X[:2]), timeout=30)
        np.testing.assert_array_equal(a.read(reply.outputs["y"]), 3 * X[:2])
        channel.close()
        assert gs.wait_until(lambda: open_files(s, a.path) == 0, timeout=15)
        b.register()
        reply = second.Compute(scale_request(b, X[:2]), timeout=30)
        np.testing.assert_array_equal(b.read(reply.outputs["y"]), 3 * X[:2])
    finally:
        a.map.close()
        os.unlink(a.path)
        b.close()
        channel2.close()


def test_regions_of_a_killed_client_go(start_server, tmp_path):
    s = start_server("--allow_shared_memory", "--shared_memory_ttl_seconds=0")
    key = "gradserve-test-killed-" + gs.secrets.token_hex(4)
    script = tmp_path / "client.py"
    script.write_text(
        "import sys, os, time\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(gs.__file__))!r})\n"
        "import gs, grpc\n"
        f"fd = os.open('/dev/shm/{key}', os.O_RDWR | os.O_CREAT, 0o600)\n"
        "os.ftruncate(fd, 4096)\n"
        f"stub = gs.pb_grpc.GradientServiceStub(grpc.insecure_channel({s.address!r}))\n"
        f"stub.RegisterSharedMemory(gs.pb.RegisterSharedMemoryRequest(region='r', "
        f"key={key!r}, byte_size=4096), timeout=30)\n"
        "print('registered', flush=True)\n"
        "time.sleep(600)\n")
    client = subprocess.Popen([gs.sys.executable, str(script)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert client.stdout.readline().strip() == "registered"
        assert open_files(s, f"/dev/shm/{key}") == 1
        client.kill()
        client.wait()
        assert gs.wait_until(lambda: open_files(s, f"/dev/shm/{key}") == 0, timeout=15)
    finally:
        client.kill()
        client.wait()
        client.stdout.close()
        os.unlink(f"/dev/shm/{key}")


def test_unix_socket_clients_regions_go_when_none_is_connected(tmp_path):
    # Every unix-socket connection has the peer "unix:": its regions go once
    # no unix-socket client is connected (README: "Same-host shared memory").
    path = tmp_path / "gradserve.sock"
    s = gs.Server("--allow_shared_memory", "--threads_per_worker=1",
                  "--shared_memory_ttl_seconds=0", also_listen=[f"unix://{path}"])
    try:
        channel = grpc.insecure_channel(f"unix://{path}")
        stub = gs.pb_grpc.GradientServiceStub(channel)
        m = gs.SharedMemory(stub, 1 << 16)
        time.sleep(2.5)  # kept while connected
        reply = stub.Compute(scale_request(m, X), timeout=30)
        np.testing.assert_array_equal(m.read(reply.outputs["y"]), 3 * X)
        assert open_files(s, m.path) == 1
        channel.close()
        assert gs.wait_until(lambda: open_files(s, m.path) == 0, timeout=15)
        m.map.close()
        os.unlink(m.path)
    finally:
        s.close()


def test_idle_regions_expire(start_server):
    s = start_server("--allow_shared_memory", "--shared_memory_ttl_seconds=1")
    m = gs.SharedMemory(s.rpc, 4096)
    try:
        request = scale_request(m, np.ones(4, np.float32), place=False)
        s.rpc.Compute(request, timeout=30)
        assert gs.wait_until(lambda: open_files(s, m.path) == 0, timeout=15)
        error(s.rpc.Compute, request, NOT_FOUND, f"region '{m.region}'")
    finally:
        m.close()
