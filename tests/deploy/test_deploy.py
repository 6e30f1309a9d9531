"""`make test-deploy`: the deployment files, a load-balanced set of replicas
on loopback, graceful shutdown under load, and the container image.

Everything listens on 127.0.0.1 only; every process started here is stopped
here; every loop is bounded."""

import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np
import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))

import gs  # noqa: E402
from gradserve.v1 import gradient_service_pb2 as pb  # noqa: E402
from gradserve.v1 import gradient_service_pb2_grpc as pb_grpc  # noqa: E402
from gradserve.v1 import session_pb2  # noqa: E402

IMAGE = "localhost/gradserve:test-deploy"


def linear_request(batch=4):
    """y = x·Wᵀ + b with a seed: dW = dYᵀx, db = ΣdY, dx = dY·W."""
    rng = np.random.default_rng(batch)
    x = rng.normal(size=(batch, 3)).astype(np.float32)
    w = rng.normal(size=(2, 3)).astype(np.float32)
    b = rng.normal(size=(2,)).astype(np.float32)
    dy = rng.normal(size=(batch, 2)).astype(np.float32)
    g = gs.graph([gs.node("fc", "Linear", ["x", "W", "b"], ["y"])], inputs=["x"],
                 parameters={"W": w, "b": b}, outputs=["y"])
    request = gs.compute_request(g, feeds={"x": x}, output_gradients={"y": dy},
                                 wrt=["W", "b", "x"])
    expected = {"y": x @ w.T + b, "W": dy.T @ x, "b": dy.sum(axis=0), "x": dy @ w}
    return request, expected


def check_linear(response, expected):
    result = gs.Result(response)
    np.testing.assert_allclose(result.outputs["y"], expected["y"], rtol=1e-5, atol=1e-6)
    for name in ("W", "b", "x"):
        np.testing.assert_allclose(result.gradients[name], expected[name], rtol=1e-5,
                                   atol=1e-6)


def connect(address):
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=30)
    return channel, pb_grpc.GradientServiceStub(channel)


# ---------------------------------------------------------------- files


def nginx_conf():
    with open(os.path.join(ROOT, "deploy", "nginx.conf")) as f:
        return f.read()


def upstream_servers(conf):
    """The server lines of the upstream, in order."""
    block = re.search(r"# BEGIN replicas\n(.*?)# END replicas", conf, re.S).group(1)
    return re.findall(r"^\s*server (\S+);$", block, re.M)


