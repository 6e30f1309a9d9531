"""Every op over gRPC against PyTorch autograd: outputs and the gradients of
every floating input, for random output gradients (or the loss itself).

The reference runs in float64 on the same float32 inputs, so a mismatch is
gradserve's error, not torch's rounding."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gs

RTOL = 1e-4
ATOL = 1e-5


def uniform(shape, lo=-1.0, hi=1.0):
    return lambda rng: rng.uniform(lo, hi, size=shape).astype(np.float32)


def away_from_zero(shape, lo=0.1, hi=1.0):
    return lambda rng: (rng.uniform(lo, hi, size=shape) *
                        rng.choice([-1.0, 1.0], size=shape)).astype(np.float32)


def labels(n, classes):
    return lambda rng: rng.integers(0, classes, size=(n,)).astype(np.int64)


def class_map(shape, classes):
    """int64 class labels of any shape (a 0-d label too)."""
    return lambda rng: np.asarray(rng.integers(0, classes, size=shape), dtype=np.int64)


def probabilities(shape):
    def make(rng):
        p = rng.uniform(0.1, 1.0, size=shape)
        return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)
    return make


def log_probabilities(shape):
    return lambda rng: np.log(probabilities(shape)(rng)).astype(np.float32)


class Case:
    def __init__(self, op, inputs, reference, attrs=None, loss=False, name=None,
                 derivative=True):
        self.op = op
        # False where torch's gradient is by definition not the derivative
        # (Embedding's padding_idx and scale_grad_by_freq): finite
        # differences (test_analysis) cannot check it.
        self.derivative = derivative
        self.inputs = inputs  # [(name, maker)]; name "" = optional input left out
        self.reference = reference  # torch function of the inputs
        self.attrs = attrs or {}
        self.loss = loss  # the output is a scalar loss
        self.id = name or op


def nll_weighted_ignoring(ignore):
    """F.nll_loss(lp, t, weight=w, ignore_index=ignore) written out, so that
    autograd differentiates the weight too (torch's nll_loss does not)."""
    def loss(lp, t, w):
        kept = t != ignore
        wt = w[t.clamp(min=0)] * kept
        picked = lp.gather(1, t.clamp(min=0).unsqueeze(1)).squeeze(1)
        return -(wt * picked).sum() / wt.sum()
    return loss


def torch_ce_probs(z, t, reduction):
    loss = -(t * F.log_softmax(z, dim=1)).sum()
    return loss / z.shape[0] if reduction == "mean" else loss


CASES = [
    Case("Linear", [("x", uniform((4, 5))), ("w", uniform((3, 5))), ("b", uniform((3,)))],
         F.linear),
    Case("Linear", [("x", uniform((2, 3, 5))), ("w", uniform((3, 5))), ("", None)],
         lambda x, w: F.linear(x, w), name="Linear-nobias-3d"),
    Case("MatMul", [("a", uniform((6, 4))), ("b", uniform((4, 3)))], torch.matmul),
    Case("MatMul", [("a", uniform((2, 5, 4))), ("b", uniform((4, 3)))], torch.matmul,
         name="MatMul-batched"),
    Case("MatMul", [("a", uniform((4,))), ("b", uniform((4,)))], torch.matmul,
         name="MatMul-vectors"),
    Case("MatMul", [("a", uniform((2, 3, 4))), ("b", uniform((4,)))], torch.matmul,
         name="MatMul-batched-matrix-vector"),
    Case("MatMul", [("a", uniform((4,))), ("b", uniform((2, 4, 3)))], torch.matmul,
         name="MatMul-vector-batched-matrix"),
    Case("MatMul", [("a", uniform((3, 1, 2, 4))), ("b", uniform((2, 4, 5)))],
         torch.matmul, name="MatMul-broadcast-batches"),
    Case("Add", [("a", uniform((3, 4))), ("b", uniform((3, 4)))], torch.add),
    Case("Add", [("a", uniform((3, 1))), ("b", uniform((1, 4)))], torch.add,
         name="Add-both-broadcast"),
    Case("Sub", [("a", uniform((2, 3, 4))), ("b", uniform((4,)))], torch.sub,
         name="Sub-rank-mismatch"),
    Case("Sub", [("a", uniform(())), ("b", uniform((2, 3)))], torch.sub,
         name="Sub-scalar-first"),
    Case("Mul", [("a", uniform((5, 1, 3))), ("b", uniform((1, 4, 3)))], torch.mul),
    Case("Div", [("a", uniform((3, 4))), ("b", uniform((4,), 0.5, 2.0))], torch.div),
    Case("Div", [("a", uniform((3, 4), -5, 5)), ("b", away_from_zero((4,), 0.5, 2.0))],
         lambda a, b: torch.div(a, b, rounding_mode="floor"), {"rounding_mode": "floor"},
         name="Div-floor"),
    Case("Div", [("a", uniform((3, 4), -5, 5)), ("b", away_from_zero((3, 1), 0.5, 2.0))],
         lambda a, b: torch.div(a, b, rounding_mode="trunc"), {"rounding_mode": "trunc"},
         name="Div-trunc"),
    Case("Add", [("a", uniform((3, 4))), ("b", uniform((4,)))],
         lambda a, b: torch.add(a, b, alpha=-2.5), {"alpha": -2.5}, name="Add-alpha"),
    Case("Sub", [("a", uniform((3, 1))), ("b", uniform((1, 4)))],
         lambda a, b: torch.sub(a, b, alpha=0.5), {"alpha": 0.5}, name="Sub-alpha"),
    Case("Div", [("a", uniform((1,))), ("b", uniform((3, 2), 0.5, 2.0))], torch.div,
         name="Div-numerator-broadcast"),
    Case("Scale", [("x", uniform((3, 4)))], lambda x: 2.5 * x, {"factor": 2.5}),
    Case("Sum", [("x", uniform((3, 4, 5)))], torch.sum, name="Sum-all"),
    Case("Sum", [("x", uniform((3, 4, 5)))], lambda x: x.sum(dim=(1,), keepdim=True),
         {"axes": [1], "keepdims": 1}, name="Sum-axis1-keepdims"),
    Case("Mean", [("x", uniform((3, 4, 5)))], lambda x: x.mean(dim=(0, 2)),
         {"axes": [0, -1]}, name="Mean-axes"),
    Case("Mean", [("x", uniform((7,)))], torch.mean, name="Mean-all"),
    Case("ReLU", [("x", away_from_zero((4, 6)))], F.relu),
    Case("LeakyReLU", [("x", away_from_zero((4, 6)))], lambda x: F.leaky_relu(x, 0.2),
         {"alpha": 0.2}),
    Case("LeakyReLU", [("x", away_from_zero((4, 6)))], F.leaky_relu,
         name="LeakyReLU-default"),
    Case("ELU", [("x", away_from_zero((4, 6)))], lambda x: F.elu(x, 0.7), {"alpha": 0.7}),
    Case("ELU", [("x", away_from_zero((3, 3)))], F.elu, name="ELU-default"),
    Case("GELU", [("x", uniform((4, 6), -3, 3))], F.gelu),
    Case("SiLU", [("x", uniform((4, 6), -3, 3))], F.silu),
    Case("Mish", [("x", uniform((4, 6), -3, 3))], F.mish),
    Case("Sqrt", [("x", uniform((4, 6), 0.2, 3))], torch.sqrt),
    Case("Abs", [("x", away_from_zero((4, 6)))], torch.abs),
    Case("GELU", [("x", uniform((4, 6), -3, 3))], lambda x: F.gelu(x, approximate="tanh"),
         {"approximate": "tanh"}, name="GELU-tanh"),
    Case("Tanh", [("x", uniform((4, 6), -3, 3))], torch.tanh),
    Case("Sigmoid", [("x", uniform((4, 6), -4, 4))], torch.sigmoid),
    Case("Exp", [("x", uniform((4, 6)))], torch.exp),
    Case("Log", [("x", uniform((4, 6), 0.2, 3.0))], torch.log),
    Case("Softmax", [("x", uniform((4, 7), -3, 3))], lambda x: F.softmax(x, dim=-1)),
    Case("Softmax", [("x", uniform((4, 7, 3), -3, 3))], lambda x: F.softmax(x, dim=1),
         {"axis": 1}, name="Softmax-axis1"),
    Case("LogSoftmax", [("x", uniform((4, 7), -3, 3))], lambda x: F.log_softmax(x, dim=-1)),
    Case("LogSoftmax", [("x", uniform((5, 3), -3, 3))], lambda x: F.log_softmax(x, dim=0),
         {"axis": 0}, name="LogSoftmax-axis0"),
    Case("Flatten", [("x", uniform((2, 3, 4, 5)))], lambda x: torch.flatten(x, 1)),
    Case("Flatten", [("x", uniform((2, 3, 4)))], lambda x: torch.flatten(x, 2),
         {"start_dim": 2}, name="Flatten-start2"),
    Case("Reshape", [("x", uniform((2, 3, 4)))], lambda x: x.reshape(4, -1),
         {"shape": [4, -1]}),
    Case("Concat", [("a", uniform((2, 3))), ("b", uniform((2, 5))), ("c", uniform((2, 1)))],
         lambda a, b, c: torch.cat([a, b, c], dim=1)),
    Case("Concat", [("a", uniform((2, 3))), ("b", uniform((4, 3)))],
         lambda a, b: torch.cat([a, b], dim=0), {"axis": 0}, name="Concat-axis0"),
    Case("MSELoss", [("p", uniform((4, 3))), ("t", uniform((4, 3)))], F.mse_loss, loss=True),
    Case("MSELoss", [("p", uniform((4, 3))), ("t", uniform((4, 3)))],
         lambda p, t: F.mse_loss(p, t, reduction="sum"), {"reduction": "sum"}, loss=True,
         name="MSELoss-sum"),
    Case("CrossEntropyLoss", [("z", uniform((6, 5), -2, 2)), ("t", labels(6, 5))],
         F.cross_entropy, loss=True),
    Case("CrossEntropyLoss", [("z", uniform((6, 5), -2, 2)), ("t", labels(6, 5))],
         lambda z, t: F.cross_entropy(z, t, reduction="sum"), {"reduction": "sum"},
         loss=True, name="CrossEntropyLoss-sum"),
    Case("CrossEntropyLoss", [("z", uniform((4, 3), -2, 2)), ("t", probabilities((4, 3)))],
         lambda z, t: torch_ce_probs(z, t, "mean"), loss=True,
         name="CrossEntropyLoss-probabilities"),
    Case("CrossEntropyLoss", [("z", uniform((2, 3, 2, 2), -2, 2)), ("t", class_map((2, 2, 2), 3))],
         F.cross_entropy, loss=True, name="CrossEntropyLoss-spatial"),
    Case("CrossEntropyLoss", [("z", uniform((2, 3, 4), -2, 2)), ("t", uniform((2, 3, 4), 0, 1))],
         lambda z, t: -(t * F.log_softmax(z, dim=1)).sum() / 8, loss=True,
         name="CrossEntropyLoss-spatial-probabilities"),
    Case("CrossEntropyLoss", [("z", uniform((5,), -2, 2)), ("t", class_map((), 5))],
         lambda z, t: F.cross_entropy(z, t, reduction="sum"), {"reduction": "sum"},
         loss=True, name="CrossEntropyLoss-unbatched"),
    Case("NLLLoss", [("lp", log_probabilities((5, 4))), ("t", labels(5, 4))], F.nll_loss,
         loss=True),
    Case("NLLLoss", [("lp", log_probabilities((2, 4, 3))), ("t", class_map((2, 3), 4))],
         F.nll_loss, loss=True, name="NLLLoss-spatial"),
    Case("NLLLoss", [("lp", log_probabilities((4,))), ("t", class_map((), 4))], F.nll_loss,
         loss=True, name="NLLLoss-unbatched"),
    Case("NLLLoss", [("lp", log_probabilities((6, 3))), ("t", class_map((6,), 3)),
                     ("w", uniform((3,), 0.5, 2))],
         nll_weighted_ignoring(1), {"ignore_index": 1}, loss=True,
         name="NLLLoss-weight-ignore-index"),
    Case("CrossEntropyLoss", [("z", uniform((2, 3, 2), -2, 2)), ("t", class_map((2, 2), 3)),
                              ("w", uniform((3,), 0.5, 2))],
         lambda z, t, w: -w[t] * F.log_softmax(z, dim=1).gather(1, t.unsqueeze(1)).squeeze(1),
         {"reduction": "none"}, name="CrossEntropyLoss-weight-none"),
    Case("CrossEntropyLoss", [("z", uniform((4, 3), -2, 2)), ("t", uniform((4, 3), 0, 1)),
                              ("w", uniform((3,), 0.5, 2))],
         lambda z, t, w: -(w * t * F.log_softmax(z, dim=1)).sum() / 4, loss=True,
         name="CrossEntropyLoss-probabilities-weight"),
    Case("BCELoss", [("p", uniform((4, 3), 0.05, 0.95)), ("t", uniform((4, 3), 0, 1)),
                     ("w", uniform((3,), 0.5, 2))],
         lambda p, t, w: -w * (t * torch.log(p) + (1 - t) * torch.log(1 - p)),
         {"reduction": "none"}, name="BCELoss-weight-none"),
    Case("BCEWithLogitsLoss", [("z", uniform((4, 3), -3, 3)), ("t", uniform((4, 3), 0, 1)),
                               ("w", uniform((4, 1), 0.5, 2)), ("pw", uniform((3,), 0.5, 3))],
         lambda z, t, w, pw: (w * ((1 - t) * z + ((pw - 1) * t + 1) * F.softplus(-z))).mean(),
         loss=True, name="BCEWithLogitsLoss-weight-pos-weight"),
    Case("MSELoss", [("p", uniform((4, 3))), ("t", uniform((4, 3)))],
         lambda p, t: F.mse_loss(p, t, reduction="none"), {"reduction": "none"},
         name="MSELoss-none"),
    Case("CrossEntropyLoss", [("z", uniform((2, 4, 3), -2, 2)), ("t", class_map((2, 3), 4))],
         lambda z, t: F.cross_entropy(z, t, label_smoothing=0.1, ignore_index=2),
         {"label_smoothing": 0.1, "ignore_index": 2}, loss=True,
         name="CrossEntropyLoss-label-smoothing"),
    Case("CrossEntropyLoss", [("z", uniform((4, 3), -2, 2)), ("t", uniform((4, 3), 0, 1))],
         lambda z, t: F.cross_entropy(z, t, label_smoothing=0.3, reduction="sum"),
         {"label_smoothing": 0.3, "reduction": "sum"}, loss=True,
         name="CrossEntropyLoss-probabilities-label-smoothing"),
    Case("NLLLoss", [("lp", log_probabilities((5, 4))), ("t", labels(5, 4))],
         lambda lp, t: F.nll_loss(lp, t, reduction="sum"), {"reduction": "sum"}, loss=True,
         name="NLLLoss-sum"),
    Case("BCELoss", [("p", uniform((4, 3), 0.05, 0.95)), ("t", uniform((4, 3), 0.0, 1.0))],
         F.binary_cross_entropy, loss=True),
    Case("BCELoss", [("p", uniform((6,), 0.05, 0.95)), ("t", uniform((6,), 0.0, 1.0))],
         lambda p, t: F.binary_cross_entropy(p, t, reduction="sum"), {"reduction": "sum"},
         loss=True, name="BCELoss-sum"),
    Case("BCEWithLogitsLoss", [("z", uniform((4, 3), -3, 3)), ("t", uniform((4, 3), 0, 1))],
         F.binary_cross_entropy_with_logits, loss=True),
    Case("L1Loss", [("p", uniform((4, 3))), ("t", uniform((4, 3)))], F.l1_loss, loss=True),
    Case("L1Loss", [("p", uniform((5,))), ("t", uniform((5,)))],
         lambda p, t: F.l1_loss(p, t, reduction="none"), {"reduction": "none"},
         name="L1Loss-none"),
    Case("SmoothL1Loss", [("p", uniform((4, 3))), ("t", uniform((4, 3)))],
         lambda p, t: F.smooth_l1_loss(p, t, beta=0.6), {"beta": 0.6}, loss=True),
    Case("SmoothL1Loss", [("p", uniform((6,))), ("t", uniform((6,)))],
         lambda p, t: F.smooth_l1_loss(p, t, reduction="sum", beta=0.0),
         {"beta": 0.0, "reduction": "sum"}, loss=True, name="SmoothL1Loss-beta0-sum"),
    Case("HuberLoss", [("p", uniform((4, 3), -2, 2)), ("t", uniform((4, 3)))],
         lambda p, t: F.huber_loss(p, t, delta=0.8), {"delta": 0.8}, loss=True),
    Case("HuberLoss", [("p", uniform((2, 3, 2), -2, 2)), ("t", uniform((2, 3, 2)))],
         lambda p, t: F.huber_loss(p, t, reduction="none", delta=1.5),
         {"delta": 1.5, "reduction": "none"}, name="HuberLoss-none"),
    Case("KLDivLoss", [("lp", log_probabilities((4, 3))), ("t", probabilities((4, 3)))],
         lambda lp, t: F.kl_div(lp, t, reduction="batchmean"), {"reduction": "batchmean"},
         loss=True),
    Case("KLDivLoss", [("lp", log_probabilities((2, 5))), ("t", log_probabilities((2, 5)))],
         lambda lp, t: F.kl_div(lp, t, reduction="sum", log_target=True),
         {"reduction": "sum", "log_target": 1}, loss=True, name="KLDivLoss-log-target-sum"),
    Case("KLDivLoss", [("lp", log_probabilities((3, 4))), ("t", probabilities((3, 4)))],
         lambda lp, t: F.kl_div(lp, t, reduction="none"), {"reduction": "none"},
         name="KLDivLoss-none"),
    Case("ConvTranspose2d", [("x", uniform((2, 3, 4, 5))), ("w", uniform((3, 4, 3, 3))),
                             ("b", uniform((4,)))], F.conv_transpose2d),
    Case("ConvTranspose2d", [("x", uniform((2, 4, 4, 3))), ("w", uniform((4, 3, 3, 2))),
                             ("", None)],
         lambda x, w: F.conv_transpose2d(x, w, stride=(2, 3), padding=(1, 0),
                                         output_padding=(1, 2), dilation=(2, 1), groups=2),
         {"stride": [2, 3], "padding": [1, 0], "output_padding": [1, 2], "dilation": [2, 1],
          "groups": 2}, name="ConvTranspose2d-strided-padded-dilated-grouped"),
    Case("ConvTranspose2d", [("x", uniform((16, 5, 5))), ("w", uniform((16, 16, 3, 3))),
                             ("b", uniform((16,)))],
         lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
         {"stride": 2, "padding": 1, "output_padding": 1}, name="ConvTranspose2d-unbatched-16"),
    Case("ConvTranspose1d", [("x", uniform((2, 3, 7))), ("w", uniform((3, 2, 4))),
                             ("b", uniform((2,)))],
         lambda x, w, b: F.conv_transpose1d(x, w, b, stride=3, padding=2, output_padding=1),
         {"stride": 3, "padding": 2, "output_padding": 1}),
    Case("ConvTranspose1d", [("x", uniform((4, 6))), ("w", uniform((4, 1, 3))), ("", None)],
         lambda x, w: F.conv_transpose1d(x, w, groups=4, dilation=3, output_padding=2, stride=1),
         {"groups": 4, "dilation": 3, "output_padding": 2}, name="ConvTranspose1d-depthwise"),
    Case("GroupNorm", [("x", uniform((3, 6, 5), -2, 2)), ("w", uniform((6,), 0.5, 1.5)),
                       ("b", uniform((6,)))],
         lambda x, w, b: F.group_norm(x, 3, w, b), {"num_groups": 3}),
    Case("GroupNorm", [("x", uniform((2, 4, 3, 3), -2, 2)), ("", None), ("", None)],
         lambda x: F.group_norm(x, 2, eps=0.01), {"num_groups": 2, "epsilon": 0.01},
         name="GroupNorm-2d-no-affine"),
    Case("InstanceNorm1d", [("x", uniform((3, 4, 6), -2, 2)), ("w", uniform((4,), 0.5, 1.5)),
                            ("b", uniform((4,)))],
         lambda x, w, b: F.instance_norm(x, weight=w, bias=b)),
    Case("InstanceNorm2d", [("x", uniform((2, 3, 4, 5), -2, 2)), ("w", uniform((3,), 0.5, 1.5)),
                            ("b", uniform((3,)))],
         lambda x, w, b: F.instance_norm(x, weight=w, bias=b, eps=1e-3), {"epsilon": 1e-3}),
    Case("InstanceNorm2d", [("x", uniform((3, 4, 5), -2, 2))],
         lambda x: F.instance_norm(x.unsqueeze(0)).squeeze(0), name="InstanceNorm2d-unbatched"),
    Case("Dropout2d", [("x", uniform((2, 3, 4, 4)))], lambda x: F.dropout2d(x, 1.0),
         {"p": 1.0}, name="Dropout2d-p1"),
    Case("Dropout2d", [("x", uniform((2, 3, 5)))], lambda x: F.dropout2d(x, 0.0),
         {"p": 0.0}, name="Dropout2d-p0"),
    Case("Embedding", [("i", class_map((2, 3), 5)), ("w", uniform((5, 4)))], F.embedding),
    Case("Embedding", [("i", class_map((4, 2, 3), 3)), ("w", uniform((3, 2)))],
         lambda i, w: F.embedding(i, w, padding_idx=-1, scale_grad_by_freq=True),
         {"padding_idx": -1, "scale_grad_by_freq": 1}, name="Embedding-padding-scaled",
         derivative=False),
    # max_norm renormalises the looked-up rows (torch: in place, without
    # autograd): y has the scaled rows, dL/dw is the plain scatter-add.
    Case("Embedding", [("i", class_map((3, 4), 6)), ("w", uniform((6, 3), -2, 2))],
         lambda i, w: F.embedding(i, w.clone(), max_norm=1.0),
         {"max_norm": 1.0}, name="Embedding-max-norm", derivative=False),
    Case("Embedding", [("i", class_map((5,), 4)), ("w", uniform((4, 3), -2, 2))],
         lambda i, w: F.embedding(i, w.clone(), max_norm=1.5, norm_type=1.0),
         {"max_norm": 1.5, "norm_type": 1.0}, name="Embedding-max-norm-l1",
         derivative=False),
    Case("Conv2d", [("x", uniform((2, 3, 7, 7))), ("w", uniform((4, 3, 3, 3))),
                    ("b", uniform((4,)))], F.conv2d),
    Case("Conv2d", [("x", uniform((2, 4, 9, 8))), ("w", uniform((6, 2, 3, 2))), ("", None)],
         lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=(1, 2), dilation=(2, 1),
                               groups=2),
         {"stride": [2, 1], "padding": [1, 2], "dilation": [2, 1], "groups": 2},
         name="Conv2d-strided-padded-dilated-grouped"),
    Case("Conv2d", [("x", uniform((1, 16, 5, 5))), ("w", uniform((16, 16, 3, 3))),
                    ("b", uniform((16,)))], lambda x, w, b: F.conv2d(x, w, b, padding=1),
         {"padding": [1, 1]}, name="Conv2d-16-channels"),
    Case("Conv1d", [("x", uniform((2, 3, 11))), ("w", uniform((5, 3, 4))), ("b", uniform((5,)))],
         lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1),
         {"stride": 2, "padding": 1}),
    Case("Conv1d", [("x", uniform((1, 4, 10))), ("w", uniform((4, 1, 3))), ("", None)],
         lambda x, w: F.conv1d(x, w, dilation=2, groups=4), {"dilation": 2, "groups": 4},
         name="Conv1d-depthwise-dilated"),
    Case("MaxPool2d", [("x", uniform((2, 3, 6, 6)))], lambda x: F.max_pool2d(x, 2),
         {"kernel": [2, 2]}),
    Case("MaxPool2d", [("x", uniform((1, 2, 7, 7)))],
         lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
         {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1]}, name="MaxPool2d-padded"),
    Case("AvgPool2d", [("x", uniform((2, 3, 6, 6)))], lambda x: F.avg_pool2d(x, 2),
         {"kernel": [2, 2]}),
    Case("AvgPool2d", [("x", uniform((1, 2, 7, 5)))],
         lambda x: F.avg_pool2d(x, (3, 2), stride=(2, 1), padding=(1, 1)),
         {"kernel": [3, 2], "stride": [2, 1], "padding": [1, 1]}, name="AvgPool2d-padded"),
    Case("AvgPool2d", [("x", uniform((2, 4, 3, 5)))], lambda x: F.adaptive_avg_pool2d(x, 1),
         {"kernel": [3, 5]}, name="AvgPool2d-global"),
    Case("Conv2d", [("x", uniform((16, 5, 4))), ("w", uniform((16, 16, 3, 3))),
                    ("b", uniform((16,)))], lambda x, w, b: F.conv2d(x, w, b, padding=1),
         {"padding": [1, 1]}, name="Conv2d-unbatched"),
    Case("Conv2d", [("x", uniform((2, 3, 5, 6))), ("w", uniform((4, 3, 2, 3))),
                    ("b", uniform((4,)))],
         lambda x, w, b: F.conv2d(x, w, b, padding="same", dilation=(2, 1)),
         {"padding": "same", "dilation": [2, 1]}, name="Conv2d-same-even-kernel"),
    Case("Conv1d", [("x", uniform((2, 4, 9))), ("w", uniform((3, 4, 4))), ("", None)],
         lambda x, w: F.conv1d(x, w, padding="same"), {"padding": "same"},
         name="Conv1d-same"),
    Case("Conv2d", [("x", uniform((2, 3, 5, 4))), ("w", uniform((4, 3, 3, 3))),
                    ("b", uniform((4,)))],
         lambda x, w, b: F.conv2d(F.pad(x, (2, 2, 1, 1), mode="reflect"), w, b),
         {"padding": [1, 2], "padding_mode": "reflect"}, name="Conv2d-reflect"),
    Case("Conv1d", [("x", uniform((2, 4, 6))), ("w", uniform((3, 4, 3))), ("", None)],
         lambda x, w: F.conv1d(F.pad(x, (2, 2), mode="circular"), w),
         {"padding": 2, "padding_mode": "circular"}, name="Conv1d-circular"),
    Case("Conv2d", [("x", uniform((1, 2, 4, 5))), ("w", uniform((3, 2, 2, 3))), ("", None)],
         lambda x, w: F.conv2d(F.pad(x, (1, 1, 0, 1), mode="replicate"), w),
         {"padding": "same", "padding_mode": "replicate"}, name="Conv2d-same-replicate"),
    Case("Conv1d", [("x", uniform((2, 4, 9))), ("w", uniform((3, 4, 4))), ("", None)],
         lambda x, w: F.conv1d(x, w, stride=2, padding="valid"),
         {"padding": "valid", "stride": 2}, name="Conv1d-valid"),
    Case("Conv1d", [("x", uniform((4, 10))), ("w", uniform((4, 2, 3))), ("b", uniform((4,)))],
         lambda x, w, b: F.conv1d(x, w, b, stride=2, groups=2), {"stride": 2, "groups": 2},
         name="Conv1d-unbatched"),
    Case("MaxPool2d", [("x", uniform((3, 7, 7)))],
         lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
         {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1]}, name="MaxPool2d-unbatched"),
    Case("AvgPool2d", [("x", uniform((2, 6, 5)))], lambda x: F.avg_pool2d(x, 2),
         {"kernel": [2, 2]}, name="AvgPool2d-unbatched"),
    Case("MaxPool2d", [("x", uniform((2, 3, 7, 6)))],
         lambda x: F.max_pool2d(x, 3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True),
         {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1], "dilation": [1, 2],
          "ceil_mode": 1}, name="MaxPool2d-dilated-ceil"),
    Case("AvgPool2d", [("x", uniform((2, 3, 7, 6)))],
         lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True,
                                count_include_pad=False),
         {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1], "ceil_mode": 1,
          "count_include_pad": 0}, name="AvgPool2d-ceil-padding-not-counted"),
    Case("AvgPool2d", [("x", uniform((1, 2, 5, 5)))],
         lambda x: F.avg_pool2d(x, 2, ceil_mode=True, divisor_override=3),
         {"kernel": [2, 2], "ceil_mode": 1, "divisor_override": 3},
         name="AvgPool2d-divisor-override"),
    Case("Conv2d", [("x", uniform((2, 3, 5, 6))), ("w", uniform((4, 3, 3, 2))),
                    ("b", uniform((4,)))],
         lambda x, w, b: F.conv2d(F.pad(x, (2, 1, 0, 1)), w, b, stride=(2, 1)),
         {"padding": [0, 2, 1, 1], "stride": [2, 1]}, name="Conv2d-asymmetric-padding"),
    Case("Conv1d", [("x", uniform((2, 4, 7))), ("w", uniform((3, 4, 4))), ("", None)],
         lambda x, w: F.conv1d(F.pad(x, (1, 2)), w), {"padding": [1, 2]},
         name="Conv1d-asymmetric-padding"),
    Case("MaxPool2d", [("x", uniform((2, 3, 7, 6)))],
         lambda x: F.max_pool2d(F.pad(x, (0, 1, 1, 0), value=-float("inf")), 3, stride=2),
         {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 0, 0, 1]},
         name="MaxPool2d-asymmetric-padding"),
    Case("AvgPool2d", [("x", uniform((2, 3, 7, 6)))],
         lambda x: F.avg_pool2d(F.pad(x, (1, 0, 0, 1)), 3, stride=2),
         {"kernel": [3, 3], "stride": [2, 2], "padding": [0, 1, 1, 0]},
         name="AvgPool2d-asymmetric-padding"),
    Case("AdaptiveAvgPool2d", [("x", uniform((2, 3, 8, 7)))],
         lambda x: F.adaptive_avg_pool2d(x, (5, 3)), {"output_size": [5, 3]}),
    Case("AdaptiveAvgPool2d", [("x", uniform((3, 4, 5)))],
         lambda x: F.adaptive_avg_pool2d(x, 1), {"output_size": 1},
         name="AdaptiveAvgPool2d-global-unbatched"),
    Case("AdaptiveMaxPool2d", [("x", uniform((2, 3, 4, 5)))],
         lambda x: F.adaptive_max_pool2d(x, (3, 7)), {"output_size": [3, 7]}),
    Case("Hardtanh", [("x", uniform((4, 6), -2, 2))],
         lambda x: F.hardtanh(x, -0.7, 1.3), {"min_val": -0.7, "max_val": 1.3}),
    Case("Hardtanh", [("x", uniform((4, 6), -2, 2))], lambda x: F.hardtanh(x, 0.5, -0.5),
         {"min_val": 0.5, "max_val": -0.5}, name="Hardtanh-min-above-max"),
    Case("ReLU6", [("x", uniform((4, 6), -3, 9))], F.relu6),
    Case("Softplus", [("x", uniform((4, 6), -4, 4))], F.softplus),
    Case("Softplus", [("x", uniform((4, 6), -2, 2))],
         lambda x: F.softplus(x, beta=3, threshold=0.2), {"beta": 3, "threshold": 0.2},
         name="Softplus-beta-threshold"),
    Case("Clamp", [("x", uniform((3, 5), -2, 2))], lambda x: torch.clamp(x, -0.5, 0.8),
         {"min": -0.5, "max": 0.8}),
    Case("Clamp", [("x", uniform((3, 5), -2, 2))], lambda x: torch.clamp(x, max=0.3),
         {"max": 0.3}, name="Clamp-max-only"),
    Case("Clamp", [("x", uniform((2, 3, 4))), ("lo", uniform((3, 1), -1, 0)),
                   ("hi", uniform((4,), 0, 1))], torch.clamp, name="Clamp-tensor-bounds"),
    Case("Clamp", [("x", uniform((2, 4))), ("lo", uniform((4,))), ("hi", uniform((2, 1)))],
         torch.clamp, name="Clamp-tensor-bounds-crossing"),
    Case("Clamp", [("x", uniform((2, 4))), ("", None), ("hi", uniform((3, 1, 4)))],
         lambda x, hi: torch.clamp(x, max=hi), name="Clamp-tensor-max-broadcasts-x"),
    Case("Pow", [("x", uniform((3, 4), 0.1, 2))], lambda x: torch.pow(x, 2.7),
         {"exponent": 2.7}),
    Case("Pow", [("x", uniform((3, 4), -2, 2))], lambda x: torch.pow(x, -2.0),
         {"exponent": -2.0}, name="Pow-negative-integer"),
    Case("Pow", [("x", uniform((3, 1), 0.1, 2)), ("e", uniform((4,), -2, 2))], torch.pow,
         name="Pow-tensor-broadcast"),
    Case("Max", [("x", uniform((3, 4, 5)))], torch.amax, name="Max-all"),
    Case("Max", [("x", uniform((3, 4, 5)))], lambda x: torch.amax(x, (0, 2), keepdim=True),
         {"axes": [0, 2], "keepdims": 1}, name="Max-axes-keepdims"),
    Case("Max", [("x", lambda rng: np.array([[1, 3, 3], [2, 2, 0]], np.float32))],
         lambda x: torch.amax(x, 1), {"axes": [1]}, name="Max-ties-split"),
    Case("Min", [("x", uniform((3, 4, 5)))], lambda x: torch.amin(x, -1), {"axes": [-1]}),
    Case("Min", [("x", lambda rng: np.array([[1, 0, 0, 5]], np.float32))],
         lambda x: torch.amin(x), name="Min-ties-split"),
    Case("Transpose", [("x", uniform((2, 3, 4)))], lambda x: torch.transpose(x, 0, -1),
         {"dim0": 0, "dim1": -1}),
    Case("Permute", [("x", uniform((2, 3, 4, 5)))], lambda x: x.permute(2, 0, 3, 1),
         {"dims": [2, 0, 3, 1]}),
    Case("Squeeze", [("x", uniform((3, 1, 4, 1)))], torch.squeeze),
    Case("Squeeze", [("x", uniform((3, 1, 4, 1)))], lambda x: torch.squeeze(x, 0),
         {"dims": [0]}, name="Squeeze-dim-not-1"),
    Case("Unsqueeze", [("x", uniform((3, 4)))], lambda x: torch.unsqueeze(x, -2),
         {"dims": [-2]}),
    Case("Pad", [("x", uniform((2, 3, 4)))], lambda x: F.pad(x, (1, 2, -1, 1), value=0.5),
         {"pads": [1, 2, -1, 1], "value": 0.5}, name="Pad-constant-crop"),
    Case("Pad", [("x", uniform((2, 3, 4, 5)))], lambda x: F.pad(x, (2, 1, 3, 1), "reflect"),
         {"pads": [2, 1, 3, 1], "mode": "reflect"}, name="Pad-reflect"),
    Case("Pad", [("x", uniform((1, 3, 4, 4)))], lambda x: F.pad(x, (-1, 1, -2, 1), "reflect"),
         {"pads": [-1, 1, -2, 1], "mode": "reflect"}, name="Pad-reflect-crop"),
    Case("Pad", [("x", uniform((2, 3, 4)))], lambda x: F.pad(x, (3, 2), "replicate"),
         {"pads": [3, 2], "mode": "replicate"}, name="Pad-replicate"),
    Case("Pad", [("x", uniform((1, 2, 3, 3, 3)))],
         lambda x: F.pad(x, (1, 1, 2, 0, 0, 3), "replicate"),
         {"pads": [1, 1, 2, 0, 0, 3], "mode": "replicate"}, name="Pad-replicate-3d"),
    Case("Pad", [("x", uniform((2, 3, 4, 5)))], lambda x: F.pad(x, (2, 5, 1, 3), "circular"),
         {"pads": [2, 5, 1, 3], "mode": "circular"}, name="Pad-circular"),
    Case("Pad", [("x", uniform((1, 3, 4, 4)))], lambda x: F.pad(x, (-1, 1, 2, -1), "circular"),
         {"pads": [-1, 1, 2, -1], "mode": "circular"}, name="Pad-circular-crop"),
    Case("Split", [("x", uniform((4, 3)))], lambda x: torch.split(x, 4)[0],
         {"split_size_or_sections": 4}, name="Split-one-chunk"),
    Case("Gather", [("x", uniform((3, 4))), ("i", class_map((3, 6), 4))],
         lambda x, i: torch.gather(x, 1, i), {"dim": 1}),
    Case("Gather", [("x", uniform((4, 3, 2))), ("i", class_map((5, 2, 2), 4))],
         lambda x, i: torch.gather(x, 0, i), {"dim": 0}, name="Gather-repeated-smaller"),
    Case("IndexSelect", [("x", uniform((3, 4, 2))), ("i", class_map((7,), 4))],
         lambda x, i: torch.index_select(x, 1, i), {"dim": 1}),
    Case("Where", [("c", class_map((3, 1), 2)), ("a", uniform((3, 4))), ("b", uniform((4,)))],
         lambda c, a, b: torch.where(c.bool(), a, b)),
    Case("Where", [("c", class_map((2, 3, 4), 2)), ("a", uniform(())),
                   ("b", uniform((3, 1)))],
         lambda c, a, b: torch.where(c.bool(), a, b), name="Where-broadcast-all"),
    Case("LayerNorm", [("x", uniform((4, 6), -2, 2)), ("w", uniform((6,), 0.5, 1.5)),
                       ("b", uniform((6,)))], lambda x, w, b: F.layer_norm(x, (6,), w, b)),
    Case("LayerNorm", [("x", uniform((2, 3, 4), -2, 2)), ("w", uniform((3, 4), 0.5, 1.5)),
                       ("b", uniform((3, 4)))],
         lambda x, w, b: F.layer_norm(x, (3, 4), w, b), {"axes": 2}, name="LayerNorm-2-axes"),
]


