"""PyTorch models exported with torch.onnx.export for the ONNX import tests,
and ONNX files built by hand (python3-onnx's helper) for the error cases."""

import io

import onnx  # noqa: F401 (onnx.load_model_from_string)
import torch
from onnx import TensorProto, helper, numpy_helper


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 16)
        self.fc2 = torch.nn.Linear(16, 12)
        self.fc3 = torch.nn.Linear(12, 4)

    def forward(self, x):
        h = torch.tanh(self.fc1(x))
        h = torch.nn.functional.leaky_relu(self.fc2(h), 0.2)
        return torch.log_softmax(torch.sigmoid(self.fc3(h)) * 3.0, dim=1)


class CNN(torch.nn.Module):
    """Conv, BatchNorm, ReLU, MaxPool, grouped strided Conv, ELU, AvgPool,
    a flattening view, Dropout, Linear, Softmax. `mask` replays a dropout
    mask (gradserve's draw) in PyTorch."""

    def __init__(self, p=0.3):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.pool = torch.nn.MaxPool2d(2)
        self.conv2 = torch.nn.Conv2d(8, 6, 3, stride=2, padding=1, groups=2)
        self.avg = torch.nn.AvgPool2d(2)
        self.drop = torch.nn.Dropout(p)
        self.fc = torch.nn.Linear(6, 5)
        self.mask = None

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv1(x))))
        x = self.avg(torch.nn.functional.elu(self.conv2(x)))
        x = x.view(x.size(0), -1)
        if self.mask is None:
            x = self.drop(x)
        elif self.training:
            x = x * self.mask / (1 - self.drop.p)
        return torch.softmax(self.fc(x), dim=1)


class ClassifierLoss(torch.nn.Module):
    """An MLP with its loss inside: (x, target) -> cross-entropy."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(5, 10)
        self.fc2 = torch.nn.Linear(10, 3)

    def forward(self, x, target):
        logits = self.fc2(torch.relu(self.fc1(x)))
        return torch.nn.functional.cross_entropy(logits, target)


def export(module, args, input_names, output_names, training, opset=14,
           dynamic_axes=None):
    """The ONNX bytes of `module` at `args`; training: torch.onnx.TrainingMode."""
    f = io.BytesIO()
    torch.onnx.export(module, args, f, training=training, input_names=input_names,
                      output_names=output_names, opset_version=opset,
                      do_constant_folding=False, dynamic_axes=dynamic_axes)
    return f.getvalue()


def model_bytes(nodes, inputs, outputs, initializers=(), opset=14):
    """A hand-built model: inputs/outputs are (name, shape) float tensors."""
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        initializer=list(initializers))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    return m.SerializeToString()


def float_initializer(name, array):
    return numpy_helper.from_array(array.astype("float32"), name)


class Pools(torch.nn.Module):
    """Poolings torch.onnx.export writes with options: ceil mode, dilation,
    padding left out of the mean."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        x = torch.nn.functional.max_pool2d(x, 3, stride=2, padding=1, dilation=2,
                                           ceil_mode=True)
        return torch.nn.functional.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True,
                                              count_include_pad=False)


class Pools1d(torch.nn.Module):
    """1-d poolings (ONNX MaxPool and AveragePool with 1-d kernels)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(2, 3, 3, padding=1)

    def forward(self, x):
        x = torch.nn.functional.max_pool1d(self.conv(x), 3, stride=2, padding=1, dilation=1)
        return torch.nn.functional.avg_pool1d(x, 2, ceil_mode=True)


class GeluLayerNorm(torch.nn.Module):
    """GELU (exported as Div, Erf, Add, Mul, Mul), LayerNorm (opset 17's
    LayerNormalization), Sqrt, Abs, Neg."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(6, 8)
        self.norm = torch.nn.LayerNorm(8)

    def forward(self, x):
        h = self.norm(torch.nn.functional.gelu(self.fc(x)))
        return torch.sqrt(h * h + 1.0) - torch.abs(h) * 0.5 + (-h)


class WeightedLoss(torch.nn.Module):
    """Cross-entropy with class weights and an ignored label, and NLL (on
    log-sigmoids: log_softmax would make it one more cross-entropy)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(5, 4)
        self.register_buffer("class_weight", torch.tensor([0.5, 2.0, 1.0, 1.5]))

    def forward(self, x, target):
        scores = self.fc(x)
        ce = torch.nn.functional.cross_entropy(scores, target, weight=self.class_weight,
                                               ignore_index=1)
        nll = torch.nn.functional.nll_loss(torch.log(torch.sigmoid(scores)), target,
                                           weight=self.class_weight, reduction="sum")
        return ce + 0.1 * nll
