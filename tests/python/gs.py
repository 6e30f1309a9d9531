"""Helpers for the Python tests: numpy <-> Tensor, graph building, a server
process on a free loopback port, wrappers for Compute, sessions and
Forward/Backward (numpy in and out), and same-host shared memory."""

import math
import mmap
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

BUILD_DIR = os.environ.get(
    "GRADSERVE_BUILD_DIR",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
sys.path.insert(0, os.path.join(BUILD_DIR, "python"))

import grpc  # noqa: E402
from gradserve.v1 import gradient_service_pb2 as pb  # noqa: E402
from gradserve.v1 import gradient_service_pb2_grpc as pb_grpc  # noqa: E402
from gradserve.v1 import graph_pb2  # noqa: E402
from gradserve.v1 import session_pb2 as spb  # noqa: E402
from gradserve.v1 import tensor_pb2  # noqa: E402

GRADSERVE = os.path.join(BUILD_DIR, "server", "gradserve")
GRADCTL = os.path.join(BUILD_DIR, "client", "gradctl")
MAX_MESSAGE = 1 << 30


def _sanitized():
    """Whether BUILD_DIR was configured with sanitizers (make test-sanitize)."""
    try:
        with open(os.path.join(BUILD_DIR, "CMakeCache.txt")) as cache:
            return any(line.startswith("GRADSERVE_SANITIZE:STRING=") and
                       line.strip().split("=", 1)[1] for line in cache)
    except OSError:
        return False


# ASan keeps freed memory in quarantine (256 MiB) and pads every block, so
# RSS says nothing about what a request allocated there.
SANITIZED = _sanitized()

_DTYPES = {
    np.dtype(np.float32): tensor_pb2.DATA_TYPE_FLOAT32,
    np.dtype(np.int64): tensor_pb2.DATA_TYPE_INT64,
    np.dtype(np.float64): tensor_pb2.DATA_TYPE_FLOAT64,
}


def tensor(array, float64=False):
    """A numpy array as a Tensor with raw little-endian data; float64 arrays
    are sent as float32 unless `float64` (a request with float64 tensors
    runs in float64)."""
    array = np.asarray(array)
    if array.dtype == np.float64 and not float64:
        array = array.astype(np.float32)
    # (np.ascontiguousarray would turn a scalar into shape [1].)
    array = array.astype(array.dtype.newbyteorder("<"), order="C", copy=False)
    return tensor_pb2.Tensor(dtype=_DTYPES[array.dtype], shape=list(array.shape),
                             data=array.tobytes())


_WIRE_DTYPES = {tensor_pb2.DATA_TYPE_FLOAT32: "<f4", tensor_pb2.DATA_TYPE_INT64: "<i8",
                tensor_pb2.DATA_TYPE_FLOAT64: "<f8"}


def to_numpy(t):
    assert not t.HasField("shared_memory"), "a placed tensor: read it with SharedMemory.read"
    return np.frombuffer(t.data, dtype=_WIRE_DTYPES[t.dtype]).reshape(tuple(t.shape)).copy()


def attribute(value):
    if isinstance(value, bool) or isinstance(value, (int, np.integer)):
        return graph_pb2.Attribute(i=int(value))
    if isinstance(value, float):
        return graph_pb2.Attribute(f=value)
    if isinstance(value, str):
        return graph_pb2.Attribute(s=value)
    if all(isinstance(v, (int, np.integer)) for v in value):
        return graph_pb2.Attribute(ints=graph_pb2.Ints(values=[int(v) for v in value]))
    return graph_pb2.Attribute(floats=graph_pb2.Floats(values=[float(v) for v in value]))


def node(name, op, inputs, outputs, **attrs):
    n = graph_pb2.Node(name=name, op=op, inputs=list(inputs), outputs=list(outputs))
    for key, value in attrs.items():
        n.attributes[key].CopyFrom(attribute(value))
    return n


def graph(nodes, inputs=(), parameters=None, buffers=None, outputs=()):
    g = graph_pb2.Graph(nodes=list(nodes), inputs=list(inputs), outputs=list(outputs))
    for name, value in (parameters or {}).items():
        g.parameters[name].CopyFrom(tensor(value))
    for name, value in (buffers or {}).items():
        g.buffers[name].CopyFrom(tensor(value))
    return g


def compute_request(g, feeds=None, fetch=(), loss="", output_gradients=None, wrt=(),
                    mode=pb.MODE_UNSPECIFIED, seed=0):
    """A ComputeRequest on a Graph, or on a session when `g` is its id (str)."""
    req = pb.ComputeRequest(fetch=list(fetch), loss=loss, wrt=list(wrt), mode=mode,
                            seed=seed)
    if isinstance(g, str):
        req.session_id = g
    else:
        req.graph.CopyFrom(g)
    fill(req.feeds, feeds)
    fill(req.output_gradients, output_gradients)
    return req


def model_request(cls, model, feeds=None, **fields):
    """A request of message type `cls` (CheckGradientsRequest, ...) on a
    Graph, or on a session when `model` is its id (str)."""
    req = cls(**fields)
    if isinstance(model, str):
        req.session_id = model
    else:
        req.graph.CopyFrom(model)
    fill(req.feeds, feeds)
    return req


def fill(pb_map, arrays):
    """Puts numpy arrays into a proto map<string, Tensor>."""
    for name, value in (arrays or {}).items():
        pb_map[name].CopyFrom(tensor(value))


def arrays(pb_map):
    """A proto map<string, Tensor> as a dict of numpy arrays."""
    return {k: to_numpy(v) for k, v in pb_map.items()}


def sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
        max_grad_norm=0.0):
    return spb.Optimizer(sgd=spb.SGD(lr=lr, momentum=momentum, dampening=dampening,
                                     weight_decay=weight_decay, nesterov=nesterov),
                         max_grad_norm=max_grad_norm)


