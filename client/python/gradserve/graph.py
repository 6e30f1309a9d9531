"""A graph builder that reads like PyTorch, and graph files.

    g = gradserve.Graph()
    x = g.input("x", [64, 4])
    labels = g.input("labels", [64], dtype="int64")
    h = g.relu(g.linear(x, g.parameter("W1", w1), g.parameter("b1", b1)))
    logits = g.linear(h, g.parameter("W2", w2), g.parameter("b2", b2))
    g.cross_entropy_loss(logits, labels)      # becomes g.loss, the default to minimise

Each op method adds one node (named after its op, or `name=`) and returns its
output Value (a tuple for two outputs). The methods match the ops gradserve
serves (GetServerInfo lists them: `Client.info()`); `g.node(op, inputs, ...)`
adds any op by name. Attributes are keyword arguments with the server's names.
`Graph.load(path)` reads protobuf JSON (.json), text format (.pbtxt) or ONNX
(.onnx) files; `g.save(path)` writes .json or .pbtxt."""

from __future__ import annotations

import math
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from google.protobuf import json_format, text_format

from gradserve import _tensors
from gradserve.v1 import graph_pb2

Shape = Sequence[int]
ValueLike = Union["Value", str]
Ints = Union[int, Sequence[int]]


class Value:
    """A named value of a Graph (an input, parameter, buffer or node output)."""

    __slots__ = ("name", "graph")

    def __init__(self, name: str, graph: "Graph"):
        self.name = name
        self.graph = graph

    def __repr__(self) -> str:
        return f"Value({self.name!r})"

    def __str__(self) -> str:
        return self.name

    def __add__(self, other: ValueLike) -> "Value":
        return self.graph.add(self, other)

    def __sub__(self, other: ValueLike) -> "Value":
        return self.graph.sub(self, other)

    def __mul__(self, other: ValueLike) -> "Value":
        return self.graph.mul(self, other)

    def __truediv__(self, other: ValueLike) -> "Value":
        return self.graph.div(self, other)

    def __matmul__(self, other: ValueLike) -> "Value":
        return self.graph.matmul(self, other)


def _name(value: Optional[ValueLike]) -> str:
    if value is None:
        return ""  # an optional input left out
    return value.name if isinstance(value, Value) else str(value)


def attribute(value: Any) -> graph_pb2.Attribute:
    """A Python value as an Attribute: int/bool -> i, float -> f, str -> s,
    a sequence of ints -> ints, of floats -> floats."""
    if isinstance(value, (bool, int, np.integer)):
        return graph_pb2.Attribute(i=int(value))
    if isinstance(value, (float, np.floating)):
        return graph_pb2.Attribute(f=float(value))
    if isinstance(value, str):
        return graph_pb2.Attribute(s=value)
    values = list(value)
    if all(isinstance(v, (bool, int, np.integer)) for v in values):
        return graph_pb2.Attribute(ints=graph_pb2.Ints(values=[int(v) for v in values]))
    return graph_pb2.Attribute(floats=graph_pb2.Floats(values=[float(v) for v in values]))


def _unary(op: str, doc: str) -> Any:
    """A builder method adding one `op` node on one input."""
    def method(self: "Graph", x: ValueLike, *, name: Optional[str] = None) -> Value:
        return self.node(op, [x], name=name)
    method.__doc__ = doc
    return method


def _conv(op: str, doc: str) -> Any:
    """A convolution's builder method (Conv1d, Conv2d)."""
    def method(self: "Graph", x: ValueLike, weight: ValueLike,
               bias: Optional[ValueLike] = None, *, stride: Ints = 1,
               padding: Union[Ints, str] = 0, dilation: Ints = 1, groups: int = 1,
               padding_mode: Optional[str] = None, name: Optional[str] = None) -> Value:
        return self.node(op, [x, weight, bias], name=name, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, padding_mode=padding_mode)
    method.__doc__ = doc
    return method


