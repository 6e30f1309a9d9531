"""gradserve measured against PyTorch's own operator test database.

Walks the OpInfo samples of torch.testing._internal.common_methods_invocations
.op_db for every OpInfo that maps to a gradserve op, translates each sample
to a one-node graph, runs it over gRPC and compares the outputs and the
gradients of every input that requires grad with float64 PyTorch autograd on
the same float32 values (an output gradient seeded at random).

Each sample ends up in one class:
  pass         outputs and gradients within rtol 2e-4 (atol 1e-5) of torch's
  refused      the server refused a sample that uses only what the API
               contract's op table promises (a gap: PyTorch accepts it)
  unsupported  the sample uses an option gradserve does not have (the option
               is named), and the server refused it
  wrong        the server answered, and the answer differs from torch's
  invalid      PyTorch itself refuses the sample (not counted against us)

`python3 tests/python/opinfo.py` starts a server from GRADSERVE_BUILD_DIR and
prints the table per OpInfo; --verbose prints every sample that is not a pass.
"""

import argparse
import collections
import math
import sys
import types
import unittest
import warnings

import numpy as np
import torch

import gs

RTOL = 2e-4
ATOL = 1e-5

CLASSES = ("pass", "refused", "unsupported", "wrong", "invalid")


def load_op_db():
    """op_db imports `expecttest`, which Debian does not package; the database
    needs only its TestCase and ACCEPT."""
    if "expecttest" not in sys.modules:
        stand_in = types.ModuleType("expecttest")
        stand_in.TestCase = unittest.TestCase
        stand_in.ACCEPT = False
        sys.modules["expecttest"] = stand_in
    from torch.testing._internal.common_methods_invocations import op_db
    return op_db


class Translation:
    """One sample as a gradserve node: `inputs` in the op's order as (name,
    tensor or None), the attributes, graph buffers (running statistics, kept
    out of the feeds so that updated values come back), the mode, and the
    options beyond the API contract's op table the sample uses."""

    def __init__(self, op, inputs, attrs=None, options=(), mode=gs.pb.MODE_TRAIN,
                 buffers=(), outputs=("y",), check=None, float64=False):
        self.op = op
        self.inputs = inputs
        self.attrs = {k: v for k, v in (attrs or {}).items() if v is not None}
        self.options = list(options)
        self.mode = mode
        self.buffers = set(buffers)
        self.outputs = list(outputs)
        # A custom comparison (Dropout's random masks): check(result, ref).
        self.check = check
        # Send the float tensors as float64: torch's dtype=torch.float64
        # computes on the inputs cast to float64, as a float64 request does.
        self.float64 = float64


def ints(v, n=None):
    """An int or a sequence as a list; one value stands for all n dims, as
    torch takes it."""
    if isinstance(v, int):
        return [v] * (n or 1)
    v = [int(x) for x in v]
    return v * n if n and len(v) == 1 else v


def arg(sample, i, key, default=None):
    """A positional-or-keyword argument of the sample (args[i] or kwargs)."""
    if len(sample.args) > i:
        return sample.args[i]
    return sample.kwargs.get(key, default)


def option_if(condition, name, options):
    if condition:
        options.append(name)


# --- translators: sample -> Translation -------------------------------------

def binary(op):
    def translate(s):
        options = []
        attrs = {}
        if s.kwargs.get("alpha", 1) != 1:
            options.append("alpha")
            attrs["alpha"] = float(s.kwargs["alpha"])
        mode = s.kwargs.get("rounding_mode")
        if mode is not None:
            options.append(f"rounding_mode={mode}")
            attrs["rounding_mode"] = mode
        return Translation(op, [("a", s.input), ("b", s.args[0])], attrs, options)
    return translate


def unary(op):
    return lambda s: Translation(op, [("x", s.input)])


def leaky_relu(s):
    return Translation("LeakyReLU", [("x", s.input)],
                       {"alpha": float(arg(s, 0, "negative_slope", 0.01))})


def elu(s):
    return Translation("ELU", [("x", s.input)], {"alpha": float(arg(s, 0, "alpha", 1.0))})


def gelu(s):
    approximate = s.kwargs.get("approximate", "none")
    options = [] if approximate == "none" else [f"approximate={approximate}"]
    return Translation("GELU", [("x", s.input)],
                       {"approximate": approximate} if options else {}, options)


def softmax(op):
    def translate(s):
        options = []
        attrs = {"axis": int(arg(s, 0, "dim"))}
        float64 = s.kwargs.get("dtype") == torch.float64
        if s.kwargs.get("dtype") is not None:
            options.append("dtype")
            attrs["dtype"] = str(s.kwargs["dtype"]).replace("torch.", "")
        return Translation(op, [("x", s.input)], attrs, options, float64=float64)
    return translate


