"""Small models for the package's tests, built with gradserve.Graph, and the
same models in PyTorch."""

import numpy as np
import torch

import gradserve


def mlp_weights(seed=0, sizes=(4, 16, 3)):
    rng = np.random.default_rng(seed)
    return {"W1": rng.normal(0, 0.5, (sizes[1], sizes[0])).astype(np.float32),
            "b1": rng.normal(0, 0.1, sizes[1]).astype(np.float32),
            "W2": rng.normal(0, 0.5, (sizes[2], sizes[1])).astype(np.float32),
            "b2": rng.normal(0, 0.1, sizes[2]).astype(np.float32)}


def mlp_graph(weights, batch=8):
    """x [N, 4] -> Linear -> Tanh -> Linear -> cross-entropy with int labels."""
    g = gradserve.Graph()
    x = g.input("x", [batch, weights["W1"].shape[1]])
    labels = g.input("labels", [batch], dtype="int64")
    h = g.tanh(g.linear(x, g.parameter("W1", weights["W1"]), g.parameter("b1", weights["b1"]),
                        name="fc1"))
    logits = g.linear(h, g.parameter("W2", weights["W2"]), g.parameter("b2", weights["b2"]),
                      name="fc2")
    g.cross_entropy_loss(logits, labels, name="L")
    g.output(logits)
    return g


def torch_mlp_loss(weights, x, labels, dtype=torch.float32):
    """(loss, {name: tensor requiring grad}, x tensor) of the same MLP."""
    params = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in weights.items()}
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    h = torch.tanh(xt @ params["W1"].T + params["b1"])
    logits = h @ params["W2"].T + params["b2"]
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels))
    return loss, params, xt


def batch(seed=1, n=8, features=4, classes=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)), rng.integers(0, classes, n)