def _conv_transpose(op: str, doc: str) -> Any:
    """A transposed convolution's builder method (ConvTranspose1d, 2d); the
    attributes left None take the server's defaults."""
    def method(self: "Graph", x: ValueLike, weight: ValueLike,
               bias: Optional[ValueLike] = None, *, stride: Optional[Ints] = None,
               padding: Optional[Ints] = None, output_padding: Optional[Ints] = None,
               dilation: Optional[Ints] = None, groups: Optional[int] = None,
               name: Optional[str] = None) -> Value:
        return self.node(op, [x, weight, bias], name=name, stride=stride, padding=padding,
                         output_padding=output_padding, dilation=dilation, groups=groups)
    method.__doc__ = doc
    return method


class Graph:
    """A gradserve.v1.Graph under construction (see the module docstring).

    `input_shapes` holds the shapes given to input() (Describe uses them),
    `loss` the value the last loss method defined (Compute and sessions
    minimise it unless told otherwise)."""

    def __init__(self) -> None:
        self.proto = graph_pb2.Graph()
        self.input_shapes: Dict[str, Tuple[Tuple[int, ...], str]] = {}
        self.loss: Optional[str] = None
        self._counts: Dict[str, int] = {}
        self._names: set = set()

    # Values -----------------------------------------------------------------

    def _define(self, name: str) -> Value:
        if name in self._names:
            raise ValueError(f"value '{name}' is already defined in this graph")
        self._names.add(name)
        return Value(name, self)

    def input(self, name: str, shape: Optional[Shape] = None, dtype: str = "float32") -> Value:
        """A graph input, fed with each request; `shape` (and dtype) for describe()."""
        value = self._define(name)
        self.proto.inputs.append(name)
        if shape is not None:
            self.input_shapes[name] = (tuple(int(d) for d in shape), dtype)
        return value

    def parameter(self, name: str, value: Any) -> Value:
        """A trainable tensor with its initial value (float32 on the wire)."""
        defined = self._define(name)
        self.proto.parameters[name].CopyFrom(_tensors.to_tensor(value))
        return defined

    def buffer(self, name: str, value: Any) -> Value:
        """Non-trainable state (running statistics) or a constant."""
        defined = self._define(name)
        self.proto.buffers[name].CopyFrom(_tensors.to_tensor(value))
        return defined

    def output(self, *values: ValueLike) -> None:
        """Values returned when a request fetches none."""
        self.proto.outputs.extend(_name(v) for v in values)

    @property
    def inputs(self) -> List[str]:
        return list(self.proto.inputs)

    @property
    def parameters(self) -> Dict[str, np.ndarray]:
        """The parameters' current values (read-only arrays)."""
        return _tensors.arrays(self.proto.parameters)

    @property
    def buffers(self) -> Dict[str, np.ndarray]:
        return _tensors.arrays(self.proto.buffers)

    # Nodes ------------------------------------------------------------------

    def node(self, op: str, inputs: Iterable[Optional[ValueLike]], *, name: Optional[str] = None,
             outputs: Union[int, Sequence[str]] = 1, **attributes: Any) -> Any:
        """Adds a node of `op`; returns its output Value, or a tuple of them
        when `outputs` is more than one (a count, or the output names)."""
        if name is None:
            stem = OP_METHODS.get(op, op.lower())
            count = self._counts.get(op, 0) + 1
            while f"{stem}{count}" in self._names:
                count += 1
            self._counts[op] = count
            name = f"{stem}{count}"
        if isinstance(outputs, int):
            output_names = [name] if outputs == 1 else [f"{name}.{i}" for i in range(outputs)]
        else:
            output_names = list(outputs)
        node = graph_pb2.Node(name=name, op=op, inputs=[_name(v) for v in inputs])
        for key, value in attributes.items():
            if value is not None:
                node.attributes[key].CopyFrom(attribute(value))
        values = tuple(self._define(n) for n in output_names)
        node.outputs.extend(output_names)
        self.proto.nodes.append(node)
        return values[0] if len(values) == 1 else values

    def _loss(self, op: str, inputs: Sequence[Optional[ValueLike]], name: Optional[str],
              **attributes: Any) -> Value:
        value = self.node(op, inputs, name=name, **attributes)
        self.loss = value.name
        return value

    # Layers
    def linear(self, x: ValueLike, weight: ValueLike, bias: Optional[ValueLike] = None, *,
               name: Optional[str] = None) -> Value:
        """y = x·weightᵀ + bias (torch.nn.functional.linear); weight [out, in]."""
        return self.node("Linear", [x, weight, bias], name=name)

    def matmul(self, a: ValueLike, b: ValueLike, *, name: Optional[str] = None) -> Value:
        """torch.matmul(a, b)."""
        return self.node("MatMul", [a, b], name=name)

    conv1d = _conv("Conv1d", "torch.nn.functional.conv1d: x [N, C, L], weight [F, C/groups, k];\n"
                   "padding may be \"same\" or \"valid\".")
    conv2d = _conv("Conv2d", "torch.nn.functional.conv2d: x [N, C, H, W], weight\n"
                   "[F, C/groups, kh, kw]; padding may be \"same\" or \"valid\".")
    conv_transpose1d = _conv_transpose(
        "ConvTranspose1d", "torch.nn.functional.conv_transpose1d: weight [C_in, C_out/groups, k].")
    conv_transpose2d = _conv_transpose(
        "ConvTranspose2d", "torch.nn.functional.conv_transpose2d: weight\n"
        "[C_in, C_out/groups, kh, kw].")

    def max_pool2d(self, x: ValueLike, kernel: Ints, stride: Optional[Ints] = None,
                   padding: Ints = 0, *, dilation: Ints = 1, ceil_mode: bool = False,
                   return_indices: bool = False, name: Optional[str] = None) -> Any:
        """torch.nn.functional.max_pool2d; (y, indices) with return_indices."""
        return self.node("MaxPool2d", [x], name=name, outputs=2 if return_indices else 1,
                         kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                         ceil_mode=ceil_mode)

    def avg_pool2d(self, x: ValueLike, kernel: Ints, stride: Optional[Ints] = None,
                   padding: Ints = 0, *, ceil_mode: bool = False, count_include_pad: bool = True,
                   divisor_override: int = 0, name: Optional[str] = None) -> Value:
        """torch.nn.functional.avg_pool2d."""
        return self.node("AvgPool2d", [x], name=name, kernel=kernel, stride=stride,
                         padding=padding, ceil_mode=ceil_mode,
                         count_include_pad=count_include_pad,
                         divisor_override=divisor_override)

    def adaptive_avg_pool2d(self, x: ValueLike, output_size: Ints, *,
                            name: Optional[str] = None) -> Value:
        return self.node("AdaptiveAvgPool2d", [x], name=name, output_size=output_size)

    def adaptive_max_pool2d(self, x: ValueLike, output_size: Ints, *,
                            return_indices: bool = False, name: Optional[str] = None) -> Any:
        return self.node("AdaptiveMaxPool2d", [x], name=name,
                         outputs=2 if return_indices else 1, output_size=output_size)

    def batch_norm(self, x: ValueLike, running_mean: ValueLike, running_var: ValueLike,
                   weight: Optional[ValueLike] = None, bias: Optional[ValueLike] = None, *,
                   epsilon: float = 1e-5, momentum: float = 0.1,
                   name: Optional[str] = None) -> Value:
        """torch.nn.functional.batch_norm's argument order; TRAIN mode uses the
        batch's statistics and returns updated running ones as buffers."""
        return self.node("BatchNorm", [x, weight, bias, running_mean, running_var], name=name,
                         epsilon=float(epsilon), momentum=float(momentum))

    def layer_norm(self, x: ValueLike, weight: Optional[ValueLike] = None,
                   bias: Optional[ValueLike] = None, *, axes: int = 1, epsilon: float = 1e-5,
                   name: Optional[str] = None) -> Value:
        """Normalises the trailing `axes` dims."""
        return self.node("LayerNorm", [x, weight, bias], name=name, axes=axes,
                         epsilon=float(epsilon))

    def dropout(self, x: ValueLike, p: float = 0.5, *, mask: Optional[ValueLike] = None,
                return_mask: bool = False, name: Optional[str] = None) -> Any:
        """TRAIN: x·mask/(1−p), the mask drawn from the request's seed; EVAL: x."""
        inputs = [x] if mask is None else [x, mask]
        return self.node("Dropout", inputs, name=name, outputs=2 if return_mask else 1,
                         p=float(p))

    # Elementwise and shape ops
    def add(self, a: ValueLike, b: ValueLike, *, alpha: Optional[float] = None,
            name: Optional[str] = None) -> Value:
        return self.node("Add", [a, b], name=name,
                         alpha=None if alpha is None else float(alpha))

    def sub(self, a: ValueLike, b: ValueLike, *, alpha: Optional[float] = None,
            name: Optional[str] = None) -> Value:
        return self.node("Sub", [a, b], name=name,
                         alpha=None if alpha is None else float(alpha))

    def mul(self, a: ValueLike, b: ValueLike, *, name: Optional[str] = None) -> Value:
        return self.node("Mul", [a, b], name=name)

    def div(self, a: ValueLike, b: ValueLike, *, rounding_mode: Optional[str] = None,
            name: Optional[str] = None) -> Value:
        return self.node("Div", [a, b], name=name, rounding_mode=rounding_mode)

    def scale(self, x: ValueLike, factor: float, *, name: Optional[str] = None) -> Value:
        """factor·x."""
        return self.node("Scale", [x], name=name, factor=float(factor))

    def sum(self, x: ValueLike, axes: Optional[Ints] = None, keepdims: bool = False, *,
            name: Optional[str] = None) -> Value:
        """Over `axes` (all when None)."""
        return self.node("Sum", [x], name=name, axes=axes, keepdims=keepdims)

    def mean(self, x: ValueLike, axes: Optional[Ints] = None, keepdims: bool = False, *,
             name: Optional[str] = None) -> Value:
        return self.node("Mean", [x], name=name, axes=axes, keepdims=keepdims)

    relu = _unary("ReLU", "max(x, 0).")
    tanh = _unary("Tanh", "tanh(x).")
    sigmoid = _unary("Sigmoid", "1 / (1 + exp(-x)).")
    exp = _unary("Exp", "exp(x).")
    log = _unary("Log", "The natural logarithm.")
    silu = _unary("SiLU", "x·sigmoid(x).")
    mish = _unary("Mish", "x·tanh(softplus(x)).")
    sqrt = _unary("Sqrt", "√x.")
    abs = _unary("Abs", "|x|.")

    def gelu(self, x: ValueLike, approximate: str = "none", *,
             name: Optional[str] = None) -> Value:
        """The erf form, or approximate="tanh"."""
        return self.node("GELU", [x], name=name,
                         approximate=None if approximate == "none" else approximate)

    def leaky_relu(self, x: ValueLike, negative_slope: float = 0.01, *,
                   name: Optional[str] = None) -> Value:
        return self.node("LeakyReLU", [x], name=name, alpha=float(negative_slope))

    def elu(self, x: ValueLike, alpha: float = 1.0, *, name: Optional[str] = None) -> Value:
        return self.node("ELU", [x], name=name, alpha=float(alpha))

    def softmax(self, x: ValueLike, axis: int = -1, *, name: Optional[str] = None) -> Value:
        return self.node("Softmax", [x], name=name, axis=axis)

    def log_softmax(self, x: ValueLike, axis: int = -1, *,
                    name: Optional[str] = None) -> Value:
        return self.node("LogSoftmax", [x], name=name, axis=axis)

    def flatten(self, x: ValueLike, start_dim: int = 1, *, name: Optional[str] = None) -> Value:
        return self.node("Flatten", [x], name=name, start_dim=start_dim)

    def reshape(self, x: ValueLike, shape: Shape, *, name: Optional[str] = None) -> Value:
        """One -1 allowed."""
        return self.node("Reshape", [x], name=name, shape=[int(d) for d in shape])

    def concat(self, *xs: ValueLike, axis: int = 1, name: Optional[str] = None) -> Value:
        return self.node("Concat", xs, name=name, axis=axis)

    relu6 = _unary("ReLU6", "min(max(x, 0), 6).")

    def hardtanh(self, x: ValueLike, min_val: float = -1.0, max_val: float = 1.0, *,
                 name: Optional[str] = None) -> Value:
        return self.node("Hardtanh", [x], name=name, min_val=float(min_val),
                         max_val=float(max_val))

    def softplus(self, x: ValueLike, beta: float = 1.0, threshold: float = 20.0, *,
                 name: Optional[str] = None) -> Value:
        return self.node("Softplus", [x], name=name, beta=float(beta),
                         threshold=float(threshold))

    def clamp(self, x: ValueLike, min: Any = None, max: Any = None, *,
              name: Optional[str] = None) -> Value:
        """torch.clamp: each bound a number (an attribute) or a value that
        broadcasts with x (an input); None: no bound."""
        def number(b: Any) -> bool:
            return isinstance(b, (int, float)) and not isinstance(b, bool)
        inputs = [x, None if min is None or number(min) else min,
                  None if max is None or number(max) else max]
        while inputs[-1] is None:
            inputs.pop()
        return self.node("Clamp", inputs, name=name,
                         min=float(min) if number(min) else None,
                         max=float(max) if number(max) else None)

    def pow(self, x: ValueLike, exponent: Any, *, name: Optional[str] = None) -> Value:
        """torch.pow: the exponent a number (an attribute) or a value."""
        if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
            return self.node("Pow", [x], name=name, exponent=float(exponent))
        return self.node("Pow", [x, exponent], name=name)

    def max(self, x: ValueLike, axes: Optional[Ints] = None, keepdims: bool = False, *,
            return_indices: bool = False, name: Optional[str] = None) -> Any:
        """torch.amax over `axes` (all when None); with return_indices, torch.max(x,
        dim)'s (values, indices) over one axis."""
        return self.node("Max", [x], name=name, outputs=2 if return_indices else 1,
                         axes=axes, keepdims=keepdims)

    def min(self, x: ValueLike, axes: Optional[Ints] = None, keepdims: bool = False, *,
            return_indices: bool = False, name: Optional[str] = None) -> Any:
        """As max(), for the smallest."""
        return self.node("Min", [x], name=name, outputs=2 if return_indices else 1,
                         axes=axes, keepdims=keepdims)

    def transpose(self, x: ValueLike, dim0: int, dim1: int, *,
                  name: Optional[str] = None) -> Value:
        return self.node("Transpose", [x], name=name, dim0=dim0, dim1=dim1)

    def permute(self, x: ValueLike, dims: Ints, *, name: Optional[str] = None) -> Value:
        return self.node("Permute", [x], name=name, dims=dims)

    def squeeze(self, x: ValueLike, dims: Optional[Ints] = None, *,
                name: Optional[str] = None) -> Value:
        """The size-1 `dims` (all size-1 dims when None) removed."""
        return self.node("Squeeze", [x], name=name, dims=dims)

    def unsqueeze(self, x: ValueLike, dims: Ints, *, name: Optional[str] = None) -> Value:
        return self.node("Unsqueeze", [x], name=name, dims=dims)

    def pad(self, x: ValueLike, pads: Ints, mode: str = "constant", value: float = 0.0, *,
            name: Optional[str] = None) -> Value:
        """torch.nn.functional.pad: pads from the last dim back (left, right, ...)."""
        return self.node("Pad", [x], name=name, pads=pads, mode=mode, value=float(value))

    def split(self, x: ValueLike, split_size_or_sections: Ints, dim: int = 0, *,
              chunks: Optional[int] = None, name: Optional[str] = None) -> Any:
        """torch.split: a tuple of values, one per chunk; with one size, say how
        many chunks that makes (`chunks`)."""
        if isinstance(split_size_or_sections, (list, tuple)):
            chunks = len(split_size_or_sections)
        elif chunks is None:
            raise ValueError("split of one size: give chunks=, the number of outputs")
        return self.node("Split", [x], name=name, outputs=chunks,
                         split_size_or_sections=split_size_or_sections, dim=dim)

    def gather(self, x: ValueLike, dim: int, index: ValueLike, *,
               name: Optional[str] = None) -> Value:
        """torch.gather (int64 index)."""
        return self.node("Gather", [x, index], name=name, dim=dim)

    def index_select(self, x: ValueLike, dim: int, index: ValueLike, *,
                     name: Optional[str] = None) -> Value:
        """torch.index_select (int64 index)."""
        return self.node("IndexSelect", [x, index], name=name, dim=dim)

    def where(self, condition: ValueLike, x: ValueLike, y: ValueLike, *,
              name: Optional[str] = None) -> Value:
        """x where condition (int64 or float, nonzero = true), else y."""
        return self.node("Where", [condition, x, y], name=name)

    def embedding(self, indices: ValueLike, weight: ValueLike, *,
                  padding_idx: Optional[int] = None, max_norm: Optional[float] = None,
                  norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                  name: Optional[str] = None) -> Value:
        """weight's rows at int64 indices (torch.nn.functional.embedding);
        max_norm renormalises the looked-up rows as torch does."""
        if max_norm is None:
            norm = None
        elif math.isinf(norm_type):
            norm = "inf" if norm_type > 0 else "-inf"
        else:
            norm = float(norm_type)
        return self.node("Embedding", [indices, weight], name=name, padding_idx=padding_idx,
                         max_norm=None if max_norm is None else float(max_norm),
                         norm_type=norm, scale_grad_by_freq=scale_grad_by_freq or None)

    def dropout2d(self, x: ValueLike, p: float = 0.5, *, mask: Optional[ValueLike] = None,
                  return_mask: bool = False, name: Optional[str] = None) -> Any:
        """Whole channels dropped (torch.nn.functional.dropout2d), as dropout()."""
        inputs = [x] if mask is None else [x, mask]
        return self.node("Dropout2d", inputs, name=name, outputs=2 if return_mask else 1,
                         p=float(p))

    def group_norm(self, x: ValueLike, num_groups: int, weight: Optional[ValueLike] = None,
                   bias: Optional[ValueLike] = None, *, epsilon: float = 1e-5,
                   name: Optional[str] = None) -> Value:
        return self.node("GroupNorm", [x, weight, bias], name=name, num_groups=num_groups,
                         epsilon=float(epsilon))

    def instance_norm1d(self, x: ValueLike, weight: Optional[ValueLike] = None,
                        bias: Optional[ValueLike] = None, *,
                        running_mean: Optional[ValueLike] = None,
                        running_var: Optional[ValueLike] = None, epsilon: float = 1e-5,
                        momentum: float = 0.1, name: Optional[str] = None) -> Value:
        return self._instance_norm("InstanceNorm1d", x, weight, bias, running_mean,
                                   running_var, epsilon, momentum, name)

    def instance_norm2d(self, x: ValueLike, weight: Optional[ValueLike] = None,
                        bias: Optional[ValueLike] = None, *,
                        running_mean: Optional[ValueLike] = None,
                        running_var: Optional[ValueLike] = None, epsilon: float = 1e-5,
                        momentum: float = 0.1, name: Optional[str] = None) -> Value:
        return self._instance_norm("InstanceNorm2d", x, weight, bias, running_mean,
                                   running_var, epsilon, momentum, name)

    def _instance_norm(self, op: str, x: ValueLike, weight: Optional[ValueLike],
                       bias: Optional[ValueLike], running_mean: Optional[ValueLike],
                       running_var: Optional[ValueLike], epsilon: float, momentum: float,
                       name: Optional[str]) -> Value:
        """Each sample's channels normalised; with running statistics, torch's
        track_running_stats (TRAIN updates them, EVAL uses them)."""
        inputs = [x, weight, bias] + ([running_mean, running_var]
                                      if running_mean is not None else [])
        return self.node(op, inputs, name=name, epsilon=float(epsilon),
                         momentum=float(momentum) if running_mean is not None else None)

    # Losses: each sets g.loss
    def mse_loss(self, prediction: ValueLike, target: ValueLike, reduction: str = "mean", *,
                 name: Optional[str] = None) -> Value:
        return self._loss("MSELoss", [prediction, target], name, reduction=reduction)

    def cross_entropy_loss(self, logits: ValueLike, target: ValueLike,
                           weight: Optional[ValueLike] = None, *, reduction: str = "mean",
                           ignore_index: Optional[int] = None,
                           label_smoothing: Optional[float] = None,
                           name: Optional[str] = None) -> Value:
        """Labels (int64 classes) or probabilities as the target."""
        return self._loss("CrossEntropyLoss", [logits, target] + ([weight] if weight else []),
                          name, reduction=reduction, ignore_index=ignore_index,
                          label_smoothing=None if label_smoothing is None
                          else float(label_smoothing))

    cross_entropy = cross_entropy_loss

    def nll_loss(self, log_probs: ValueLike, target: ValueLike,
                 weight: Optional[ValueLike] = None, *, reduction: str = "mean",
                 ignore_index: Optional[int] = None, name: Optional[str] = None) -> Value:
        return self._loss("NLLLoss", [log_probs, target] + ([weight] if weight else []), name,
                          reduction=reduction, ignore_index=ignore_index)

    def bce_loss(self, probabilities: ValueLike, target: ValueLike,
                 weight: Optional[ValueLike] = None, *, reduction: str = "mean",
                 name: Optional[str] = None) -> Value:
        return self._loss("BCELoss", [probabilities, target] + ([weight] if weight else []),
                          name, reduction=reduction)

    def bce_with_logits_loss(self, logits: ValueLike, target: ValueLike,
                             weight: Optional[ValueLike] = None,
                             pos_weight: Optional[ValueLike] = None, *,
                             reduction: str = "mean", name: Optional[str] = None) -> Value:
        inputs = [logits, target]
        if weight is not None or pos_weight is not None:
            inputs += [weight, pos_weight] if pos_weight is not None else [weight]
        return self._loss("BCEWithLogitsLoss", inputs, name, reduction=reduction)

    def l1_loss(self, prediction: ValueLike, target: ValueLike, reduction: str = "mean", *,
                name: Optional[str] = None) -> Value:
        return self._loss("L1Loss", [prediction, target], name, reduction=reduction)

    def smooth_l1_loss(self, prediction: ValueLike, target: ValueLike,
                       reduction: str = "mean", beta: float = 1.0, *,
                       name: Optional[str] = None) -> Value:
        return self._loss("SmoothL1Loss", [prediction, target], name, reduction=reduction,
                          beta=float(beta))

    def huber_loss(self, prediction: ValueLike, target: ValueLike, reduction: str = "mean",
                   delta: float = 1.0, *, name: Optional[str] = None) -> Value:
        return self._loss("HuberLoss", [prediction, target], name, reduction=reduction,
                          delta=float(delta))

    def kl_div_loss(self, input: ValueLike, target: ValueLike, reduction: str = "mean", *,
                    log_target: bool = False, name: Optional[str] = None) -> Value:
        """torch.nn.functional.kl_div: input holds log-probabilities."""
        return self._loss("KLDivLoss", [input, target], name, reduction=reduction,
                          log_target=log_target)

    # Files and protos ------------------------------------------------------

    def to_proto(self) -> graph_pb2.Graph:
        """The gradserve.v1.Graph message (this graph's own, not a copy)."""
        return self.proto

    @classmethod
    def from_proto(cls, proto: graph_pb2.Graph) -> "Graph":
        """A Graph wrapping a copy of `proto` (more nodes may be added)."""
        graph = cls()
        graph.proto.CopyFrom(proto)
        graph._names.update(proto.inputs)
        graph._names.update(proto.parameters)
        graph._names.update(proto.buffers)
        for node in proto.nodes:
            graph._names.update(node.outputs)
            graph._names.add(node.name)
        return graph

    @staticmethod
    def load(path: Union[str, "os.PathLike[str]"]) -> Union["Graph", "OnnxModel"]:
        """A graph file: protobuf JSON (.json) or text format (.pbtxt) of
        gradserve.v1.Graph, or an ONNX model (.onnx, returned as an OnnxModel,
        which every call takes as a model)."""
        path = os.fspath(path)
        if path.endswith(".onnx"):
            with open(path, "rb") as f:
                return OnnxModel(f.read())
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
        proto = graph_pb2.Graph()
        if path.endswith(".json"):
            json_format.Parse(text, proto)
        elif path.endswith(".pbtxt") or path.endswith(".txtpb"):
            text_format.Parse(text, proto)
        else:
            raise ValueError(f"{path}: a graph file is .json, .pbtxt or .onnx")
        return Graph.from_proto(proto)

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes protobuf JSON (.json) or text format (.pbtxt)."""
        path = os.fspath(path)
        if path.endswith(".json"):
            text = json_format.MessageToJson(self.proto)
        elif path.endswith(".pbtxt"):
            text = text_format.MessageToString(self.proto)
        else:
            raise ValueError(f"{path}: save a graph as .json or .pbtxt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    def __repr__(self) -> str:
        return (f"Graph({len(self.proto.nodes)} nodes, inputs {list(self.proto.inputs)}, "
                f"{len(self.proto.parameters)} parameters)")


#: The builder method of each op gradserve serves (GetServerInfo's list).
OP_METHODS: Dict[str, str] = {
    "Linear": "linear", "MatMul": "matmul", "Conv1d": "conv1d", "Conv2d": "conv2d",
    "MaxPool2d": "max_pool2d", "AvgPool2d": "avg_pool2d",
    "AdaptiveAvgPool2d": "adaptive_avg_pool2d", "AdaptiveMaxPool2d": "adaptive_max_pool2d",
    "BatchNorm": "batch_norm", "LayerNorm": "layer_norm", "Dropout": "dropout",
    "Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Scale": "scale", "Sum": "sum",
    "Mean": "mean", "ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Exp": "exp",
    "Log": "log", "SiLU": "silu", "Mish": "mish", "Sqrt": "sqrt", "Abs": "abs",
    "GELU": "gelu", "LeakyReLU": "leaky_relu", "ELU": "elu", "Softmax": "softmax",
    "LogSoftmax": "log_softmax", "Flatten": "flatten", "Reshape": "reshape",
    "Concat": "concat", "MSELoss": "mse_loss", "CrossEntropyLoss": "cross_entropy_loss",
    "NLLLoss": "nll_loss", "BCELoss": "bce_loss", "BCEWithLogitsLoss": "bce_with_logits_loss",
    "ReLU6": "relu6", "Hardtanh": "hardtanh", "Softplus": "softplus", "Clamp": "clamp",
    "Pow": "pow", "Max": "max", "Min": "min", "Transpose": "transpose", "Permute": "permute",
    "Squeeze": "squeeze", "Unsqueeze": "unsqueeze", "Pad": "pad", "Split": "split",
    "Gather": "gather", "IndexSelect": "index_select", "Where": "where",
    "Embedding": "embedding", "Dropout2d": "dropout2d", "GroupNorm": "group_norm",
    "InstanceNorm1d": "instance_norm1d", "InstanceNorm2d": "instance_norm2d",
    "ConvTranspose1d": "conv_transpose1d", "ConvTranspose2d": "conv_transpose2d",
    "L1Loss": "l1_loss", "SmoothL1Loss": "smooth_l1_loss", "HuberLoss": "huber_loss",
    "KLDivLoss": "kl_div_loss",
}


class OnnxModel:
    """A serialized ONNX ModelProto, sent as `onnx_model`; value names are the
    ONNX names (see the README's ONNX section)."""

    def __init__(self, data: bytes, loss: Optional[str] = None):
        self.data = bytes(data)
        self.loss = loss

    @classmethod
    def from_torch(cls, module: Any, args: Any, input_names: Sequence[str],
                   output_names: Sequence[str], *, opset: int = 14,
                   loss: Optional[str] = None) -> "OnnxModel":
        """torch.onnx.export of `module` at `args` in training mode
        (TrainingMode.TRAINING: BatchNorm and Dropout kept as such, not folded
        into the convolution as an eval export does; the request's mode then
        says how they run), the parameters' names as the initializers' names.
        The module's state is as before (the export's forward pass would move
        BatchNorm's running statistics)."""
        import io
        import torch

        state = {k: v.clone() for k, v in module.state_dict().items()}
        buffer = io.BytesIO()
        try:
            torch.onnx.export(module, args, buffer, input_names=list(input_names),
                              output_names=list(output_names), opset_version=opset,
                              training=torch.onnx.TrainingMode.TRAINING,
                              do_constant_folding=False)
        finally:
            module.load_state_dict(state)
        return cls(buffer.getvalue(), loss=loss)


Model = Union[Graph, OnnxModel, graph_pb2.Graph, bytes]