def adam(max_grad_norm=0.0, **fields):
    """Adam (AdamW with decoupled_weight_decay=True); unset fields stay unset."""
    return spb.Optimizer(adam=spb.Adam(**fields), max_grad_norm=max_grad_norm)


class Values:
    """GetParametersResponse as numpy."""

    def __init__(self, response):
        self.parameters = arrays(response.parameters)
        self.buffers = arrays(response.buffers)
        self.optimizer_state = arrays(response.optimizer_state)
        self.step = response.step


class Step:
    """TrainStepResponse as numpy."""

    def __init__(self, response):
        self.loss = to_numpy(response.loss)
        self.outputs = arrays(response.outputs)
        self.step = response.step
        self.grad_norm = response.grad_norm


# Sessions and activations live on one replica; calls naming one send the
# route part of its id ("<route>.<32 hex>") so a balancer hashes them there,
# and CreateSession/Forward send the route the new id is to start with.
ROUTE_METADATA = "gradserve-route"


def new_route():
    """A random route, as the C++ client draws one: 8 hex digits."""
    return secrets.token_hex(4)


def route_of(object_id):
    """The route of a session or activation id ('' when it has none)."""
    return object_id.rpartition(".")[0]


def routed(route):
    """Call metadata that sends `route` (pass as metadata=...)."""
    return ((ROUTE_METADATA, route),)


class Result:
    def __init__(self, response):
        self.outputs = {k: to_numpy(v) for k, v in response.outputs.items()}
        self.gradients = {k: to_numpy(v) for k, v in response.gradients.items()}
        self.buffers = {k: to_numpy(v) for k, v in response.buffers.items()}


