"""Two small models for the session and Forward/Backward suites, as torch
modules and as gradserve graphs with the same values: an MLP classifier, and
a CNN (Conv2d -> BatchNorm -> ReLU -> MaxPool2d -> Flatten -> Dropout ->
Linear -> CrossEntropyLoss). Value names are the torch names with "_" for
"." (fc1.weight -> fc1_weight)."""

import numpy as np
import torch
import torch.nn.functional as F

import gs

MLP_IN, MLP_HIDDEN, MLP_CLASSES = 20, 32, 10
CNN_SHAPE, CNN_CHANNELS, CNN_CLASSES = (3, 8, 8), 4, 5
DROPOUT_P = 0.25


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(MLP_IN, MLP_HIDDEN)
        self.fc2 = torch.nn.Linear(MLP_HIDDEN, MLP_CLASSES)

    def forward(self, x, mask=None):
        return self.fc2(F.relu(self.fc1(x)))


class Cnn(torch.nn.Module):
    """The dropout mask is an argument, so that gradserve can be fed the same."""

    def __init__(self):
        super().__init__()
        c = CNN_CHANNELS
        # No conv bias: BatchNorm cancels it, so its gradient is rounding
        # noise that Adam would scale up to full steps.
        self.conv = torch.nn.Conv2d(CNN_SHAPE[0], c, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(c)
        side = CNN_SHAPE[1] // 2
        self.fc = torch.nn.Linear(c * side * side, CNN_CLASSES)

    def forward(self, x, mask=None):
        h = torch.flatten(F.max_pool2d(F.relu(self.bn(self.conv(x))), 2), 1)
        if self.training:
            h = h * mask * (1 / (1 - DROPOUT_P))
        return self.fc(h)


def _name(torch_name):
    return torch_name.replace(".", "_")


def parameters_of(model):
    return {_name(n): t.detach().numpy().copy() for n, t in model.named_parameters()}


def buffers_of(model):
    return {_name(n): t.detach().numpy().copy() for n, t in model.named_buffers()
            if "running" in n}


def mlp_graph(model):
    nodes = [gs.node("fc1", "Linear", ["x", "fc1_weight", "fc1_bias"], ["h"]),
             gs.node("act", "ReLU", ["h"], ["a"]),
             gs.node("fc2", "Linear", ["a", "fc2_weight", "fc2_bias"], ["logits"]),
             gs.node("loss", "CrossEntropyLoss", ["logits", "labels"], ["L"])]
    return gs.graph(nodes, inputs=["x", "labels"], parameters=parameters_of(model),
                    outputs=["logits"])


def cnn_graph(model, explicit_mask=True):
    """With explicit_mask the dropout mask is the graph input "mask"; without,
    it is drawn from the request seed and fetchable as "drop_mask"."""
    nodes = [
        gs.node("conv", "Conv2d", ["x", "conv_weight", ""], ["c"], padding=[1, 1]),
        gs.node("bn", "BatchNorm", ["c", "bn_weight", "bn_bias", "bn_running_mean",
                                    "bn_running_var"], ["n"]),
        gs.node("relu", "ReLU", ["n"], ["r"]),
        gs.node("pool", "MaxPool2d", ["r"], ["p"], kernel=[2, 2]),
        gs.node("flat", "Flatten", ["p"], ["f"]),
        gs.node("drop", "Dropout", ["f", "mask" if explicit_mask else ""],
                ["d"] if explicit_mask else ["d", "drop_mask"], p=DROPOUT_P),
        gs.node("fc", "Linear", ["d", "fc_weight", "fc_bias"], ["logits"]),
        gs.node("loss", "CrossEntropyLoss", ["logits", "labels"], ["L"]),
    ]
    inputs = ["x", "labels"] + (["mask"] if explicit_mask else [])
    return gs.graph(nodes, inputs=inputs, parameters=parameters_of(model),
                    buffers=buffers_of(model), outputs=["logits"])


def make(kind, seed=0, explicit_mask=True):
    """(torch model in float32, its graph)."""
    torch.manual_seed(seed)
    if kind == "mlp":
        model = Mlp()
        return model, mlp_graph(model)
    model = Cnn()
    return model, cnn_graph(model, explicit_mask)


def batch(kind, rng, n=8):
    """Feeds for one step: x, labels and, for the CNN, a dropout mask."""
    if kind == "mlp":
        x = rng.normal(size=(n, MLP_IN)).astype(np.float32)
        labels = rng.integers(0, MLP_CLASSES, size=(n,)).astype(np.int64)
        return {"x": x, "labels": labels}
    x = rng.normal(size=(n, *CNN_SHAPE)).astype(np.float32)
    labels = rng.integers(0, CNN_CLASSES, size=(n,)).astype(np.int64)
    side = CNN_SHAPE[1] // 2
    mask = (rng.random(size=(n, CNN_CHANNELS * side * side)) >= DROPOUT_P).astype(np.float32)
    return {"x": x, "labels": labels, "mask": mask}


def torch_step(model, optimizer, feeds):
    """One plain torch.optim step of the model on a batch."""
    optimizer.zero_grad()
    torch_loss(model, feeds)[0].backward()
    optimizer.step()


def torch_loss(model, feeds):
    """(loss, logits) of the torch model on a batch."""
    mask = torch.from_numpy(feeds["mask"]) if "mask" in feeds else None
    logits = model(torch.from_numpy(feeds["x"]), mask)
    return F.cross_entropy(logits, torch.from_numpy(feeds["labels"])), logits