def batch_norm_case(shape, train):
    c = shape[1]
    return Case(
        "BatchNorm",
        [("x", uniform(shape, -2, 2)), ("w", uniform((c,), 0.5, 1.5)), ("b", uniform((c,))),
         ("rm", uniform((c,), -0.5, 0.5)), ("rv", uniform((c,), 0.5, 2.0))],
        lambda x, w, b, rm, rv: F.batch_norm(x, rm.detach().clone(), rv.detach().clone(), w,
                                             b, training=train),
        name=f"BatchNorm-{len(shape)}d-{'train' if train else 'eval'}")


BATCH_NORM_CASES = [batch_norm_case(shape, train)
                    for shape in [(6, 3), (4, 3, 5), (2, 3, 4, 5)] for train in (True, False)]


def run_case(server, case, seed=0, mode=gs.pb.MODE_TRAIN, wrt=None):
    rng = np.random.default_rng(seed)
    values = {name: make(rng) for name, make in case.inputs if name}
    node = gs.node("node", case.op, [name for name, _ in case.inputs], ["y"], **case.attrs)
    g = gs.graph([node], inputs=list(values), outputs=["y"])
    if wrt is None:
        wrt = [name for name, v in values.items() if v.dtype == np.float32]

    # The torch reference, in float64 on the same values.
    leaves = {name: torch.tensor(v.astype(np.float64) if v.dtype == np.float32 else v,
                                 requires_grad=v.dtype == np.float32)
              for name, v in values.items()}
    y = case.reference(*leaves.values())
    if case.loss:
        seed_grad = None
        y.backward()
        request = gs.compute_request(g, feeds=values, loss="y", wrt=wrt, mode=mode)
    else:
        seed_grad = rng.uniform(-1, 1, size=tuple(y.shape)).astype(np.float32)
        y.backward(torch.tensor(seed_grad.astype(np.float64)))
        request = gs.compute_request(g, feeds=values, fetch=["y"],
                                     output_gradients={"y": seed_grad}, wrt=wrt, mode=mode)
    result = server.compute(request)
    return result, y.detach().numpy(), {n: leaves[n].grad.numpy() for n in wrt}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matches_torch(server, case):
    result, y, grads = run_case(server, case)
    assert result.outputs["y"].shape == y.shape
    np.testing.assert_allclose(result.outputs["y"], y, rtol=RTOL, atol=ATOL)
    assert set(result.gradients) == set(grads)
    for name, expected in grads.items():
        np.testing.assert_allclose(result.gradients[name], expected, rtol=RTOL, atol=ATOL,
                                   err_msg=f"d/d{name}")


