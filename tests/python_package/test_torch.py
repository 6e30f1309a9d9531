"""gradserve.torch: a module run on the server inside PyTorch's autograd
matches running it locally (outputs, dL/dx, parameter gradients, training)."""

import copy

import numpy as np
import pytest
import torch

import gradserve
import gradserve.torch


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8),
                               torch.nn.ReLU(), torch.nn.Linear(8, 4))


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv1(x))), 2)
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


CASES = {"mlp": (mlp, (10, 6)), "cnn": (SmallCNN, (4, 3, 16, 16))}


def close(actual, expected, what):
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale, msg=what)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_outputs_and_gradients_match_local_autograd(client, case, mode):
    make, shape = CASES[case]
    torch.manual_seed(0)
    local = make()
    served = copy.deepcopy(local)
    local.train(mode == "train")
    served.train(mode == "train")
    x = torch.randn(*shape)
    remote = gradserve.torch.RemoteModule(client, served, x)
    try:
        head = torch.randn(10 if case == "mlp" else 4, 4 if case == "mlp" else 5)
        x_local, x_remote = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_local, y_remote = local(x_local), remote(x_remote)
        close(y_remote, y_local, "outputs")
        (y_local * head).sum().backward()
        (y_remote * head).sum().backward()
        close(x_remote.grad, x_local.grad, "dL/dx")
        for (name, p), q in zip(local.named_parameters(), served.parameters()):
            assert q.grad is not None, name
            close(q.grad, p.grad, f"dL/d{name}")
        for (name, b), c in zip(local.named_buffers(), served.buffers()):
            close(c.to(b.dtype), b, name)  # running statistics updated in train mode
    finally:
        remote.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_training_loop_matches_local_training(client, case):
    make, shape = CASES[case]
    torch.manual_seed(1)
    local = make()
    served = copy.deepcopy(local)
    remote = gradserve.torch.RemoteModule(client, served, torch.randn(*shape))
    classes = 4 if case == "mlp" else 5
    opt_local = torch.optim.SGD(local.parameters(), lr=0.05, momentum=0.9)
    opt_remote = torch.optim.SGD(remote.parameters(), lr=0.05, momentum=0.9)
    try:
        for step in range(4):
            x, t = torch.randn(*shape), torch.randint(0, classes, (shape[0],))
            losses = []
            for model, opt in ((local, opt_local), (remote, opt_remote)):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), t)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            assert losses[1] == pytest.approx(losses[0], rel=1e-4), step
        for (name, p), q in zip(local.named_parameters(), served.parameters()):
            close(q.detach(), p.detach(), name)
    finally:
        remote.close()


def test_a_block_inside_a_local_model_and_no_grad(client):
    torch.manual_seed(2)
    block = mlp()
    remote = gradserve.torch.RemoteModule(client, block, torch.randn(3, 6))
    try:
        pre = torch.nn.Linear(5, 6)
        x = torch.randn(3, 5)
        y = remote(pre(x))
        y.sum().backward()
        assert pre.weight.grad is not None and block[0].weight.grad is not None
        with torch.no_grad():
            close(remote(pre(x)), block(pre(x)), "no_grad forward")
    finally:
        remote.close()


def test_a_gradserve_graph_as_a_module(client):
    rng = np.random.default_rng(0)
    g = gradserve.Graph()
    x = g.input("x")
    w = g.parameter("W", rng.normal(size=(3, 4)))
    g.output(g.tanh(g.linear(x, w)))
    remote = gradserve.torch.RemoteModule(client, g)
    try:
        xs = torch.randn(5, 4, requires_grad=True)
        y = remote(xs)
        y.sum().backward()
        W = torch.tensor(g.parameters["W"], requires_grad=True)
        x2 = xs.detach().clone().requires_grad_()
        torch.tanh(x2 @ W.T).sum().backward()
        close(xs.grad, x2.grad, "dL/dx")
        close(list(remote.parameters())[0].grad, W.grad, "dL/dW")
    finally:
        remote.close()