def reduce(op):
    def translate(s):
        dim = arg(s, 0, "dim")
        attrs = {"keepdims": int(bool(arg(s, 1, "keepdim", False)))}
        if dim is not None:
            attrs["axes"] = ints(dim)
        options = []
        if s.kwargs.get("dtype") is not None:
            options.append("dtype")
        return Translation(op, [("x", s.input)], attrs, options)
    return translate


def hardtanh(s):
    return Translation("Hardtanh", [("x", s.input)],
                       {"min_val": float(arg(s, 0, "min_val", -1.0)),
                        "max_val": float(arg(s, 1, "max_val", 1.0))})


def softplus(s):
    return Translation("Softplus", [("x", s.input)],
                       {"beta": float(arg(s, 0, "beta", 1)),
                        "threshold": float(arg(s, 1, "threshold", 20))})


def bound(value, name, inputs, attrs):
    """A Clamp bound: a tensor input, a scalar attribute, or nothing."""
    if isinstance(value, torch.Tensor):
        inputs.append((name, value))
        return
    inputs.append((name, None))
    if value is not None:
        attrs[name] = float(value)


def clamp(s):
    inputs, attrs = [("x", s.input)], {}
    bound(arg(s, 0, "min"), "min", inputs, attrs)
    bound(arg(s, 1, "max"), "max", inputs, attrs)
    return Translation("Clamp", inputs, attrs)


def clamp_one(name):
    def translate(s):
        inputs, attrs = [("x", s.input)], {}
        for side in ("min", "max"):
            bound(arg(s, 0, name) if side == name else None, side, inputs, attrs)
        return Translation("Clamp", inputs, attrs)
    return translate


def pow_(s):
    exponent = arg(s, 0, "exponent")
    if isinstance(exponent, torch.Tensor):
        return Translation("Pow", [("x", s.input), ("exponent", exponent)])
    return Translation("Pow", [("x", s.input)], {"exponent": float(exponent)})


def extremum(op):
    """torch.amax/amin (dim, keepdim), and torch.max/min(x) without a dim."""
    def translate(s):
        dim = arg(s, 0, "dim", ())
        return Translation(op, [("x", s.input)],
                           {"axes": ints(dim), "keepdims": int(bool(arg(s, 1, "keepdim", False)))})
    return translate


def extremum_with_dim(op):
    """torch.max/min(x, dim, keepdim): values and indices."""
    def translate(s):
        return Translation(op, [("x", s.input)],
                           {"axes": [int(arg(s, 0, "dim"))],
                            "keepdims": int(bool(arg(s, 1, "keepdim", False)))},
                           outputs=["y", "indices"])
    return translate


def transpose(s):
    return Translation("Transpose", [("x", s.input)],
                       {"dim0": int(arg(s, 0, "dim0")), "dim1": int(arg(s, 1, "dim1"))})


def permute(s):
    return Translation("Permute", [("x", s.input)], {"dims": ints(arg(s, 0, "dims"))})


def squeeze(s):
    dim = arg(s, 0, "dim")
    return Translation("Squeeze", [("x", s.input)], {"dims": [] if dim is None else ints(dim)})


def unsqueeze(s):
    return Translation("Unsqueeze", [("x", s.input)], {"dims": ints(arg(s, 0, "dim"))})


def pad(s):
    value = arg(s, 2, "value")
    attrs = {"pads": ints(arg(s, 0, "pad")), "mode": arg(s, 1, "mode", "constant")}
    if value is not None:
        attrs["value"] = float(value)
    return Translation("Pad", [("x", s.input)], attrs)


