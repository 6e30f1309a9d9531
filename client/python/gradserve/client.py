"""gradserve.Client: every GradientService call with NumPy in and out."""

from __future__ import annotations

import os
import random
import threading
import time
import weakref
from dataclasses import dataclass
from typing import (TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Union)

import grpc
import numpy as np

from gradserve import _shm, _tensors, errors
from gradserve.graph import Graph, OnnxModel
from gradserve.results import (Activation, ComputeResult, Description, GradientCheck,
                               HessianEigenvalues, ServerInfo)
from gradserve.v1 import gradient_service_pb2 as pb
from gradserve.v1 import gradient_service_pb2_grpc as pb_grpc
from gradserve.v1 import graph_pb2, session_pb2, tensor_pb2

if TYPE_CHECKING:
    from gradserve.session import Session

Arrays = Mapping[str, Any]
ModelLike = Union[Graph, OnnxModel, graph_pb2.Graph, bytes, str, "os.PathLike[str]", Any]

#: The server's default --max_message_bytes (1 GiB): the channel sends and
#: receives messages up to it.
MAX_MESSAGE_BYTES = 1 << 30
#: Feeds at least this large go through shared memory when it is in use.
SHARED_MEMORY_MIN_BYTES = 64 << 10

_MODE_NAMES = {None: pb.MODE_UNSPECIFIED, "train": pb.MODE_TRAIN, "eval": pb.MODE_EVAL}


class _Modes:
    """mode= values: None (the server's default, train), "train" or "eval"."""

    def __getitem__(self, mode: Optional[str]) -> int:
        if mode not in _MODE_NAMES:
            raise ValueError(f"mode must be 'train' or 'eval', not {mode!r}")
        return _MODE_NAMES[mode]


_MODES = _Modes()