def k8s_docs():
    docs = {}
    for name in ("statefulset.yaml", "service.yaml", "balancer.yaml"):
        with open(os.path.join(ROOT, "deploy", "k8s", name)) as f:
            for doc in yaml.safe_load_all(f):
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def test_kubernetes_manifests_parse_and_agree():
    docs = k8s_docs()
    replicas = docs[("StatefulSet", "gradserve")]
    assert replicas["spec"]["serviceName"] == "gradserve-headless"
    pod = replicas["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["grpc"]["port"] == 50051
    assert container["livenessProbe"]["grpc"]["port"] == 50051
    grace = next(int(a.split("=")[1]) for a in container["args"]
                 if a.startswith("--shutdown_grace_seconds="))
    assert pod["terminationGracePeriodSeconds"] > grace
    assert container["resources"]["limits"]["cpu"] == container["resources"]["requests"]["cpu"]
    headless = docs[("Service", "gradserve-headless")]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["selector"] == replicas["spec"]["selector"]["matchLabels"]
    # One Service per replica, each selecting its pod, is a server line of
    # the balancer, whose config is deploy/nginx.conf itself.
    names = [f"gradserve-{i}" for i in range(replicas["spec"]["replicas"])]
    for name in names:
        spec = docs[("Service", name)]["spec"]
        assert spec["selector"] == {"statefulset.kubernetes.io/pod-name": name}
        assert "clusterIP" not in spec
        assert spec["ports"][0]["port"] == 50051
    config = docs[("ConfigMap", "gradserve-balancer")]["data"]["nginx.conf"]
    assert config == nginx_conf()
    assert upstream_servers(config) == [f"{n}:50051" for n in names]
    # Clients' Service reaches the nginx pods, and only them.
    balancer = docs[("Deployment", "gradserve-balancer")]["spec"]
    labels = balancer["template"]["metadata"]["labels"]
    entry = docs[("Service", "gradserve")]["spec"]
    assert "clusterIP" not in entry
    assert entry["selector"] == labels
    assert not set(headless["selector"].items()) <= set(labels.items())
    nginx = balancer["template"]["spec"]["containers"][0]
    assert nginx["ports"][0]["containerPort"] == 8080
    assert nginx["readinessProbe"]["tcpSocket"]["port"] == 8080
    assert "listen 8080 http2;" in config
    mount = nginx["volumeMounts"][0]
    assert (mount["mountPath"], mount["subPath"]) == ("/etc/nginx/nginx.conf", "nginx.conf")


def test_compose_file_parses():
    with open(os.path.join(ROOT, "deploy", "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    balancer = services.pop("balancer")
    # Each replica a service of its own, each a server line of nginx.conf.
    assert len(services) >= 2
    assert upstream_servers(nginx_conf()) == [f"{n}:50051" for n in sorted(services)]
    assert set(balancer["depends_on"]) == set(services)
    for service in services.values():
        assert "health" in service["healthcheck"]["test"]
        assert "replicas" not in service.get("deploy", {})


class Nginx:
    """Debian's nginx running deploy/nginx.conf with the upstream pointed at
    local replicas (the only change to the file)."""

    def __init__(self, backends):
        self.dir = tempfile.mkdtemp(prefix="gradserve-nginx-")
        self.port = gs.free_port()
        servers = "".join(f"    server {b};\n" for b in backends)
        conf, n = re.subn(r"(# BEGIN replicas\n).*?(\s*# END replicas)",
                          lambda m: m.group(1) + servers + m.group(2), nginx_conf(),
                          flags=re.S)
        assert n == 1
        conf = conf.replace("listen 8080 http2;", f"listen 127.0.0.1:{self.port} http2;")
        conf = conf.replace("pid /tmp/nginx.pid;", f"pid {self.dir}/nginx.pid;")
        self.access_log = os.path.join(self.dir, "logs", "access.log")
        conf, n = re.subn(r"access_log /dev/stdout (\w+);",
                          lambda m: f"access_log {self.access_log} {m.group(1)};", conf)
        assert n == 1
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        for sub in ("logs", "tmp"):
            os.makedirs(os.path.join(self.dir, sub))
        self.process = None

    def calls(self):
        """The access log: (method, route, upstream, grpc status) per call;
        route "" for none (nginx logs "-", a route these tests do not use)."""
        pattern = re.compile(r'\S+ /gradserve\.v1\.GradientService/(\w+) route="([^"]*)" '
                             r'upstream=(\S+) grpc_status=(\S*) ')
        calls = []
        with open(self.access_log) as f:
            for line in f:
                method, route, upstream, status = pattern.match(line).groups()
                calls.append((method, "" if route == "-" else route, upstream, status))
        return calls

    def check(self):
        return subprocess.run(["nginx", "-t", "-p", self.dir, "-c", self.conf,
                               "-e", os.path.join(self.dir, "logs", "error.log")],
                              capture_output=True, text=True, timeout=30)

    def start(self):
        self.process = subprocess.Popen(
            ["nginx", "-p", self.dir, "-c", self.conf, "-e",
             os.path.join(self.dir, "logs", "error.log"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return f"127.0.0.1:{self.port}"

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)


def test_nginx_config_is_valid():
    nginx = Nginx(["127.0.0.1:1", "127.0.0.1:2"])
    try:
        result = nginx.check()
        assert result.returncode == 0, result.stderr
        assert "syntax is ok" in result.stderr
    finally:
        nginx.stop()


# ------------------------------------------------------- load balancing


@pytest.fixture
def replicas():
    """Three replicas, told apart by their node limit (1001, 1002, 1003)."""
    servers = [gs.Server(f"--max_graph_nodes={1001 + i}", "--workers=1",
                         "--threads_per_worker=1") for i in range(3)]
    yield servers
    for s in servers:
        assert s.alive(), s.output()
        s.close()


def test_burst_through_nginx_reaches_every_replica(replicas):
    nginx = Nginx([s.address for s in replicas])
    address = nginx.start()
    try:
        channel, service = connect(address)
        # Calls without a route hash on a random id: 50 each expected.
        seen = [service.GetServerInfo(pb.GetServerInfoRequest(), timeout=30)
                .limits.max_graph_nodes for _ in range(150)]
        counts = {n: seen.count(n) for n in (1001, 1002, 1003)}
        assert all(c >= 25 for c in counts.values()), counts
        # A concurrent burst of computations, every one correct.
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            jobs = []
            for i in range(60):
                request, expected = linear_request(batch=1 + i % 7)
                jobs.append((pool.submit(service.Compute, request, timeout=60), expected))
            for future, expected in jobs:
                check_linear(future.result(), expected)
        channel.close()
    finally:
        nginx.stop()


def regression_graph():
    """y = x·Wᵀ + b, loss = MSE(y, t): a model to train in a session."""
    rng = np.random.default_rng(7)
    return gs.graph([gs.node("fc", "Linear", ["x", "W", "b"], ["y"]),
                     gs.node("mse", "MSELoss", ["y", "t"], ["loss"])],
                    inputs=["x", "t"],
                    parameters={"W": rng.normal(size=(2, 3)), "b": np.zeros(2)},
                    outputs=["y"])


def regression_feeds(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    return {"x": gs.tensor(x), "t": gs.tensor(x[:, :2] * 2.0 - 1.0)}


def exercise_session(service, session_id):
    """20 TrainSteps, and Forward then Backward 5 times on the session and
    5 times on the graph under new routes; every call routed. Returns the
    routes of the graph Forwards."""
    meta = gs.routed(gs.route_of(session_id))
    for step in range(1, 21):
        reply = service.TrainStep(session_pb2.TrainStepRequest(
            session_id=session_id, feeds=regression_feeds(step), loss="loss"),
            metadata=meta, timeout=60)
        assert reply.step == step
    routes = []
    for i in range(10):
        on_session = i % 2 == 0
        route = gs.route_of(session_id) if on_session else gs.new_route()
        forward = pb.ForwardRequest(feeds=regression_feeds(100 + i), loss="loss")
        compute = pb.ComputeRequest(feeds=regression_feeds(100 + i), loss="loss",
                                    wrt=["W", "b"])
        if on_session:
            forward.session_id = compute.session_id = session_id
        else:
            forward.graph.CopyFrom(regression_graph())
            compute.graph.CopyFrom(regression_graph())
            routes.append(route)
        held = service.Forward(forward, metadata=gs.routed(route), timeout=60)
        assert gs.route_of(held.activation_id) == route
        grads = service.Backward(pb.BackwardRequest(activation_id=held.activation_id,
                                                    from_loss=True),
                                 metadata=gs.routed(gs.route_of(held.activation_id)),
                                 timeout=60)
        # Forward then Backward is what one Compute gives (the session's
        # Compute is routed too: it needs the session's parameters).
        once = service.Compute(compute, metadata=gs.routed(route) if on_session else (),
                               timeout=60)
        for name in ("W", "b"):
            np.testing.assert_array_equal(gs.to_numpy(grads.gradients[name]),
                                          gs.to_numpy(once.gradients[name]))
    return routes


def test_sessions_through_nginx_stay_on_their_replica(replicas):
    nginx = Nginx([s.address for s in replicas])
    address = nginx.start()
    try:
        channel, service = connect(address)
        sessions = []
        for _ in range(12):
            route = gs.new_route()
            request = session_pb2.CreateSessionRequest(graph=regression_graph(),
                                                       label=route)
            request.optimizer.sgd.lr = 0.05
            created = service.CreateSession(request, metadata=gs.routed(route),
                                            timeout=60)
            assert gs.route_of(created.session.session_id) == route
            sessions.append(created.session.session_id)
        # Six sessions at a time; any NOT_FOUND (a call on the wrong
        # replica) raises here.
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            graph_routes = [r for routes in pool.map(
                lambda sid: exercise_session(service, sid), sessions) for r in routes]

        # Each session is on exactly one replica, with all 20 steps, and
        # the sessions are spread over more than one replica (all 12 on one
        # of three: 3 · 3^-12).
        holders = {}
        for index, replica in enumerate(replicas):
            for info in replica.rpc.ListSessions(session_pb2.ListSessionsRequest(),
                                                 timeout=30).sessions:
                holders.setdefault(info.session_id, []).append(index)
                assert info.step == 20, info
        assert sorted(holders) == sorted(sessions)
        assert all(len(h) == 1 for h in holders.values()), holders
        spread = {h[0] for h in holders.values()}
        assert len(spread) > 1, holders

        # Stateless calls still reach all three replicas.
        request, expected = linear_request()
        for _ in range(60):
            check_linear(service.Compute(request, timeout=60), expected)

        # nginx's log agrees: every call of a route went to one replica, that
        # of its session; every call succeeded; stateless Compute spread.
        calls = nginx.calls()
        upstreams = {}
        for method, route, upstream, status in calls:
            assert status == "0", (method, route, upstream, status)
            if route:
                upstreams.setdefault(route, set()).add(upstream)
        assert all(len(u) == 1 for u in upstreams.values()), upstreams
        for sid in sessions:
            assert upstreams[gs.route_of(sid)] == {replicas[holders[sid][0]].address}
        assert set(graph_routes) <= set(upstreams)
        stateless = [u for m, r, u, _ in calls if m == "Compute" and not r]
        assert len(stateless) == 60 + 5 * len(sessions)
        assert set(stateless) == {s.address for s in replicas}, stateless

        # Without the route, a session's calls land anywhere: NOT_FOUND
        # on the replicas that do not hold it (all 15 right: 3^-15).
        codes = []
        for i in range(15):
            try:
                service.TrainStep(session_pb2.TrainStepRequest(
                    session_id=sessions[0], feeds=regression_feeds(i), loss="loss"),
                    timeout=60)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND}, codes
        channel.close()
    finally:
        nginx.stop()


def test_client_side_round_robin_over_replicas(replicas):
    target = ",".join(s.address for s in replicas)
    out = []
    for _ in range(9):
        result = subprocess.run([gs.GRADCTL, f"--server={target}", "info"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        out.append(re.search(r"(\d+) nodes a graph", result.stdout).group(1))
    # Each gradctl run is one call on a fresh channel: round-robin starts
    # anywhere, so only check that the list is served.
    assert set(out) <= {"1001", "1002", "1003"}


# ----------------------------------------------------- graceful shutdown


def test_sigterm_during_a_burst_loses_no_request():
    server = gs.Server("--workers=1", "--threads_per_worker=1",
                       "--shutdown_grace_seconds=60")
    try:
        # Requests of a few hundred ms each, queued behind one worker.
        width, depth = 512, 40
        nodes = [gs.node(f"fc{i}", "Linear", ["x" if i == 0 else f"h{i-1}", "W"], [f"h{i}"])
                 for i in range(depth)]
        w = (np.eye(width) * 0.5).astype(np.float32)
        g = gs.graph(nodes, inputs=["x"], parameters={"W": w}, outputs=[f"h{depth-1}"])
        x = np.ones((256, width), np.float32)
        request = gs.compute_request(g, feeds={"x": x})
        expected = x * 0.5 ** depth
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(server.rpc.Compute, request, timeout=120)
                       for _ in range(8)]
            time.sleep(0.5)  # the calls are on the wire and queued
            server.process.send_signal(signal.SIGTERM)
            for f in futures:
                y = gs.to_numpy(f.result().outputs[f"h{depth-1}"])
                np.testing.assert_allclose(y, expected, rtol=1e-6)
        assert server.process.wait(timeout=60) == 0
        # New calls are refused once it has stopped.
        with pytest.raises(grpc.RpcError):
            server.rpc.Compute(request, timeout=5)
    finally:
        server.close()


# ------------------------------------------------------------- the image


def podman(*args, check=True, timeout=1800):
    result = subprocess.run(["podman", *args], capture_output=True, text=True,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def image():
    # Docker format: OCI images have no HEALTHCHECK.
    podman("build", "--format=docker", "--network=host", "-t", IMAGE, ROOT, timeout=3600)
    yield IMAGE


def test_image_serves_correct_gradients(image):
    port = gs.free_port()
    name = f"gradserve-test-{port}"
    podman("run", "-d", "--rm", "--name", name, "--network=host",
           "-e", f"GRADSERVE_HEALTH_ADDRESS=127.0.0.1:{port}",
           image, f"--address=127.0.0.1:{port}")
    try:
        channel, service = connect(f"127.0.0.1:{port}")
        request, expected = linear_request()
        check_linear(service.Compute(request, timeout=60), expected)
        channel.close()
        # Its own health check, with the gradctl inside the image.
        assert podman("exec", name, "gradctl", f"--server=127.0.0.1:{port}",
                      "health").stdout == "SERVING\n"
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        assert podman("exec", name, "id", "-u").stdout.strip() != "0"  # not root
    finally:
        stop = podman("stop", "-t", "30", name, check=False)
        assert stop.returncode == 0, stop.stderr


def test_image_defaults_and_size(image):
    inspect = podman("image", "inspect", image, "--format",
                     "{{.Config.Entrypoint}} {{.Config.Cmd}} {{.Config.User}} {{.Size}}")
    entrypoint, cmd, user, size = inspect.stdout.split()[0:4]
    assert "gradserve" in entrypoint and "--address=0.0.0.0:50051" in cmd
    assert user == "gradserve"
    print(f"\nimage size: {int(size) / 1e6:.0f} MB")