def split(s):
    sizes = arg(s, 0, "split_size_or_sections", arg(s, 0, "split_sizes"))
    dim = int(arg(s, 1, "dim", 0))
    if isinstance(sizes, int):
        n = s.input.shape[dim]
        chunks = max(1, -(-n // sizes)) if sizes else 1
        attr = sizes
    else:
        attr = ints(sizes)
        chunks = len(attr)
    return Translation("Split", [("x", s.input)],
                       {"split_size_or_sections": attr, "dim": dim},
                       outputs=["y"] + [f"y{k}" for k in range(1, chunks)])


def gather(s):
    # An empty uint8 index (torch takes it) travels as int64.
    index = arg(s, 1, "index").to(torch.int64)
    return Translation("Gather", [("x", s.input), ("index", index)],
                       {"dim": int(arg(s, 0, "dim"))})


def index_select(s):
    return Translation("IndexSelect", [("x", s.input), ("index", arg(s, 1, "index"))],
                       {"dim": int(arg(s, 0, "dim"))})


def where(s):
    """OpInfo's where is (x, condition, y); the bool condition goes as int64."""
    return Translation("Where", [("condition", s.args[0].to(torch.int64)),
                                 ("x", s.input), ("other", s.args[1])])


def flatten(s):
    start = int(arg(s, 0, "start_dim", 0))
    end = int(arg(s, 1, "end_dim", -1))
    options = []
    rank = max(s.input.dim(), 1)
    if end % rank != rank - 1:
        options.append("end_dim")
    return Translation("Flatten", [("x", s.input)], {"start_dim": start}, options)


def reshape(s):
    shape = s.args[0] if s.args else s.kwargs["shape"]
    return Translation("Reshape", [("x", s.input)], {"shape": ints(shape)})


def cat(s):
    tensors = s.input
    return Translation("Concat", [(f"x{i}", t) for i, t in enumerate(tensors)],
                       {"axis": int(arg(s, 0, "dim", 0))})


def matmul(s):
    return Translation("MatMul", [("a", s.input), ("b", s.args[0])])


def linear(s):
    return Translation("Linear", [("x", s.input), ("w", s.args[0]),
                                  ("bias", arg(s, 1, "bias"))])


def conv(op, n):
    def translate(s):
        options = []
        padding = arg(s, 3, "padding", 0)
        attrs = {"stride": ints(arg(s, 2, "stride", 1), n),
                 "dilation": ints(arg(s, 4, "dilation", 1), n),
                 "groups": int(arg(s, 5, "groups", 1))}
        if isinstance(padding, str):
            options.append(f"padding={padding}")
            attrs["padding"] = padding
        else:
            attrs["padding"] = ints(padding, n)
        return Translation(op, [("x", s.input), ("w", s.args[0]),
                                ("bias", arg(s, 1, "bias"))], attrs, options)
    return translate


def conv_transpose(op, n):
    """F.conv_transposeNd(input, weight, bias, stride, padding,
    output_padding, groups, dilation)."""
    def translate(s):
        attrs = {"stride": ints(arg(s, 2, "stride", 1), n),
                 "padding": ints(arg(s, 3, "padding", 0), n),
                 "output_padding": ints(arg(s, 4, "output_padding", 0), n),
                 "groups": int(arg(s, 5, "groups", 1)),
                 "dilation": ints(arg(s, 6, "dilation", 1), n)}
        return Translation(op, [("x", s.input), ("w", s.args[0]),
                                ("bias", arg(s, 1, "bias"))], attrs)
    return translate


def window(s, kernel, stride, padding):
    kernel = ints(kernel, 2)
    stride = ints(stride, 2) if stride not in (None, (), []) else kernel
    padding = ints(padding, 2)
    return {"kernel": kernel, "stride": stride, "padding": padding}


def avg_pool2d(s):
    attrs = window(s, arg(s, 0, "kernel_size"), arg(s, 1, "stride"), arg(s, 2, "padding", 0))
    options = []
    ceil_mode = bool(arg(s, 3, "ceil_mode", False))
    count_include_pad = bool(arg(s, 4, "count_include_pad", True))
    divisor = arg(s, 5, "divisor_override")
    if ceil_mode:
        options.append("ceil_mode")
        attrs["ceil_mode"] = 1
    if not count_include_pad:
        options.append("count_include_pad")
        attrs["count_include_pad"] = 0
    if divisor is not None:
        options.append("divisor_override")
        attrs["divisor_override"] = int(divisor)
    return Translation("AvgPool2d", [("x", s.input)], attrs, options)


def max_pool2d(s):
    attrs = window(s, arg(s, 0, "kernel_size"), arg(s, 1, "stride"), arg(s, 2, "padding", 0))
    options = []
    dilation = ints(arg(s, 3, "dilation", 1), 2)
    if dilation != [1, 1]:
        options.append("dilation")
        attrs["dilation"] = dilation
    if bool(arg(s, 4, "ceil_mode", False)):
        options.append("ceil_mode")
        attrs["ceil_mode"] = 1
    outputs = ["y"]
    if bool(arg(s, 5, "return_indices", False)):
        options.append("return_indices")
        outputs.append("indices")
    return Translation("MaxPool2d", [("x", s.input)], attrs, options, outputs=outputs)


def adaptive_pool(op):
    def translate(s):
        size = arg(s, 0, "output_size")
        size = list(size) if isinstance(size, (list, tuple)) else [size, size]
        # None keeps the input's extent.
        size = [int(s.input.shape[-2 + d]) if v is None else int(v)
                for d, v in enumerate(size)]
        outputs = ["y", "indices"] if bool(arg(s, 1, "return_indices", False)) else ["y"]
        return Translation(op, [("x", s.input)], {"output_size": size}, outputs=outputs)
    return translate


def batch_norm(s):
    x = s.input
    mean, var = s.args[0], s.args[1]
    weight, bias = arg(s, 2, "weight"), arg(s, 3, "bias")
    training = bool(arg(s, 4, "training", False))
    channels = x.shape[1] if x.dim() > 1 else x.shape[0]
    # Without running statistics torch does not track them; gradserve's
    # running_mean/var inputs are then a dummy pair (used only in TRAIN,
    # where nothing reads them).
    buffers = []
    if mean is None:
        mean = torch.zeros(channels)
    else:
        buffers.append("running_mean")
    if var is None:
        var = torch.ones(channels)
    else:
        buffers.append("running_var")
    attrs = {"momentum": float(arg(s, 5, "momentum", 0.1)),
             "epsilon": float(arg(s, 6, "eps", 1e-5))}
    return Translation("BatchNorm", [("x", x), ("weight", weight), ("bias", bias),
                                     ("running_mean", mean), ("running_var", var)],
                       attrs, mode=gs.pb.MODE_TRAIN if training else gs.pb.MODE_EVAL,
                       buffers=buffers)


def layer_norm(s):
    shape = s.args[0]
    return Translation("LayerNorm", [("x", s.input), ("weight", arg(s, 1, "weight")),
                                     ("bias", arg(s, 2, "bias"))],
                       {"axes": len(ints(shape)), "epsilon": float(arg(s, 3, "eps", 1e-5))})


def group_norm(s):
    return Translation("GroupNorm", [("x", s.input), ("weight", s.kwargs.get("weight")),
                                     ("bias", s.kwargs.get("bias"))],
                       {"num_groups": int(arg(s, 0, "num_groups")),
                        "epsilon": float(s.kwargs.get("eps", 1e-5))})


def instance_norm(s):
    """InstanceNorm1d/2d by x's rank; running statistics as buffers (their
    updated values compared); use_input_stats=False is EVAL."""
    x = s.input
    options = []
    op = {3: "InstanceNorm1d", 4: "InstanceNorm2d"}.get(x.dim())
    if op is None:
        options.append(f"{x.dim()}-d x")
        op = "InstanceNorm2d"
    mean, var = s.kwargs.get("running_mean"), s.kwargs.get("running_var")
    buffers = [name for name, t in (("running_mean", mean), ("running_var", var))
               if t is not None]
    training = bool(s.kwargs.get("use_input_stats", True))
    return Translation(op, [("x", x), ("weight", s.kwargs.get("weight")),
                            ("bias", s.kwargs.get("bias")), ("running_mean", mean),
                            ("running_var", var)],
                       {"epsilon": float(s.kwargs.get("eps", 1e-5)),
                        "momentum": float(s.kwargs.get("momentum", 0.1))},
                       options, mode=gs.pb.MODE_TRAIN if training else gs.pb.MODE_EVAL,
                       buffers=buffers)


def dropout(op):
    def translate(s):
        p = float(arg(s, 0, "p", 0.5))
        training = bool(arg(s, 1, "training", True))
        if training and 0 < p < 1:
            # A random mask: check y = x * mask / (1 - p) and its gradient
            # with the mask the server drew (its second output; Dropout2d's
            # is [N, C, 1, ...] and broadcasts).
            return Translation(op, [("x", s.input)], {"p": p}, outputs=["y", "mask"],
                               check=dropout_check(p, op == "Dropout2d"))
        return Translation(op, [("x", s.input)], {"p": p},
                           mode=gs.pb.MODE_TRAIN if training else gs.pb.MODE_EVAL)
    return translate


def dropout_check(p, channelwise):
    def check(result, x, seed):
        mask = result.outputs["mask"].astype(np.float64)
        if not np.all((mask == 0) | (mask == 1)):
            return "the mask is not 0/1"
        want = x.shape[:2] + (1,) * (x.ndim - 2) if channelwise else x.shape
        if mask.shape != want:
            return f"the mask has shape {list(mask.shape)}, expected {list(want)}"
        y = x.astype(np.float64) * mask / (1 - p)
        grad = seed.astype(np.float64) * mask / (1 - p)
        return (compare("y", result.outputs["y"], y) or
                compare("d/dx", result.gradients.get("x"), grad))
    return check


def embedding(s):
    """OpInfo's embedding takes (weight, indices, **kwargs)."""
    attrs, options = {}, []
    if s.kwargs.get("padding_idx") is not None:
        attrs["padding_idx"] = int(s.kwargs["padding_idx"])
    if s.kwargs.get("scale_grad_by_freq"):
        attrs["scale_grad_by_freq"] = 1
    if s.kwargs.get("max_norm") is not None:
        attrs["max_norm"] = float(s.kwargs["max_norm"])
        norm_type = float(s.kwargs.get("norm_type", 2.0))
        attrs["norm_type"] = str(norm_type) if math.isinf(norm_type) else norm_type
    option_if(bool(s.kwargs.get("sparse")), "sparse", options)
    return Translation("Embedding", [("indices", s.args[0]), ("weight", s.input)], attrs,
                       options)


def reduction_attrs(s, reduction_index):
    reduction = arg(s, reduction_index, "reduction", "mean")
    options = [] if reduction in ("mean", "sum") else [f"reduction={reduction}"]
    return {"reduction": reduction}, options


def simple_loss(op):
    def translate(s):
        attrs, options = reduction_attrs(s, 99)
        inputs = [("prediction", s.input), ("target", s.args[0])]
        weight = s.kwargs.get("weight")
        if weight is not None:
            options.append("weight")
            inputs.append(("weight", weight))
        if s.kwargs.get("pos_weight") is not None:
            options.append("pos_weight")
            if weight is None:
                inputs.append(("", None))
            inputs.append(("pos_weight", s.kwargs["pos_weight"]))
        return Translation(op, inputs, attrs, options)
    return translate


def thresholded_loss(op, name):
    """l1_loss, smooth_l1_loss (beta), huber_loss (delta), kl_div
    (log_target, reduction "batchmean")."""
    def translate(s):
        attrs, options = reduction_attrs(s, 99)
        if name:
            default = 0 if name == "log_target" else 1.0
            value = s.kwargs.get(name, default)
            attrs[name] = int(value) if name == "log_target" else float(value)
        return Translation(op, [("prediction", s.input), ("target", s.args[0])],
                           attrs, options)
    return translate


def class_loss(op):
    def translate(s):
        attrs, options = reduction_attrs(s, 99)
        inputs = [("input", s.input), ("target", s.args[0])]
        if s.kwargs.get("weight") is not None:
            options.append("weight")
            inputs.append(("weight", s.kwargs["weight"]))
        if s.kwargs.get("ignore_index", -100) != -100:
            options.append("ignore_index")
            attrs["ignore_index"] = int(s.kwargs["ignore_index"])
        if s.kwargs.get("label_smoothing", 0.0):
            options.append("label_smoothing")
            attrs["label_smoothing"] = float(s.kwargs["label_smoothing"])
        return Translation(op, inputs, attrs, options)
    return translate


# OpInfo (name, variant) -> translator.
TRANSLATORS = {
    ("add", ""): binary("Add"),
    ("sub", ""): binary("Sub"),
    ("mul", ""): binary("Mul"),
    ("div", "no_rounding_mode"): binary("Div"),
    ("div", "trunc_rounding"): binary("Div"),
    ("div", "floor_rounding"): binary("Div"),
    ("true_divide", ""): binary("Div"),
    ("exp", ""): unary("Exp"),
    ("log", ""): unary("Log"),
    ("tanh", ""): unary("Tanh"),
    ("sigmoid", ""): unary("Sigmoid"),
    ("nn.functional.relu", ""): unary("ReLU"),
    ("nn.functional.silu", ""): unary("SiLU"),
    ("nn.functional.mish", ""): unary("Mish"),
    ("sqrt", ""): unary("Sqrt"),
    ("abs", ""): unary("Abs"),
    ("nn.functional.leaky_relu", ""): leaky_relu,
    ("nn.functional.elu", ""): elu,
    ("nn.functional.gelu", ""): gelu,
    ("nn.functional.hardtanh", ""): hardtanh,
    ("nn.functional.relu6", ""): unary("ReLU6"),
    ("nn.functional.softplus", ""): softplus,
    ("clamp", ""): clamp,
    ("clamp_min", ""): clamp_one("min"),
    ("clamp_max", ""): clamp_one("max"),
    ("pow", ""): pow_,
    ("amax", ""): extremum("Max"),
    ("amin", ""): extremum("Min"),
    ("max", "reduction_no_dim"): extremum("Max"),
    ("min", "reduction_no_dim"): extremum("Min"),
    ("max", "reduction_with_dim"): extremum_with_dim("Max"),
    ("min", "reduction_with_dim"): extremum_with_dim("Min"),
    ("transpose", ""): transpose,
    ("permute", ""): permute,
    ("squeeze", ""): squeeze,
    ("unsqueeze", ""): unsqueeze,
    ("nn.functional.pad", "constant"): pad,
    ("nn.functional.pad", "reflect"): pad,
    ("nn.functional.pad", "replicate"): pad,
    ("nn.functional.pad", "circular"): pad,
    ("split", ""): split,
    ("split", "list_args"): split,
    ("split_with_sizes", ""): split,
    ("gather", ""): gather,
    ("index_select", ""): index_select,
    ("where", ""): where,
    ("softmax", ""): softmax("Softmax"),
    ("softmax", "with_dtype"): softmax("Softmax"),
    ("log_softmax", ""): softmax("LogSoftmax"),
    ("log_softmax", "dtype"): softmax("LogSoftmax"),
    ("sum", ""): reduce("Sum"),
    ("mean", ""): reduce("Mean"),
    ("flatten", ""): flatten,
    ("reshape", ""): reshape,
    ("cat", ""): cat,
    ("matmul", ""): matmul,
    ("nn.functional.linear", ""): linear,
    ("nn.functional.conv1d", ""): conv("Conv1d", 1),
    ("nn.functional.conv2d", ""): conv("Conv2d", 2),
    ("nn.functional.conv_transpose1d", ""): conv_transpose("ConvTranspose1d", 1),
    ("nn.functional.conv_transpose2d", ""): conv_transpose("ConvTranspose2d", 2),
    ("nn.functional.avg_pool2d", ""): avg_pool2d,
    ("nn.functional.max_pool2d", ""): max_pool2d,
    ("nn.functional.adaptive_avg_pool2d", ""): adaptive_pool("AdaptiveAvgPool2d"),
    ("nn.functional.adaptive_max_pool2d", ""): adaptive_pool("AdaptiveMaxPool2d"),
    ("nn.functional.batch_norm", ""): batch_norm,
    ("nn.functional.batch_norm", "without_cudnn"): batch_norm,
    ("nn.functional.layer_norm", ""): layer_norm,
    ("nn.functional.group_norm", ""): group_norm,
    ("nn.functional.instance_norm", ""): instance_norm,
    ("nn.functional.dropout", ""): dropout("Dropout"),
    ("nn.functional.dropout2d", ""): dropout("Dropout2d"),
    ("nn.functional.mse_loss", ""): simple_loss("MSELoss"),
    ("nn.functional.binary_cross_entropy", ""): simple_loss("BCELoss"),
    ("nn.functional.binary_cross_entropy_with_logits", ""): simple_loss("BCEWithLogitsLoss"),
    ("nn.functional.embedding", ""): embedding,
    ("nn.functional.l1_loss", ""): thresholded_loss("L1Loss", None),
    ("nn.functional.smooth_l1_loss", ""): thresholded_loss("SmoothL1Loss", "beta"),
    ("nn.functional.huber_loss", ""): thresholded_loss("HuberLoss", "delta"),
    ("nn.functional.kl_div", ""): thresholded_loss("KLDivLoss", "log_target"),
    ("nn.functional.cross_entropy", ""): class_loss("CrossEntropyLoss"),
    ("nn.functional.nll_loss", ""): class_loss("NLLLoss"),
}


def mapped_opinfos():
    return [o for o in load_op_db() if (o.name, o.variant_test_name) in TRANSLATORS]


def opinfo_id(opinfo):
    return opinfo.name + (f".{opinfo.variant_test_name}" if opinfo.variant_test_name else "")


# --- the reference: torch autograd in float64 --------------------------------

class Leaves:
    """The sample's tensors as float64 leaves (int tensors as they are),
    keyed by the original tensor's id."""

    def __init__(self):
        self.by_id = {}

    def convert(self, value):
        if isinstance(value, torch.Tensor):
            if id(value) not in self.by_id:
                t = value.detach()
                if t.is_floating_point():
                    t = t.to(torch.float64).requires_grad_(value.requires_grad)
                else:
                    t = t.clone()
                self.by_id[id(value)] = t
            return self.by_id[id(value)]
        if isinstance(value, (list, tuple)):
            return type(value)(self.convert(v) for v in value)
        if isinstance(value, dict):
            return {k: self.convert(v) for k, v in value.items()}
        return value


def reference(opinfo, sample, translation, rng):
    """(outputs, grads, buffers): torch's outputs per translation output, the
    gradient of every input that requires grad (None where torch has none)
    under a random output gradient, and running statistics after the call."""
    leaves = Leaves()
    x = leaves.convert(sample.input)
    args = leaves.convert(sample.args)
    kwargs = leaves.convert(sample.kwargs)
    with warnings.catch_warnings():  # padding='same' with even kernels
        warnings.simplefilter("ignore", UserWarning)
        result = opinfo.op(x, *args, **kwargs)
    results = list(result) if isinstance(result, tuple) else [result]
    y = results[0]
    seed = rng.uniform(-1, 1, size=tuple(y.shape)).astype(np.float32)
    outputs = {name: r.detach().numpy() for name, r in zip(translation.outputs, results)}
    grads = {}
    wanted = [(name, leaves.by_id[id(t)]) for name, t in translation.inputs
              if isinstance(t, torch.Tensor) and id(t) in leaves.by_id and
              leaves.by_id[id(t)].requires_grad]
    for name, leaf in wanted:
        grads[name] = None
        if not y.requires_grad:
            grads[name] = np.zeros(tuple(leaf.shape))
            continue
        try:
            (g,) = torch.autograd.grad(y, leaf, torch.tensor(seed, dtype=y.dtype),
                                       retain_graph=True, allow_unused=True)
        except RuntimeError:
            continue  # torch has no derivative for this input (a target)
        grads[name] = np.zeros(tuple(leaf.shape)) if g is None else g.numpy()
    buffers = {name: leaves.by_id[id(t)].detach().numpy() for name, t in translation.inputs
               if name in translation.buffers}
    return outputs, grads, buffers, seed


# --- gradserve ---------------------------------------------------------------

def as_numpy(t, float64=False):
    t = t.detach()
    if not t.is_floating_point():
        return t.numpy()
    return t.to(torch.float64 if float64 else torch.float32).numpy()


def request(translation, wrt, seed):
    feeds, buffers, names = {}, {}, []
    for name, t in translation.inputs:
        if t is None:
            names.append("")
            continue
        names.append(name)
        (buffers if name in translation.buffers else feeds)[name] = \
            as_numpy(t, translation.float64)
    node = gs.node("node", translation.op, names, translation.outputs, **translation.attrs)
    g = gs.graph([node], inputs=list(feeds), buffers=buffers)
    seeds = {"y": seed} if wrt else None
    req = gs.compute_request(g, feeds=feeds, fetch=translation.outputs,
                             output_gradients=seeds, wrt=wrt, mode=translation.mode)
    if translation.float64:
        for name, value in feeds.items():
            req.feeds[name].CopyFrom(gs.tensor(value, float64=True))
    return req


def compare(what, got, want):
    if got is None:
        return f"{what}: missing"
    want = np.asarray(want)
    if got.shape != want.shape:
        return f"{what}: shape {list(got.shape)}, torch {list(want.shape)}"
    if got.dtype.kind in "iu" or want.dtype.kind in "iu":
        return None if np.array_equal(got, want) else f"{what}: differs"
    if not np.allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True):
        diff = np.nanmax(np.abs(got.astype(np.float64) - want)) if got.size else 0
        return f"{what}: max abs diff {diff:.3g}"
    return None


class Outcome:
    def __init__(self, opinfo, index, sample, klass, detail="", options=(),
                 dtype=torch.float32):
        self.opinfo = opinfo_id(opinfo)
        self.dtype = dtype
        # The table's row: the OpInfo, with " int64" for its int64 samples.
        self.row = self.opinfo + ("" if dtype == torch.float32 else
                                  " " + str(dtype).replace("torch.", ""))
        self.index = index
        self.sample = sample
        self.klass = klass
        self.detail = detail
        self.options = list(options)

    def __str__(self):
        options = f" [{', '.join(self.options)}]" if self.options else ""
        return f"{self.row}#{self.index} {self.klass}{options}: {self.detail}"


# The gradserve ops that take int64 tensors (the README's op table says how):
# refusing one of their int64 samples is a gap; the int64 samples of other
# ops use the option "int64".
INT64_OPS = {"Add", "Sub", "Mul", "Div", "Abs", "ReLU", "Tanh", "Sigmoid", "Exp", "Log",
             "Sqrt", "Hardtanh", "ReLU6", "Clamp", "Pow", "Max", "Min", "Sum", "Pad",
             "Permute", "Transpose", "Squeeze", "Unsqueeze", "Split", "Reshape", "Flatten",
             "Gather", "IndexSelect", "Concat", "Where", "MatMul", "Linear", "Conv1d", "Conv2d",
             "ConvTranspose1d", "ConvTranspose2d", "AvgPool2d"}


def run_sample(server, opinfo, index, sample, rng, dtype=torch.float32):
    translation = TRANSLATORS[(opinfo.name, opinfo.variant_test_name)](sample)
    if dtype == torch.int64 and translation.op not in INT64_OPS:
        translation.options.append("int64")

    def outcome(klass, detail=""):
        return Outcome(opinfo, index, sample, klass, detail, translation.options, dtype)

    try:
        want, grads, buffers, seed = reference(opinfo, sample, translation, rng)
    except Exception as e:  # noqa: BLE001 - torch refuses the sample
        return outcome("invalid", f"torch: {type(e).__name__}: {str(e)[:120]}")
    wrt = [name for name, g in grads.items() if g is not None]
    try:
        result = server.compute(request(translation, wrt, seed), timeout=60)
    except gs.grpc.RpcError as e:
        if not server.alive():
            raise RuntimeError(f"gradserve died on {opinfo_id(opinfo)}#{index}")
        if e.code() == gs.grpc.StatusCode.INTERNAL:
            return outcome("wrong", f"INTERNAL: {e.details()}")
        klass = "unsupported" if translation.options else "refused"
        return outcome(klass, f"{e.code().name}: {e.details()}")
    if translation.check:
        problem = translation.check(result, as_numpy(sample.input), seed)
    else:
        problems = [compare(name, result.outputs.get(name), want[name])
                    for name in translation.outputs]
        problems += [compare(f"d/d{name}", result.gradients.get(name), grads[name])
                     for name in wrt]
        problems += [compare(f"updated {name}", result.buffers.get(name), buffers[name])
                     for name in buffers if translation.mode == gs.pb.MODE_TRAIN]
        problem = "; ".join(p for p in problems if p)
    return outcome("wrong", problem) if problem else outcome("pass")


DTYPES = (torch.float32, torch.int64)


def samples(opinfo, dtype=torch.float32):
    """The OpInfo's samples of `dtype`: float32 ones require grad; int64 ones
    (none where torch's CPU kernel does not take int64) cannot."""
    if dtype == torch.float32:
        return list(opinfo.sample_inputs("cpu", torch.float32, requires_grad=True))
    if dtype not in opinfo.supported_dtypes("cpu"):
        return []
    return list(opinfo.sample_inputs("cpu", dtype, requires_grad=False))


def run_all(server, opinfos=None, dtypes=DTYPES):
    """Every sample of every mapped OpInfo in each of `dtypes`, as Outcomes."""
    outcomes = []
    for dtype in dtypes:
        for opinfo in opinfos or mapped_opinfos():
            rng = np.random.default_rng(0)
            torch.manual_seed(0)
            for index, sample in enumerate(samples(opinfo, dtype)):
                outcomes.append(run_sample(server, opinfo, index, sample, rng, dtype))
    return outcomes


def table(outcomes):
    counts = collections.OrderedDict()
    for o in outcomes:
        counts.setdefault(o.row, collections.Counter())[o.klass] += 1
    total = collections.Counter()
    lines = [f"{'OpInfo':52}" + "".join(f"{c:>12}" for c in CLASSES)]
    for name, c in counts.items():
        total.update(c)
        lines.append(f"{name:52}" + "".join(f"{c[k]:>12}" for k in CLASSES))
    for dtype in DTYPES:
        by_dtype = collections.Counter(o.klass for o in outcomes if o.dtype == dtype)
        if by_dtype:
            lines.append(f"{'  ' + str(dtype).replace('torch.', '') + ' samples':52}" +
                         "".join(f"{by_dtype[k]:>12}" for k in CLASSES))
    opinfos = len({o.opinfo for o in outcomes})
    lines.append(f"{'total (' + str(opinfos) + ' OpInfos)':52}" +
                 "".join(f"{total[k]:>12}" for k in CLASSES))
    missing = collections.Counter(opt for o in outcomes if o.klass == "unsupported"
                                  for opt in o.options)
    lines.append("unsupported samples by option: " +
                 ", ".join(f"{k} {v}" for k, v in missing.most_common()))
    return "\n".join(lines), total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--only", help="OpInfo names containing this")
    parser.add_argument("--dtype", choices=[str(d).replace("torch.", "") for d in DTYPES],
                        help="only the samples of this dtype")
    flags = parser.parse_args()
    opinfos = [o for o in mapped_opinfos() if not flags.only or flags.only in opinfo_id(o)]
    dtypes = [d for d in DTYPES if not flags.dtype or str(d) == "torch." + flags.dtype]
    server = gs.Server("--workers=1", "--threads_per_worker=1")
    try:
        outcomes = run_all(server, opinfos, dtypes)
    finally:
        server.close()
    if flags.verbose:
        for o in outcomes:
            if o.klass != "pass":
                print(o)
    print(table(outcomes)[0])


if __name__ == "__main__":
    main()