@pytest.mark.parametrize("case", BATCH_NORM_CASES, ids=[c.id for c in BATCH_NORM_CASES])
def test_batch_norm_matches_torch(server, case):
    train = case.id.endswith("train")
    mode = gs.pb.MODE_TRAIN if train else gs.pb.MODE_EVAL
    # Running statistics do not reach the output in TRAIN; torch tracks no
    # gradient for them either way.
    result, y, grads = run_case(server, case, mode=mode, wrt=["x", "w", "b"])
    np.testing.assert_allclose(result.outputs["y"], y, rtol=RTOL, atol=ATOL)
    for name in ("x", "w", "b"):
        np.testing.assert_allclose(result.gradients[name], grads[name], rtol=RTOL, atol=ATOL,
                                   err_msg=f"d/d{name}")


def test_dropout_with_a_given_mask_matches_torch(server):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    mask = (rng.uniform(size=(4, 6)) > 0.3).astype(np.float32)
    dy = rng.normal(size=(4, 6)).astype(np.float32)
    g = gs.graph([gs.node("drop", "Dropout", ["x", "m"], ["y"], p=0.3)], inputs=["x", "m"])
    result = server.compute(gs.compute_request(g, feeds={"x": x, "m": mask}, fetch=["y"],
                                               output_gradients={"y": dy}, wrt=["x"]))
    # torch's dropout is x·mask/(1 - p) with its own mask; apply ours.
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = tx * torch.tensor(mask, dtype=torch.float64) / 0.7
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    np.testing.assert_allclose(result.outputs["y"], ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(result.gradients["x"], tx.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_dropout_draws_by_seed_and_is_the_identity_in_eval(server):
    x = np.ones((50, 40), np.float32)
    g = gs.graph([gs.node("drop", "Dropout", ["x"], ["y", "mask"], p=0.25)], inputs=["x"])

    def run(seed, mode=gs.pb.MODE_TRAIN):
        return server.compute(gs.compute_request(g, feeds={"x": x}, fetch=["y", "mask"],
                                                 seed=seed, mode=mode))
    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a.outputs["mask"], b.outputs["mask"])
    assert (a.outputs["mask"] != c.outputs["mask"]).any()
    kept = a.outputs["mask"].mean()
    assert abs(kept - 0.75) < 5 * np.sqrt(0.75 * 0.25 / x.size)
    np.testing.assert_allclose(a.outputs["y"], a.outputs["mask"] / 0.75, rtol=1e-6)
    e = run(7, gs.pb.MODE_EVAL)
    np.testing.assert_array_equal(e.outputs["y"], x)


# Pow at its singular points (NaN and inf values and gradients): kept out of
# CASES, whose every case also passes a finite-difference check.
POW_SINGULAR_CASES = [
    Case("Pow", [("x", uniform((3, 4), -2, 2))], lambda x: torch.pow(x, 0.5),
         {"exponent": 0.5}, name="Pow-sqrt-nan-below-zero"),
    Case("Pow", [("x", lambda rng: np.array([0, 0, 0, -2, -2, 2], np.float32)),
                 ("e", lambda rng: np.array([0, 2, -1, 3, 0.5, 0], np.float32))], torch.pow,
         name="Pow-zero-and-negative-bases"),
]


@pytest.mark.parametrize("case", POW_SINGULAR_CASES, ids=[c.id for c in POW_SINGULAR_CASES])
def test_pow_at_zero_and_negative_bases_matches_torch(server, case):
    """0^0 = 1, 0^-1 = inf, (-2)^0.5 = NaN, and their gradients, as torch's."""
    result, y, grads = run_case(server, case)
    np.testing.assert_allclose(result.outputs["y"], y, rtol=RTOL, atol=ATOL)
    assert np.isnan(y).any() or np.isinf(y).any()
    for name, expected in grads.items():
        np.testing.assert_allclose(result.gradients[name], expected, rtol=RTOL, atol=ATOL,
                                   err_msg=f"d/d{name}")


def test_split_matches_torch(server):
    """Several chunks, each with its own output gradient."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 7)).astype(np.float32)
    for sizes, outputs in ((3, 3), ([2, 0, 5], 3)):
        names = [f"y{k}" for k in range(outputs)]
        g = gs.graph([gs.node("s", "Split", ["x"], names, split_size_or_sections=sizes,
                              dim=-1)], inputs=["x"], outputs=names)
        tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        ty = torch.split(tx, sizes, dim=-1)
        seeds = {n: rng.normal(size=tuple(t.shape)).astype(np.float32)
                 for n, t in zip(names, ty)}
        torch.autograd.backward(ty, [torch.tensor(seeds[n], dtype=torch.float64)
                                     for n in names])
        result = server.compute(gs.compute_request(g, feeds={"x": x}, fetch=names,
                                                   output_gradients=seeds, wrt=["x"]))
        for n, t in zip(names, ty):
            np.testing.assert_array_equal(result.outputs[n], t.detach().numpy())
        np.testing.assert_allclose(result.gradients["x"], tx.grad.numpy(), rtol=RTOL)


def test_max_and_min_with_indices_match_torch_max_dim(server):
    """The (values, indices) form: the first extreme element chosen, the
    gradient to it alone (amax would spread it over the ties)."""
    x = np.array([[1, 3, 3, 0], [2, 2, 0, 2], [5, 4, 4, 5]], np.float32)
    dy = np.array([[0.5], [-1.0], [2.0]], np.float32)
    for op, fn in (("Max", torch.max), ("Min", torch.min)):
        g = gs.graph([gs.node("m", op, ["x"], ["y", "i"], axes=[1], keepdims=1)],
                     inputs=["x"], outputs=["y", "i"])
        result = server.compute(gs.compute_request(g, feeds={"x": x}, fetch=["y", "i"],
                                                   output_gradients={"y": dy}, wrt=["x"]))
        tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        values, indices = fn(tx, 1, keepdim=True)
        values.backward(torch.tensor(dy, dtype=torch.float64))
        np.testing.assert_array_equal(result.outputs["y"], values.detach().numpy())
        np.testing.assert_array_equal(result.outputs["i"], indices.numpy())
        np.testing.assert_array_equal(result.gradients["x"], tx.grad.numpy())


def test_every_api_op_is_covered(server):
    from gradserve.v1 import gradient_service_pb2 as pb
    info = server.rpc.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
    served = {op.name for op in info.ops}
    covered = {case.op for case in CASES}
    api_ops = {"Linear", "MatMul", "Add", "Sub", "Mul", "Div", "Scale", "Sum", "Mean",
               "ReLU", "Tanh", "Sigmoid", "Exp", "Log", "LeakyReLU", "ELU", "GELU",
               "Softmax", "LogSoftmax", "Flatten", "Reshape", "Concat", "MSELoss",
               "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "Conv1d",
               "Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm", "LayerNorm", "Dropout"}
    assert api_ops <= served, f"not served: {sorted(api_ops - served)}"
    covered |= {"BatchNorm", "Dropout"}  # their own tests below
    assert served <= covered, f"no parity case: {sorted(served - covered)}"


def test_cross_entropy_gradient_is_softmax_minus_target_over_n(server):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(8, 4)).astype(np.float32)
    t = rng.integers(0, 4, size=(8,)).astype(np.int64)
    g = gs.graph([gs.node("ce", "CrossEntropyLoss", ["z", "t"], ["L"])], inputs=["z", "t"])
    result = server.compute(gs.compute_request(g, feeds={"z": z, "t": t}, loss="L", wrt=["z"]))
    e = np.exp(z.astype(np.float64) - z.max(axis=1, keepdims=True))
    y = e / e.sum(axis=1, keepdims=True)
    onehot = np.eye(4)[t]
    np.testing.assert_allclose(result.gradients["z"], (y - onehot) / 8, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape", [(0, 3, 5), (2, 0, 3, 5)], ids=["unbatched", "batched"])
def test_instance_norm_of_no_channels(server, shape):
    """torch normalises no channels to an empty result (the fuzzer found a
    division by zero there: an instance norm of no channels has no groups)."""
    x = torch.zeros(shape, requires_grad=True)
    y = F.instance_norm(x.unsqueeze(0) if len(shape) == 3 else x)
    g = gs.graph([gs.node("n", "InstanceNorm2d", ["x"], ["y"])], inputs=["x"], outputs=["y"])
    result = server.compute(gs.compute_request(
        g, {"x": np.zeros(shape, np.float32)}, fetch=["y"],
        output_gradients={"y": np.zeros(shape, np.float32)}, wrt=["x"]))
    assert result.outputs["y"].shape == tuple(y.shape[-len(shape):]) == shape
    assert result.gradients["x"].shape == shape
