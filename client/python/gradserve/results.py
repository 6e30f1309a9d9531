"""What calls return: plain objects with NumPy arrays and Python numbers."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from gradserve import _tensors
from gradserve.v1 import gradient_service_pb2 as pb


class ComputeResult:
    """A Compute reply: `.outputs`, `.gradients`, `.buffers` ({name: array},
    read-only views of the reply's bytes), `.loss` (the loss's value when the
    request named one, else None), `.diagnostics` (the Diagnostics message
    when asked for), `.proto` (the reply)."""

    def __init__(self, reply: pb.ComputeResponse, loss: str = ""):
        self.proto = reply
        self.outputs = _tensors.arrays(reply.outputs)
        self.gradients = _tensors.arrays(reply.gradients)
        self.buffers = _tensors.arrays(reply.buffers)
        self.loss: Optional[np.generic] = (self.outputs[loss][()]
                                           if loss and loss in self.outputs else None)
        self.diagnostics = reply.diagnostics if reply.HasField("diagnostics") else None

    def __repr__(self) -> str:
        return (f"ComputeResult(loss={self.loss}, outputs={sorted(self.outputs)}, "
                f"gradients={sorted(self.gradients)})")


class StepResult:
    """A TrainStep reply: `.loss` (before the update, a float), `.step`,
    `.grad_norm` (before clipping), `.outputs`, `.diagnostics`."""

    def __init__(self, reply: Any):
        self.proto = reply
        self.loss = float(_tensors.to_numpy(reply.loss)) if reply.HasField("loss") else None
        self.step = reply.step
        self.grad_norm = reply.grad_norm
        self.outputs = _tensors.arrays(reply.outputs)
        self.diagnostics = reply.diagnostics if reply.HasField("diagnostics") else None

    def __repr__(self) -> str:
        return f"StepResult(step={self.step}, loss={self.loss}, grad_norm={self.grad_norm})"


class Activation:
    """What Forward kept on the server: `.outputs`, `.buffers`, `.id`,
    `.expires_unix_ms`; `.backward(grads)` runs the backward pass later."""

    def __init__(self, client: Any, reply: pb.ForwardResponse, loss: str,
                 float_type: np.dtype):
        self._client = client
        self._float_type = float_type
        self.proto = reply
        self.id = reply.activation_id
        self.expires_unix_ms = reply.expires_unix_ms
        self.outputs = _tensors.arrays(reply.outputs)
        self.buffers = _tensors.arrays(reply.buffers)
        self.loss_name = loss
        self.loss = self.outputs[loss][()] if loss and loss in self.outputs else None

    def backward(self, output_gradients: Optional[Dict[str, Any]] = None, *,
                 from_loss: Optional[bool] = None, wrt: Optional[List[str]] = None,
                 keep: bool = False) -> Dict[str, np.ndarray]:
        """Gradients {name: array} from the Forward's loss (the default when
        it named one and no seeds are given) and/or seeds dL/dv on fetched
        values. The activation is released unless `keep`."""
        if not self.id:
            raise ValueError("this Forward kept nothing to differentiate")
        if from_loss is None:
            from_loss = bool(self.loss_name) and not output_gradients
        return self._client.backward(self.id, output_gradients, from_loss=from_loss, wrt=wrt,
                                     keep=keep, dtype=self._float_type)

    def __repr__(self) -> str:
        return f"Activation({self.id!r}, outputs={sorted(self.outputs)})"


class Description:
    """A Describe reply: `.nodes` (name, op, output shapes, parameters,
    forward FLOPs, as dicts), `.total_parameters`, `.forward_flops`,
    `.backward_flops`; str() is a table like gradctl describe's."""

    def __init__(self, reply: pb.DescribeResponse):
        self.proto = reply
        self.nodes = [{"name": n.name, "op": n.op,
                       "output_shapes": [list(s.dims) for s in n.output_shapes],
                       "parameters": n.parameters, "forward_flops": n.forward_flops}
                      for n in reply.nodes]
        self.total_parameters = reply.total_parameters
        self.forward_flops = reply.forward_flops
        self.backward_flops = reply.backward_flops

    def __str__(self) -> str:
        lines = [f"{'node':<16} {'op':<18} {'output shapes':<24} {'params':>8} "
                 f"{'forward FLOPs':>14}"]
        for n in self.nodes:
            shapes = ", ".join(str(s) for s in n["output_shapes"])
            lines.append(f"{n['name']:<16} {n['op']:<18} {shapes:<24} {n['parameters']:>8} "
                         f"{n['forward_flops']:>14}")
        lines.append(f"total: {self.total_parameters} trainable parameters, "
                     f"{self.forward_flops} forward FLOPs, {self.backward_flops} backward FLOPs")
        return "\n".join(lines)


class ServerInfo:
    """GetServerInfo: `.version`, `.ops` ({name: OpInfo message}), `.limits`,
    `.features` (a set), `.cpu_isa`, `.onednn_version`, `.proto`."""

    def __init__(self, reply: pb.GetServerInfoResponse):
        self.proto = reply
        self.version = reply.version
        self.ops = {op.name: op for op in reply.ops}
        self.limits = reply.limits
        self.features = set(reply.features)
        self.cpu_isa = reply.cpu_isa
        self.onednn_version = reply.onednn_version


class GradientCheck:
    """CheckGradients: `.passed`, `.tensors` (TensorCheck messages: name,
    elements_checked, max_abs_error, max_rel_error, worst_index, passed...)."""

    def __init__(self, reply: pb.CheckGradientsResponse):
        self.proto = reply
        self.passed = reply.passed
        self.tensors = list(reply.tensors)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return "\n".join(f"{t.name}: {'pass' if t.passed else 'FAIL'} "
                         f"({t.elements_checked} checked, max abs error {t.max_abs_error:.3g})"
                         for t in self.tensors)


class HessianEigenvalues:
    """`.largest` (descending), `.smallest` (ascending), `.exact`,
    `.gradient_norm`, `.critical_point`, `.loss`."""

    def __init__(self, reply: pb.HessianEigenvaluesResponse):
        self.proto = reply
        self.largest = list(reply.largest)
        self.smallest = list(reply.smallest)
        self.exact = reply.exact
        self.gradient_norm = reply.gradient_norm
        self.critical_point = reply.critical_point
        self.loss = reply.loss

    def __repr__(self) -> str:
        return (f"HessianEigenvalues(largest={self.largest}, smallest={self.smallest}, "
                f"critical_point={self.critical_point!r})")