@dataclass(frozen=True)
class TLS:
    """TLS for the channel: `ca` (PEM bytes or a path; None = the system's
    roots), `cert`/`key` for mutual TLS, `server_name` to check instead of
    the address's host."""

    ca: Union[bytes, str, None] = None
    cert: Union[bytes, str, None] = None
    key: Union[bytes, str, None] = None
    server_name: Optional[str] = None

    def credentials(self) -> grpc.ChannelCredentials:
        def pem(value: Union[bytes, str, None]) -> Optional[bytes]:
            if value is None or isinstance(value, bytes):
                return value
            with open(value, "rb") as f:
                return f.read()
        return grpc.ssl_channel_credentials(root_certificates=pem(self.ca),
                                            private_key=pem(self.key),
                                            certificate_chain=pem(self.cert))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter (as gradctl's): the wait before retry r
    is about initial·multiplier^(r-1), drawn from ±jitter of it, at most
    max_backoff; at most max_retries retries.

    Retried: UNAVAILABLE (the server restarting or unreachable) for calls
    that are safe to repeat, and RESOURCE_EXHAUSTED only when the server
    marks it transient: its message then ends in "retry later" (the compute
    queue full, --max_inflight_bytes busy), said before anything ran, so every
    call retries it. Other RESOURCE_EXHAUSTED (a request over a limit) would
    fail again and are raised at once. TrainStep, CreateSession, CloseSession
    and Backward are not retried on UNAVAILABLE: the server may have applied
    them before the connection broke; except when a draining server refused
    the call before starting it (its message then ends in "retry on another
    replica")."""

    max_retries: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def backoff(self, retry: int, rng: random.Random) -> float:
        base = self.initial_backoff * self.multiplier ** (retry - 1)
        return min(self.max_backoff, base * rng.uniform(1 - self.jitter, 1 + self.jitter))


_NOT_REPEATABLE = {"TrainStep", "CreateSession", "CloseSession", "Backward"}


def retryable(method: str, error: errors.Error) -> bool:
    """Whether a failed call of `method` is retried (see RetryPolicy)."""
    if isinstance(error, errors.ResourceExhausted):
        return error.details.rstrip().endswith("retry later")
    if isinstance(error, errors.Unavailable):
        return (method not in _NOT_REPEATABLE or
                error.details.rstrip().endswith("retry on another replica"))
    return False


def set_model(request: Any, model: ModelLike) -> None:
    """Sets a request's `model` oneof: a Graph (builder or message), ONNX
    (an OnnxModel or bytes), a Session (or its id), or a graph file path."""
    if isinstance(model, (str, os.PathLike)) and os.path.splitext(os.fspath(model))[1] in (
            ".json", ".pbtxt", ".onnx"):
        model = Graph.load(model)
    if isinstance(model, Graph):
        request.graph.CopyFrom(model.proto)
    elif isinstance(model, graph_pb2.Graph):
        request.graph.CopyFrom(model)
    elif isinstance(model, OnnxModel):
        request.onnx_model = model.data
    elif isinstance(model, bytes):
        request.onnx_model = model
    elif hasattr(model, "id"):  # a Session
        request.session_id = model.id
    elif isinstance(model, str):
        request.session_id = model
    else:
        raise TypeError(f"not a model: {type(model).__name__} (a gradserve.Graph, an "
                        "OnnxModel, ONNX bytes, a Session or a graph file path)")


def default_loss(model: Any, loss: Optional[str]) -> str:
    """`loss`, else the model's own (Graph.loss, OnnxModel.loss, Session.loss)."""
    if loss is not None:
        return str(loss)
    return getattr(model, "loss", None) or ""


def _names(values: Optional[Iterable[Any]]) -> List[str]:
    return [str(v) for v in (values or ())]


class Client:
    """A connection to a gradserve server.

        client = gradserve.Client("localhost:50051")
        result = client.compute(graph, {"x": x}, loss="L")
        result.gradients["W1"]          # a NumPy array

    address: "host:port" or "unix:///path". token: a bearer token (needs
    `tls`; default $GRADSERVE_TOKEN when TLS is on). tls: None (plaintext),
    True (the system's roots) or a gradserve.TLS. timeout: seconds for each
    call (None = no deadline). dtype: the float dtype arrays are sent as
    (float32; float64 runs stateless calls in float64 end to end).
    shared_memory: "auto" (use it when the server is on this host and allows
    it, silently otherwise), True (use it or raise), False. Use as a context
    manager, or call close()."""

    def __init__(self, address: str = "localhost:50051", *, token: Optional[str] = None,
                 tls: Union[TLS, bool, None] = None, timeout: Optional[float] = 120.0,
                 retry: RetryPolicy = RetryPolicy(), dtype: Any = "float32",
                 shared_memory: Union[str, bool] = "auto",
                 max_message_bytes: int = MAX_MESSAGE_BYTES,
                 options: Sequence[tuple] = ()):
        self.address = address
        self.timeout = timeout
        self.retry = retry
        self.dtype = _tensors.float_dtype(dtype)
        self._rng = random.Random()
        channel_options = [("grpc.max_send_message_length", max_message_bytes),
                           ("grpc.max_receive_message_length", max_message_bytes),
                           # A restarted server is found again within seconds
                           # (gRPC's defaults back off to two minutes).
                           ("grpc.initial_reconnect_backoff_ms", 200),
                           ("grpc.min_reconnect_backoff_ms", 200),
                           ("grpc.max_reconnect_backoff_ms", 5000), *options]
        if tls is True:
            tls = TLS()
        if tls is None:
            if token is not None:
                raise ValueError("a token needs TLS: gRPC sends call credentials only over "
                                 "secure channels (pass tls=gradserve.TLS(ca=...))")
            self.channel = grpc.insecure_channel(address, options=channel_options)
        else:
            if tls.server_name:
                channel_options.append(("grpc.ssl_target_name_override", tls.server_name))
            credentials = tls.credentials()
            token = token if token is not None else os.environ.get("GRADSERVE_TOKEN")
            if token:
                credentials = grpc.composite_channel_credentials(
                    credentials, grpc.access_token_call_credentials(token))
            self.channel = grpc.secure_channel(address, credentials, options=channel_options)
        self.rpc = pb_grpc.GradientServiceStub(self.channel)
        self._shm_mode = shared_memory
        self._shm: Optional[_shm.Region] = None
        self._shm_checked = shared_memory is False
        self._shm_lock = threading.Lock()
        #: Bytes of feeds sent through shared memory so far (0: not used).
        self.shared_memory_bytes = 0
        self._shm_holder: List[Optional[_shm.Region]] = [None]
        self._finalizer = weakref.finalize(self, Client._cleanup, self.channel,
                                           self._shm_holder)

    # Lifetime ----------------------------------------------------------------

    @staticmethod
    def _cleanup(channel: grpc.Channel, holder: List[Optional[_shm.Region]]) -> None:
        if holder[0] is not None:
            holder[0].close()
            holder[0] = None
        channel.close()

    def close(self) -> None:
        """Closes the channel and removes the shared-memory file, if any."""
        self._finalizer()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # Calls -------------------------------------------------------------------

    def call(self, method: str, request: Any, *, timeout: Optional[float] = None,
             metadata: Optional[Sequence[tuple]] = None) -> Any:
        """One unary call with the retry policy; raises gradserve.Error."""
        rpc_method = getattr(self.rpc, method)
        retry = 0
        while True:
            try:
                return rpc_method(request, timeout=timeout if timeout is not None
                                  else self.timeout, metadata=metadata)
            except grpc.RpcError as rpc_error:
                error = errors.from_rpc_error(rpc_error)
            if retry >= self.retry.max_retries or not retryable(method, error):
                raise error
            retry += 1
            time.sleep(self.retry.backoff(retry, self._rng))

    def info(self) -> ServerInfo:
        """The server's version, ops (with inputs and attributes), limits, features."""
        return ServerInfo(self.call("GetServerInfo", pb.GetServerInfoRequest()))

    def compute_request(self, model: ModelLike, feeds: Optional[Arrays] = None, *,
                        fetch: Optional[Iterable[Any]] = None,
                        wrt: Optional[Iterable[Any]] = None, loss: Optional[Any] = None,
                        output_gradients: Optional[Arrays] = None,
                        mode: Optional[str] = None, seed: int = 0,
                        diagnostics: bool = False, dtype: Any = None) -> pb.ComputeRequest:
        """The ComputeRequest compute() sends (see compute)."""
        float_type = self._float_type(dtype)
        request = pb.ComputeRequest(fetch=_names(fetch), loss=default_loss(model, loss),
                                    wrt=_names(wrt), mode=_MODES[mode], seed=seed,
                                    diagnostics=diagnostics)
        set_model(request, model)
        _tensors.fill(request.feeds, feeds, float_type)
        _tensors.fill(request.output_gradients, output_gradients, float_type)
        return request

    def compute(self, model: ModelLike, feeds: Optional[Arrays] = None, *,
                fetch: Optional[Iterable[Any]] = None, wrt: Optional[Iterable[Any]] = None,
                loss: Optional[Any] = None, output_gradients: Optional[Arrays] = None,
                mode: Optional[str] = None, seed: int = 0, diagnostics: bool = False,
                dtype: Any = None, timeout: Optional[float] = None) -> ComputeResult:
        """Forward and, with a loss or output_gradients, backward.

        model: a Graph, OnnxModel, Session, or graph file. feeds: {input: array}.
        fetch: values to return (default: the graph's outputs). wrt: values
        whose gradients come back (default: every parameter). loss: the scalar
        to differentiate; default the model's own (the last loss method of a
        Graph), "" for forward only. output_gradients: seeds dL/dv (added to the
        loss's). mode: "train" (default) or "eval". dtype: np.float64 computes
        in float64. Returns .outputs, .gradients, .buffers, .loss, .diagnostics."""
        request = self.compute_request(model, None, fetch=fetch, wrt=wrt, loss=loss,
                                       output_gradients=output_gradients, mode=mode,
                                       seed=seed, diagnostics=diagnostics, dtype=dtype)
        reply = self.send("Compute", request, feeds, self._float_type(dtype), timeout)
        return ComputeResult(reply, request.loss)

    def predict(self, model: ModelLike, feeds: Optional[Arrays] = None, *,
                fetch: Optional[Iterable[Any]] = None, mode: Optional[str] = "eval",
                dtype: Any = None) -> Dict[str, np.ndarray]:
        """Forward only (no loss, no gradients), in EVAL mode unless told:
        the fetched outputs (default: the graph's outputs)."""
        return self.compute(model, feeds, fetch=fetch, loss="", mode=mode, dtype=dtype).outputs

    def stream(self, requests: Iterable[Union[pb.ComputeRequest, Mapping[str, Any]]], *,
               raise_errors: bool = True,
               timeout: Optional[float] = None) -> Iterator[Union[ComputeResult, errors.Error]]:
        """ComputeStream: many Compute requests on one call, replies in order.

        Each item is a dict of compute()'s arguments ({"model": g, "feeds":
        {...}, "loss": "L"}) or a ComputeRequest. Yields a ComputeResult per
        item; an item the server refused raises its gradserve.Error there, or
        with raise_errors=False is yielded as the Error and the stream goes on."""
        losses: List[str] = []

        def encoded() -> Iterator[pb.ComputeRequest]:
            for item in requests:
                if not isinstance(item, pb.ComputeRequest):
                    item = dict(item)
                    item = self.compute_request(item.pop("model"), item.pop("feeds", None),
                                                **item)
                losses.append(item.loss)
                yield item

        try:
            for reply in self.rpc.ComputeStream(encoded(), timeout=timeout):
                loss = losses[reply.index] if reply.index < len(losses) else ""
                if reply.code != 0:
                    error = errors.from_numeric(reply.code, reply.error_message)
                    if raise_errors:
                        raise error
                    yield error
                else:
                    yield ComputeResult(reply.response, loss)
        except grpc.RpcError as rpc_error:
            raise errors.from_rpc_error(rpc_error) from None

    def describe(self, model: ModelLike, input_shapes: Optional[Mapping[str, Any]] = None,
                 ) -> Description:
        """Output shapes, parameter counts and FLOPs of every node, without
        running. input_shapes: {input: shape or (shape, dtype)}; default the
        shapes given to Graph.input()."""
        request = pb.DescribeRequest()
        set_model(request, model)
        shapes = dict(getattr(model, "input_shapes", {}) or {})
        shapes.update(input_shapes or {})
        for name, shape in shapes.items():
            dims, dtype = shape if (len(shape) == 2 and isinstance(shape[1], str)) else (
                shape, "float32")
            request.input_shapes[name].dims.extend(int(d) for d in dims)
            request.input_shapes[name].dtype = (tensor_pb2.DATA_TYPE_INT64 if dtype == "int64"
                                                else tensor_pb2.DATA_TYPE_FLOAT32)
        return Description(self.call("Describe", request))

    def forward(self, model: ModelLike, feeds: Optional[Arrays] = None, *,
                fetch: Optional[Iterable[Any]] = None, wrt: Optional[Iterable[Any]] = None,
                loss: Optional[Any] = None, mode: Optional[str] = None, seed: int = 0,
                ttl_seconds: int = 0, dtype: Any = None) -> Activation:
        """Forward now; returns an Activation whose .backward() runs later on
        what the server kept (without recomputing the forward pass)."""
        request = pb.ForwardRequest(fetch=_names(fetch), loss=default_loss(model, loss),
                                    wrt=_names(wrt), mode=_MODES[mode], seed=seed,
                                    ttl_seconds=ttl_seconds)
        set_model(request, model)
        float_type = self._float_type(dtype)
        reply = self.send("Forward", request, feeds, float_type)
        return Activation(self, reply, request.loss, float_type)

    def backward(self, activation_id: str, output_gradients: Optional[Arrays] = None, *,
                 from_loss: bool = False, wrt: Optional[Iterable[Any]] = None,
                 keep: bool = False, dtype: Any = None) -> Dict[str, np.ndarray]:
        """Backward on a Forward's activation id (Activation.backward calls this)."""
        request = pb.BackwardRequest(activation_id=activation_id, from_loss=from_loss,
                                     wrt=_names(wrt), keep=keep)
        _tensors.fill(request.output_gradients, output_gradients, self._float_type(dtype))
        return _tensors.arrays(self.call("Backward", request).gradients)

    def check_gradients(self, model: ModelLike, feeds: Optional[Arrays] = None, *,
                        loss: Optional[Any] = None, output_gradients: Optional[Arrays] = None,
                        wrt: Optional[Iterable[Any]] = None, mode: Optional[str] = None,
                        seed: int = 0, epsilon: float = 0.0, rtol: float = 0.0,
                        atol: float = 0.0, max_elements_per_tensor: int = 0) -> GradientCheck:
        """Analytic gradients against central finite differences in float64
        (0 = torch.autograd.gradcheck's epsilon 1e-6, rtol 1e-3, atol 1e-5)."""
        request = pb.CheckGradientsRequest(
            loss=default_loss(model, loss), wrt=_names(wrt), mode=_MODES[mode], seed=seed,
            epsilon=epsilon, rtol=rtol, atol=atol,
            max_elements_per_tensor=max_elements_per_tensor)
        set_model(request, model)
        _tensors.fill(request.feeds, feeds)
        _tensors.fill(request.output_gradients, output_gradients)
        return GradientCheck(self.call("CheckGradients", request))

    def hessian_vector_product(self, model: ModelLike, feeds: Optional[Arrays],
                               vector: Arrays, *, loss: Optional[Any] = None,
                               wrt: Optional[Iterable[Any]] = None, mode: Optional[str] = None,
                               seed: int = 0) -> Dict[str, np.ndarray]:
        """H·v of the loss over `wrt` (default: the vector's names)."""
        request = pb.HessianVectorProductRequest(
            loss=default_loss(model, loss), wrt=_names(wrt) or list(vector),
            mode=_MODES[mode], seed=seed)
        set_model(request, model)
        _tensors.fill(request.feeds, feeds)
        _tensors.fill(request.vector, vector)
        return _tensors.arrays(self.call("HessianVectorProduct", request).product)

    def hessian_eigenvalues(self, model: ModelLike, feeds: Optional[Arrays] = None, *,
                            k: int = 1, loss: Optional[Any] = None,
                            wrt: Optional[Iterable[Any]] = None, mode: Optional[str] = None,
                            seed: int = 0) -> HessianEigenvalues:
        """The k largest and smallest Hessian eigenvalues and the verdict
        (minimum, maximum, saddle, not critical, degenerate)."""
        request = pb.HessianEigenvaluesRequest(loss=default_loss(model, loss),
                                               wrt=_names(wrt), mode=_MODES[mode], seed=seed,
                                               k=k)
        set_model(request, model)
        _tensors.fill(request.feeds, feeds)
        return HessianEigenvalues(self.call("HessianEigenvalues", request))

    def session(self, model: ModelLike, optimizer: Any = None, *,
                max_grad_norm: float = 0.0, frozen: Iterable[str] = (), ttl_seconds: int = 0,
                label: str = "", loss: Optional[str] = None) -> "Session":
        """A model held server-side (CreateSession), trained in place; a
        context manager that closes it. optimizer: gradserve.SGD/Adam/AdamW
        (None: the session computes but does not train)."""
        from gradserve.session import Session
        return Session.create(self, model, optimizer, max_grad_norm=max_grad_norm,
                              frozen=frozen, ttl_seconds=ttl_seconds, label=label, loss=loss)

    def sessions(self) -> List[session_pb2.SessionInfo]:
        """This tenant's sessions (ListSessions)."""
        return list(self.call("ListSessions", session_pb2.ListSessionsRequest()).sessions)

    # Shared memory -------------------------------------------------------------

    def _float_type(self, dtype: Any) -> np.dtype:
        return self.dtype if dtype is None else _tensors.float_dtype(dtype)

    def _region(self) -> Optional[_shm.Region]:
        """The registered region, set up on first use; None when not in use."""
        if self._shm_checked:
            return self._shm
        with self._shm_lock:
            if not self._shm_checked:
                self._shm = self._open_region()
                self._shm_holder[0] = self._shm
                self._shm_checked = True
        return self._shm

    def _open_region(self) -> Optional[_shm.Region]:
        required = self._shm_mode is True
        try:
            if not _shm.same_host(self.address):
                raise errors.Error("the server is not on this host")
            if "shared_memory" not in self.info().features:
                raise errors.Error("the server does not allow shared memory "
                                   "(--allow_shared_memory)")
            region = _shm.Region(256 << 20)
        except (errors.Error, OSError) as e:
            if required:
                raise errors.FailedPrecondition(f"shared memory unavailable: {e}") from None
            return None
        try:
            self._register(region)
        except errors.Error:
            region.close()
            if required:
                raise
            return None
        return region

    def _register(self, region: _shm.Region) -> None:
        self.call("RegisterSharedMemory", pb.RegisterSharedMemoryRequest(
            region=region.name, key=region.key, offset=0, byte_size=region.nbytes))

    def send(self, method: str, request: Any, feeds: Optional[Arrays],
             float_type: Optional[np.dtype] = None, timeout: Optional[float] = None) -> Any:
        """Fills request.feeds from `feeds` and calls `method`. With shared
        memory in use, feeds of SHARED_MEMORY_MIN_BYTES or more are copied
        once into the region and sent as references (never made bytes); a
        region the server lost (a reconnect) is registered again once, and
        the call is made with plain bytes should that fail."""
        float_type = self.dtype if float_type is None else float_type
        arrays = {name: _tensors.wire_array(v, float_type) for name, v in (feeds or {}).items()}
        region = self._region() if arrays else None
        offsets: List[int] = []
        placed: List[str] = []
        try:
            for name, array in arrays.items():
                tensor = None
                if region is not None and array.nbytes >= SHARED_MEMORY_MIN_BYTES:
                    tensor = region.put(array)
                if tensor is None:
                    _tensors.put(request.feeds[name], array)
                else:
                    request.feeds[name].CopyFrom(tensor)
                    offsets.append(tensor.shared_memory.offset)
                    placed.append(name)
            if not placed:
                return self.call(method, request, timeout=timeout)
            try:
                reply = self.call(method, request, timeout=timeout)
            except errors.NotFound as e:
                if f"shared-memory region '{region.name}'" not in e.details:
                    raise
                try:
                    self._register(region)
                    reply = self.call(method, request, timeout=timeout)
                except errors.Error:
                    for name in placed:
                        _tensors.put(request.feeds[name], arrays[name])
                    return self.call(method, request, timeout=timeout)
            self.shared_memory_bytes += sum(arrays[name].nbytes for name in placed)
            return reply
        finally:
            for offset in offsets:
                region.free(offset)


__all__ = ["Client", "TLS", "RetryPolicy", "retryable"]
