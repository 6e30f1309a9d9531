"""Sessions: a model held server-side and trained in place."""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, Mapping, Optional, Union

import numpy as np

from gradserve import _tensors
from gradserve.results import (Activation, ComputeResult, GradientCheck, HessianEigenvalues,
                               StepResult)
from gradserve.v1 import session_pb2

Arrays = Mapping[str, Any]


class Session:
    """A server-side model (CreateSession) with its parameters, buffers and
    optimizer state. Made by Client.session(); a context manager that
    closes it (CloseSession) on exit.

        with client.session(graph, optimizer=gradserve.SGD(lr=0.1)) as s:
            for x, y in batches:
                step = s.train_step({"x": x, "y": y})
            s.save("model.npz")

    `.id`, `.info` (the SessionInfo), `.loss` (the value train_step
    minimises: the graph's loss unless given)."""

    def __init__(self, client: Any, info: session_pb2.SessionInfo, loss: str):
        self.client = client
        self.info = info
        self.id = info.session_id
        self.loss = loss
        self.closed = False

    @classmethod
    def create(cls, client: Any, model: Any, optimizer: Any = None, *,
               max_grad_norm: float = 0.0, frozen: Iterable[str] = (), ttl_seconds: int = 0,
               label: str = "", loss: Optional[str] = None) -> "Session":
        from gradserve.client import default_loss, set_model
        request = session_pb2.CreateSessionRequest(frozen=list(frozen), ttl_seconds=ttl_seconds,
                                                   label=label)
        set_model(request, model)
        if optimizer is not None:
            request.optimizer.CopyFrom(optimizer.to_proto(max_grad_norm))
        reply = client.call("CreateSession", request)
        return cls(client, reply.session, default_loss(model, loss))

    # Training ----------------------------------------------------------------

    def train_step(self, feeds: Arrays, *, loss: Optional[str] = None,
                   fetch: Iterable[Any] = (), seed: int = 0, learning_rate: float = 0.0,
                   diagnostics: bool = False) -> StepResult:
        """One optimizer step on a batch: forward, backward, clip, update.
        Returns the loss before the update, the step count and the gradient
        norm. learning_rate overrides the optimizer's for this step."""
        request = session_pb2.TrainStepRequest(
            session_id=self.id, loss=self.loss if loss is None else loss,
            fetch=[str(f) for f in fetch], seed=seed, learning_rate=learning_rate,
            diagnostics=diagnostics)
        reply = self.client.send("TrainStep", request, feeds)
        return StepResult(reply)

    # Parameters and checkpoints ----------------------------------------------

    def _get(self, names: Iterable[str] = (), optimizer_state: bool = False) -> Any:
        return self.client.call("GetParameters", session_pb2.GetParametersRequest(
            session_id=self.id, names=list(names), include_optimizer_state=optimizer_state))

    def parameters(self, *names: str) -> Dict[str, np.ndarray]:
        """The parameters' current values (all, or those named)."""
        return _tensors.arrays(self._get(names).parameters)

    def buffers(self) -> Dict[str, np.ndarray]:
        """The buffers (e.g. BatchNorm's running statistics)."""
        return _tensors.arrays(self._get().buffers)

    def optimizer_state(self) -> Dict[str, np.ndarray]:
        """"W1/momentum_buffer", "W1/exp_avg", ... as torch.optim names them."""
        return _tensors.arrays(self._get(optimizer_state=True).optimizer_state)

    @property
    def step(self) -> int:
        """TrainSteps applied so far."""
        return self._get().step

    def load_parameters(self, parameters: Optional[Arrays] = None, *,
                        buffers: Optional[Arrays] = None,
                        optimizer_state: Optional[Arrays] = None,
                        step: Optional[int] = None) -> None:
        """SetParameters: replaces the tensors named (a subset is fine),
        atomically; names and shapes must be the session's."""
        request = session_pb2.SetParametersRequest(session_id=self.id)
        _tensors.fill(request.parameters, parameters)
        _tensors.fill(request.buffers, buffers)
        _tensors.fill(request.optimizer_state, optimizer_state)
        if step is not None:
            request.step = step
        self.info = self.client.call("SetParameters", request).session

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """A checkpoint as .npz: parameters/NAME, buffers/NAME,
        optimizer_state/NAME/STATE and step; restore() continues from it
        exactly as if never stopped."""
        reply = self._get(optimizer_state=True)
        contents: Dict[str, np.ndarray] = {"step": np.asarray(reply.step, dtype=np.int64)}
        for kind in ("parameters", "buffers", "optimizer_state"):
            for name, array in _tensors.arrays(getattr(reply, kind)).items():
                contents[f"{kind}/{name}"] = array
        np.savez(path, **contents)

    def restore(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Loads a checkpoint save() wrote (parameters, buffers, optimizer
        state and step)."""
        groups: Dict[str, Dict[str, np.ndarray]] = {
            "parameters": {}, "buffers": {}, "optimizer_state": {}}
        with np.load(path) as data:
            step = int(data["step"]) if "step" in data else None
            for key in data.files:
                kind, _, name = key.partition("/")
                if kind in groups:
                    groups[kind][name] = data[key]
        self.load_parameters(groups["parameters"], buffers=groups["buffers"],
                             optimizer_state=groups["optimizer_state"], step=step)

    # Passes on the session's model -----------------------------------------

    def compute(self, feeds: Optional[Arrays] = None, **kwargs: Any) -> ComputeResult:
        """Client.compute on this session's graph and current parameters."""
        kwargs.setdefault("loss", self.loss)
        return self.client.compute(self, feeds, **kwargs)

    def predict(self, feeds: Optional[Arrays] = None, **kwargs: Any) -> Dict[str, np.ndarray]:
        """Client.predict (forward only, EVAL mode) on this session's model."""
        return self.client.predict(self, feeds, **kwargs)

    def forward(self, feeds: Optional[Arrays] = None, **kwargs: Any) -> Activation:
        """Forward now on the session's model; the Activation's .backward(grads)
        runs later from what the server kept."""
        kwargs.setdefault("loss", self.loss)
        return self.client.forward(self, feeds, **kwargs)

    def describe(self, input_shapes: Optional[Mapping[str, Any]] = None) -> Any:
        return self.client.describe(self, input_shapes)

    def check_gradients(self, feeds: Optional[Arrays] = None, **kwargs: Any) -> GradientCheck:
        """CheckGradients at the session's current parameters."""
        kwargs.setdefault("loss", self.loss)
        return self.client.check_gradients(self, feeds, **kwargs)

    def hessian_eigenvalues(self, feeds: Optional[Arrays] = None, k: int = 1,
                            **kwargs: Any) -> HessianEigenvalues:
        """The Hessian's extreme eigenvalues at the session's parameters."""
        kwargs.setdefault("loss", self.loss)
        return self.client.hessian_eigenvalues(self, feeds, k=k, **kwargs)

    # Lifetime ----------------------------------------------------------------

    def close(self) -> None:
        """CloseSession (once; closing again does nothing)."""
        if not self.closed:
            self.closed = True
            self.client.call("CloseSession", session_pb2.CloseSessionRequest(session_id=self.id))

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Session({self.id!r}, {self.info.parameter_count} parameters)"
