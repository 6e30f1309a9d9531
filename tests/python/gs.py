"""Helpers for the Python tests: numpy <-> Tensor, graph building, a server
process on a free loopback port, and a Compute wrapper."""

import os
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
from gradserve.v1 import tensor_pb2  # noqa: E402

GRADSERVE = os.path.join(BUILD_DIR, "server", "gradserve")
GRADCTL = os.path.join(BUILD_DIR, "client", "gradctl")
MAX_MESSAGE = 1 << 30

_DTYPES = {
    np.dtype(np.float32): tensor_pb2.DATA_TYPE_FLOAT32,
    np.dtype(np.int64): tensor_pb2.DATA_TYPE_INT64,
}


def tensor(array):
    """A numpy array as a Tensor with raw little-endian data."""
    array = np.asarray(array)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    # (np.ascontiguousarray would turn a scalar into shape [1].)
    array = array.astype(array.dtype.newbyteorder("<"), order="C", copy=False)
    return tensor_pb2.Tensor(dtype=_DTYPES[array.dtype], shape=list(array.shape),
                             data=array.tobytes())


def to_numpy(t):
    dtype = {tensor_pb2.DATA_TYPE_FLOAT32: "<f4", tensor_pb2.DATA_TYPE_INT64: "<i8"}[t.dtype]
    return np.frombuffer(t.data, dtype=dtype).reshape(tuple(t.shape)).copy()


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
    req = pb.ComputeRequest(graph=g, fetch=list(fetch), loss=loss, wrt=list(wrt),
                            mode=mode, seed=seed)
    for name, value in (feeds or {}).items():
        req.feeds[name].CopyFrom(tensor(value))
    for name, value in (output_gradients or {}).items():
        req.output_gradients[name].CopyFrom(tensor(value))
    return req


class Result:
    def __init__(self, response):
        self.outputs = {k: to_numpy(v) for k, v in response.outputs.items()}
        self.gradients = {k: to_numpy(v) for k, v in response.gradients.items()}
        self.buffers = {k: to_numpy(v) for k, v in response.buffers.items()}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A gradserve process on a free loopback port, stopped on close().

    What it prints goes to a file, not a pipe: a sanitizer's report (or any
    long output) can never block it, and output() shows it all."""

    def __init__(self, *flags):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        fd, self.log_path = tempfile.mkstemp(prefix="gradserve-", suffix=".log")
        with os.fdopen(fd, "ab") as log:  # append: the child writes at the end
            self.process = subprocess.Popen(
                [GRADSERVE, f"--address={self.address}", *flags],
                stdout=log, stderr=subprocess.STDOUT)
        self.channel = grpc.insecure_channel(self.address, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE)])
        try:
            grpc.channel_ready_future(self.channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            output = self.output()
            self.close(check=False)
            raise RuntimeError(f"gradserve did not start: {output}")
        self.rpc = pb_grpc.GradientServiceStub(self.channel)

    def compute(self, request, timeout=120):
        return Result(self.rpc.Compute(request, timeout=timeout))

    def alive(self):
        return self.process.poll() is None

    def output(self):
        """Everything the server has printed so far."""
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def close(self, check=True):
        """Stops the server (SIGTERM). With `check`, a server that had died of
        an error or exits with one (a sanitizer's report at exit, leaks say)
        fails the caller, with what it printed; one stopped by the caller
        that exited 0 is fine."""
        self.channel.close()
        died = not self.alive()
        if not died:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        output = self.output()
        os.unlink(self.log_path)
        code = self.process.returncode
        if check and code != 0:
            how = "had died" if died else "exited"
            raise AssertionError(f"gradserve {how} with status {code}:\n{output}")


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