class SharedMemory:
    """A file in /dev/shm registered with a server as a region: put() copies
    an array into it and returns a Tensor referencing it (the shared_memory
    carrier), place() reserves room for an output (a ComputeRequest's
    output_placement), read() returns what a reply's placed tensor holds.
    `rpc` is a GradientServiceStub; the region belongs to its connection."""

    ALIGN = 64

    def __init__(self, rpc, nbytes, region=None, directory="/dev/shm", register=True):
        self.rpc = rpc
        self.region = region or "region-" + secrets.token_hex(4)
        self.key = "gradserve-test-" + secrets.token_hex(8)
        self.path = os.path.join(directory, self.key)
        self.nbytes = nbytes
        self.used = 0
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, nbytes)
            self.map = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        if register:
            self.register()

    def register(self, offset=0, byte_size=None, key=None, timeout=30):
        self.rpc.RegisterSharedMemory(pb.RegisterSharedMemoryRequest(
            region=self.region, key=self.key if key is None else key, offset=offset,
            byte_size=self.nbytes - offset if byte_size is None else byte_size),
            timeout=timeout)

    def unregister(self, timeout=30):
        self.rpc.UnregisterSharedMemory(
            pb.UnregisterSharedMemoryRequest(region=self.region), timeout=timeout)

    def alloc(self, nbytes):
        """The offset of `nbytes` fresh bytes, 64-byte aligned."""
        offset = -(-self.used // self.ALIGN) * self.ALIGN
        assert offset + nbytes <= self.nbytes, "the region is full"
        self.used = offset + nbytes
        return offset

    def ref(self, offset, byte_size):
        return tensor_pb2.SharedMemoryRef(region=self.region, offset=offset,
                                          byte_size=byte_size)

    def array(self, offset, shape, dtype):
        """A numpy view of the file's bytes at `offset` (no copy)."""
        dtype = np.dtype(dtype).newbyteorder("<")
        return np.ndarray(shape, dtype=dtype, buffer=self.map, offset=offset)

    def put(self, array):
        """Copies `array` (float32 or int64) in; a Tensor referencing it."""
        wire = tensor(array)
        offset = self.alloc(len(wire.data))
        self.map[offset:offset + len(wire.data)] = wire.data
        return tensor_pb2.Tensor(dtype=wire.dtype, shape=wire.shape,
                                 shared_memory=self.ref(offset, len(wire.data)))

    def place(self, shape, dtype=np.float32):
        """Room for an output of `shape`: a SharedMemoryRef for output_placement."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return self.ref(self.alloc(nbytes), nbytes)

    def read(self, t):
        """A copy of the values a reply's tensor placed here."""
        assert t.shared_memory.region == self.region and not t.data
        out = self.array(t.shared_memory.offset, tuple(t.shape), _WIRE_DTYPES[t.dtype])
        assert out.nbytes == t.shared_memory.byte_size
        return out.copy()

    def close(self):
        """Unregisters (when still registered), unmaps and removes the file."""
        try:
            self.unregister()
        except grpc.RpcError:
            pass
        self.map.close()
        if os.path.lexists(self.path):
            os.unlink(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClientTls:
    """What a TLS client trusts (`ca`) and, for mutual TLS, presents (`cert`,
    `key`): paths of PEM files."""

    def __init__(self, ca, cert=None, key=None):
        self.ca, self.cert, self.key = ca, cert, key

    def credentials(self):
        def read(path):
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()
        return grpc.ssl_channel_credentials(root_certificates=read(self.ca),
                                            private_key=read(self.key),
                                            certificate_chain=read(self.cert))


def make_certificates(directory):
    """Throwaway PEM files made with the openssl CLI (EC P-256, valid a day):
    ca.pem/ca.key, server.pem/server.key (localhost and 127.0.0.1, signed by
    the CA), client.pem/client.key (signed by the CA), and rogue_ca.pem with
    rogue.pem/rogue.key (a client certificate the CA did not sign). Returns
    {name: path} for each file without its extension's dot ("server_key")."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    san = os.path.join(directory, "san.ext")
    with open(san, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for ca in ("ca", "rogue_ca"):
        run("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
            "-days", "1", "-subj", f"/CN=gradserve test {ca}")
    for name, ca, cn in (("server", "ca", "localhost"), ("client", "ca", "tenant-client"),
                         ("rogue", "rogue_ca", "rogue-client")):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", san)
    return {f"{name}_{ext}": os.path.join(directory, f"{name}.{ext}")
            for name in ("ca", "rogue_ca", "server", "client", "rogue")
            for ext in ("pem", "key")}


class Server:
    """A gradserve process on a free loopback port, stopped on close().

    What it prints goes to a file, not a pipe: a sanitizer's report (or any
    long output) can never block it, and output() shows it all."""

    def __init__(self, *flags, port=None, also_listen=(), tls=None, token=None):
        """`port`: listen there (a restart on the same address), else on a
        free one. `also_listen`: more addresses (unix:///path) next to it.
        `tls`: a ClientTls for a server started with --tls_cert/--tls_key;
        `token`: sent as `authorization: Bearer` on every call."""
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tls, self.token = tls, token
        fd, self.log_path = tempfile.mkstemp(prefix="gradserve-", suffix=".log")
        self.stopped = False  # by stop(): its exit code is the caller's business
        with os.fdopen(fd, "ab") as log:  # append: the child writes at the end
            self.process = subprocess.Popen(
                [GRADSERVE, "--address=" + ",".join([self.address, *also_listen]), *flags],
                stdout=log, stderr=subprocess.STDOUT)
        self.channel = self.open_channel(
            tls, token,
            # Retry the first connection soon: the process is just starting.
            ("grpc.initial_reconnect_backoff_ms", 50),
            ("grpc.min_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 200))
        try:
            grpc.channel_ready_future(self.channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            output = self.output()
            self.close(check=False)
            raise RuntimeError(f"gradserve did not start: {output}")
        self.rpc = pb_grpc.GradientServiceStub(self.channel)

    def open_channel(self, tls, token, *options):
        """A channel to the server: plaintext, or TLS with `tls` (a ClientTls),
        with `token` as call credentials."""
        options = [("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.max_send_message_length", MAX_MESSAGE), *options]
        if tls is None:
            if token is not None:
                raise ValueError("a token needs TLS (gRPC sends call credentials "
                                 "only over secure channels)")
            return grpc.insecure_channel(self.address, options=options)
        credentials = tls.credentials()
        if token is not None:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(token))
        return grpc.secure_channel(self.address, credentials, options=options)

    def connect(self, tls="same", token="same"):
        """Another connection to the server (its own TCP connection, not one
        shared through gRPC's subchannel pool): (channel, GradientService client). TLS and token
        are the server's own unless given (None: without)."""
        channel = self.open_channel(self.tls if tls == "same" else tls,
                                    self.token if token == "same" else token,
                                    ("grpc.use_local_subchannel_pool", 1))
        grpc.channel_ready_future(channel).result(timeout=30)
        return channel, pb_grpc.GradientServiceStub(channel)

    def compute(self, request, timeout=120):
        return Result(self.rpc.Compute(request, timeout=timeout))

    def create_session(self, g, optimizer=None, frozen=(), ttl_seconds=0, label=""):
        """A new session of graph `g`; returns its SessionInfo."""
        request = spb.CreateSessionRequest(graph=g, frozen=list(frozen),
                                           ttl_seconds=ttl_seconds, label=label)
        if optimizer is not None:
            request.optimizer.CopyFrom(optimizer)
        return self.rpc.CreateSession(request, timeout=60).session

    def close_session(self, session_id):
        self.rpc.CloseSession(spb.CloseSessionRequest(session_id=session_id), timeout=30)

    def train_step(self, session_id, feeds, loss, fetch=(), seed=0, learning_rate=0.0,
                   timeout=60):
        request = spb.TrainStepRequest(session_id=session_id, loss=loss, fetch=list(fetch),
                                       seed=seed, learning_rate=learning_rate)
        fill(request.feeds, feeds)
        return Step(self.rpc.TrainStep(request, timeout=timeout))

    def get_parameters(self, session_id, names=(), include_optimizer_state=False):
        return Values(self.rpc.GetParameters(spb.GetParametersRequest(
            session_id=session_id, names=list(names),
            include_optimizer_state=include_optimizer_state), timeout=30))

    def set_parameters(self, session_id, parameters=None, buffers=None,
                       optimizer_state=None, step=None):
        request = spb.SetParametersRequest(session_id=session_id)
        fill(request.parameters, parameters)
        fill(request.buffers, buffers)
        fill(request.optimizer_state, optimizer_state)
        if step is not None:
            request.step = step
        return self.rpc.SetParameters(request, timeout=30).session

    def forward(self, model, feeds=None, fetch=(), loss="", wrt=(),
                mode=pb.MODE_UNSPECIFIED, seed=0, ttl_seconds=0):
        """Forward on a Graph or a session id (str); returns the ForwardResponse."""
        request = pb.ForwardRequest(fetch=list(fetch), loss=loss, wrt=list(wrt), mode=mode,
                                    seed=seed, ttl_seconds=ttl_seconds)
        if isinstance(model, str):
            request.session_id = model
        else:
            request.graph.CopyFrom(model)
        fill(request.feeds, feeds)
        return self.rpc.Forward(request, timeout=60)

    def backward(self, activation_id, from_loss=False, output_gradients=None, wrt=(),
                 keep=False):
        """Backward on a held activation; returns the gradients as numpy."""
        request = pb.BackwardRequest(activation_id=activation_id, from_loss=from_loss,
                                     wrt=list(wrt), keep=keep)
        fill(request.output_gradients, output_gradients)
        return arrays(self.rpc.Backward(request, timeout=60).gradients)

    def info(self):
        return self.rpc.GetServerInfo(pb.GetServerInfoRequest(), timeout=30)

    def alive(self):
        return self.process.poll() is None

    def serving(self):
        """grpc.health.v1.Health/Check with an empty request answers SERVING
        (field 1 = 1)."""
        check = self.channel.unary_unary("/grpc.health.v1.Health/Check",
                                         request_serializer=lambda b: b,
                                         response_deserializer=lambda b: b)
        return check(b"", timeout=10) == b"\x08\x01"

    def peak_rss_bytes(self):
        """The process's peak resident set (VmHWM), from /proc."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc/<pid>/status")

    def output(self):
        """Everything the server has printed so far."""
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Sends `sig` (SIGTERM: graceful; SIGKILL: a crash), waits for the
        process to end and returns its exit code (SIGKILL after `timeout`)."""
        self.channel.close()
        if self.alive():
            self.stopped = True
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def close(self, check=True):
        """Stops the server (SIGTERM). With `check`, a server that had died of
        an error or exits with one (a sanitizer's report at exit, leaks say)
        fails the caller, with what it printed; one the caller stopped with
        stop() is the caller's to judge."""
        by_caller = self.stopped
        died = not by_caller and not self.alive()
        code = self.stop(timeout=60)
        output = self.output()
        if os.path.exists(self.log_path):
            os.unlink(self.log_path)
        if check and not by_caller and code != 0:
            how = "had died" if died else "exited"
            raise AssertionError(f"gradserve {how} with status {code}:\n{output}")


def slow_compute_request(layers=24, width=512, batch=512, seed=0, backward=True):
    """A Compute of `layers` Linear+Tanh pairs, with a loss and its
    gradients unless not `backward` (then the pass holds two activations
    at a time, however deep): a call that is still running when something
    happens (24 layers: about half a second on two idle cores)."""
    rng = np.random.default_rng(seed)
    nodes = []
    for i in range(layers):
        nodes += [node(f"fc{i}", "Linear", [f"h{i}", "W"], [f"z{i}"]),
                  node(f"t{i}", "Tanh", [f"z{i}"], [f"h{i + 1}"])]
    nodes.append(node("loss", "Sum", [f"h{layers}"], ["L"]))
    g = graph(nodes, inputs=["h0"],
              parameters={"W": rng.normal(size=(width, width)).astype(np.float32) * 0.05})
    return compute_request(g, {"h0": rng.normal(size=(batch, width)).astype(np.float32)},
                           loss="L" if backward else "", fetch=["L"])


def slow_layers(server, seconds, backward=False):
    """The depth of slow_compute_request that takes about `seconds` on
    `server` (machines and their ISAs differ by 3x and more): a 16-layer
    call is timed there, after a first one that compiles it. At most 1536
    layers: the up-front memory bound counts 2 MiB a layer against the
    default 4 GiB."""
    probe = slow_compute_request(layers=16, backward=backward)
    server.rpc.Compute(probe, timeout=120)
    start = time.monotonic()
    server.rpc.Compute(probe, timeout=120)
    per_layer = (time.monotonic() - start) / 16
    return max(16, min(1536, math.ceil(seconds / per_layer)))


def tiny_compute_request(rng, first="fc1", fetch=()):
    """The 4-8-8-2 tanh/relu MLP with an MSE loss at batch 4, values from
    `rng` (client_bench's tiny graph: a few hundred operations); `first`
    names the first node."""
    p = {"W1": rng.normal(size=(8, 4)), "W2": rng.normal(size=(8, 8)),
         "W3": rng.normal(size=(2, 8))}
    g = graph([node(first, "Linear", ["x", "W1"], ["h1"]),
               node("act1", "Tanh", ["h1"], ["a1"]),
               node("fc2", "Linear", ["a1", "W2"], ["h2"]),
               node("act2", "ReLU", ["h2"], ["a2"]),
               node("fc3", "Linear", ["a2", "W3"], ["y"]),
               node("loss", "MSELoss", ["y", "t"], ["L"])],
              inputs=["x", "t"], parameters=p)
    return compute_request(g, feeds={"x": rng.normal(size=(4, 4)),
                                     "t": rng.normal(size=(4, 2))},
                           fetch=list(fetch), loss="L")


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def rpc_error(call, *args, **kwargs):
    """The grpc.RpcError `call` raises (fails the test when it returns)."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as e:
        return e
    raise AssertionError(f"{getattr(call, '__name__', call)} succeeded; an error was expected")


def bitwise_equal(a, b):
    """Same dtype, shape and bytes."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same(a, b, what=""):
    """Dicts (or arrays) equal bit for bit."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{what}: {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{what}[{k}]")
        return
    assert bitwise_equal(a, b), f"{what}: not bitwise equal (max diff " \
        f"{np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))})"
