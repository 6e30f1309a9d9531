"""Multi-node graphs over gRPC against PyTorch autograd: an MLP classifier, a
residual fan-out, two branches with two losses, seeds added to a loss, and a
few SGD steps."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gs

RTOL = 1e-4
ATOL = 1e-5


def params(rng, **shapes):
    return {name: (rng.normal(size=shape) * 0.3).astype(np.float32)
            for name, shape in shapes.items()}


def torch_leaves(values):
    return {k: torch.tensor(v.astype(np.float64) if v.dtype == np.float32 else v,
                            requires_grad=v.dtype == np.float32)
            for k, v in values.items()}


def assert_grads(result, leaves, names):
    for name in names:
        np.testing.assert_allclose(result.gradients[name], leaves[name].grad.numpy(),
                                   rtol=RTOL, atol=ATOL, err_msg=f"d/d{name}")


def mlp_graph(p):
    return gs.graph(
        [gs.node("fc1", "Linear", ["x", "W1", "b1"], ["h1"]),
         gs.node("act", "ReLU", ["h1"], ["a1"]),
         gs.node("fc2", "Linear", ["a1", "W2", "b2"], ["logits"]),
         gs.node("loss", "CrossEntropyLoss", ["logits", "labels"], ["L"])],
        inputs=["x", "labels"], parameters=p, outputs=["logits"])


def test_mlp_classifier(server):
    rng = np.random.default_rng(1)
    p = params(rng, W1=(16, 10), b1=(16,), W2=(4, 16), b2=(4,))
    x = rng.normal(size=(8, 10)).astype(np.float32)
    labels = rng.integers(0, 4, size=(8,)).astype(np.int64)
    result = server.compute(gs.compute_request(
        mlp_graph(p), feeds={"x": x, "labels": labels}, fetch=["logits"], loss="L",
        wrt=["W1", "b1", "W2", "b2", "x"]))

    t = torch_leaves({**p, "x": x})
    logits = F.linear(F.relu(F.linear(t["x"], t["W1"], t["b1"])), t["W2"], t["b2"])
    loss = F.cross_entropy(logits, torch.tensor(labels))
    loss.backward()
    np.testing.assert_allclose(result.outputs["L"], loss.item(), rtol=RTOL)
    np.testing.assert_allclose(result.outputs["logits"], logits.detach().numpy(),
                               rtol=RTOL, atol=ATOL)
    assert_grads(result, t, ["W1", "b1", "W2", "b2", "x"])


def test_empty_wrt_returns_every_parameter_gradient(server):
    rng = np.random.default_rng(2)
    p = params(rng, W1=(16, 10), b1=(16,), W2=(4, 16), b2=(4,))
    x = rng.normal(size=(3, 10)).astype(np.float32)
    labels = np.array([0, 3, 1], dtype=np.int64)
    result = server.compute(gs.compute_request(mlp_graph(p), feeds={"x": x, "labels": labels},
                                               loss="L"))
    assert set(result.gradients) == {"W1", "b1", "W2", "b2"}
    assert result.gradients["W1"].shape == (16, 10)


def test_residual_fan_out(server):
    # h = tanh(x W1ᵀ); y = h + relu(h W2ᵀ) (h fans out); L = mse(y, t).
    rng = np.random.default_rng(3)
    p = params(rng, W1=(6, 5), W2=(6, 6))
    x = rng.normal(size=(4, 5)).astype(np.float32)
    target = rng.normal(size=(4, 6)).astype(np.float32)
    g = gs.graph(
        [gs.node("fc1", "Linear", ["x", "W1"], ["z"]),
         gs.node("act1", "Tanh", ["z"], ["h"]),
         gs.node("fc2", "Linear", ["h", "W2"], ["u"]),
         gs.node("act2", "ReLU", ["u"], ["r"]),
         gs.node("residual", "Add", ["h", "r"], ["y"]),
         gs.node("loss", "MSELoss", ["y", "t"], ["L"])],
        inputs=["x", "t"], parameters=p)
    result = server.compute(gs.compute_request(g, feeds={"x": x, "t": target}, loss="L",
                                               wrt=["W1", "W2", "x", "h"]))
    t = torch_leaves({**p, "x": x})
    h = torch.tanh(F.linear(t["x"], t["W1"]))
    h.retain_grad()
    y = h + F.relu(F.linear(h, t["W2"]))
    loss = F.mse_loss(y, torch.tensor(target, dtype=torch.float64))
    loss.backward()
    np.testing.assert_allclose(result.outputs["L"], loss.item(), rtol=RTOL)
    assert_grads(result, t, ["W1", "W2", "x"])
    np.testing.assert_allclose(result.gradients["h"], h.grad.numpy(), rtol=RTOL, atol=ATOL)


def two_branch_graph(p):
    # A shared trunk feeds a regression head and a classification head; the
    # two losses are added into one.
    return gs.graph(
        [gs.node("trunk", "Linear", ["x", "W0", "b0"], ["z"]),
         gs.node("act", "Sigmoid", ["z"], ["h"]),
         gs.node("reg", "Linear", ["h", "Wr"], ["yr"]),
         gs.node("cls", "Linear", ["h", "Wc"], ["yc"]),
         gs.node("mse", "MSELoss", ["yr", "tr"], ["L1"]),
         gs.node("ce", "CrossEntropyLoss", ["yc", "tc"], ["L2"]),
         gs.node("total", "Add", ["L1", "L2"], ["L"])],
        inputs=["x", "tr", "tc"], parameters=p)


def two_branch_data(seed):
    rng = np.random.default_rng(seed)
    p = params(rng, W0=(7, 5), b0=(7,), Wr=(2, 7), Wc=(3, 7))
    feeds = {"x": rng.normal(size=(6, 5)).astype(np.float32),
             "tr": rng.normal(size=(6, 2)).astype(np.float32),
             "tc": rng.integers(0, 3, size=(6,)).astype(np.int64)}
    return p, feeds


def torch_two_branch(p, feeds):
    t = torch_leaves({**p, "x": feeds["x"]})
    h = torch.sigmoid(F.linear(t["x"], t["W0"], t["b0"]))
    l1 = F.mse_loss(F.linear(h, t["Wr"]), torch.tensor(feeds["tr"], dtype=torch.float64))
    l2 = F.cross_entropy(F.linear(h, t["Wc"]), torch.tensor(feeds["tc"]))
    return t, l1, l2


def test_two_losses_added(server):
    p, feeds = two_branch_data(4)
    result = server.compute(gs.compute_request(two_branch_graph(p), feeds=feeds, loss="L",
                                               fetch=["L1", "L2"]))
    t, l1, l2 = torch_two_branch(p, feeds)
    (l1 + l2).backward()
    np.testing.assert_allclose(result.outputs["L"], (l1 + l2).item(), rtol=RTOL)
    np.testing.assert_allclose(result.outputs["L1"], l1.item(), rtol=RTOL)
    assert_grads(result, t, ["W0", "b0", "Wr", "Wc"])


def test_loss_and_seed_contributions_add(server):
    # loss = L1, plus a seed of 0.5 on L2: the gradient of L1 + 0.5 L2.
    p, feeds = two_branch_data(5)
    result = server.compute(gs.compute_request(
        two_branch_graph(p), feeds=feeds, loss="L1",
        output_gradients={"L2": np.array(0.5, dtype=np.float32)}))
    t, l1, l2 = torch_two_branch(p, feeds)
    (l1 + 0.5 * l2).backward()
    assert_grads(result, t, ["W0", "b0", "Wr", "Wc"])


def test_layer_level_backward_with_seeds(server):
    # Backward of one Linear layer from a given dL/dY: dW = dYᵀ X, db = Σ dY,
    # dX = dY W.
    rng = np.random.default_rng(6)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(size=(4,)).astype(np.float32)
    dy = rng.normal(size=(5, 4)).astype(np.float32)
    g = gs.graph([gs.node("fc", "Linear", ["x", "W", "b"], ["y"])], inputs=["x"],
                 parameters={"W": w, "b": b})
    result = server.compute(gs.compute_request(g, feeds={"x": x}, output_gradients={"y": dy},
                                               wrt=["W", "b", "x"]))
    np.testing.assert_allclose(result.gradients["W"], dy.T @ x, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(result.gradients["b"], dy.sum(axis=0), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(result.gradients["x"], dy @ w, rtol=RTOL, atol=ATOL)


def test_sgd_steps_match_torch(server):
    # Five SGD steps driven by the client: parameters go back with each request.
    rng = np.random.default_rng(7)
    p = params(rng, W1=(8, 4), b1=(8,), W2=(3, 8), b2=(3,))
    x = rng.normal(size=(10, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=(10,)).astype(np.int64)
    lr = 0.5

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(p["W1"]))
        model[0].bias.copy_(torch.tensor(p["b1"]))
        model[2].weight.copy_(torch.tensor(p["W2"]))
        model[2].bias.copy_(torch.tensor(p["b2"]))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    losses, torch_losses = [], []
    for _ in range(5):
        result = server.compute(gs.compute_request(
            mlp_graph(p), feeds={"x": x, "labels": labels}, loss="L"))
        losses.append(float(result.outputs["L"]))
        p = {k: (v - lr * result.gradients[k]).astype(np.float32) for k, v in p.items()}

        optimizer.zero_grad()
        loss = F.cross_entropy(model(torch.tensor(x)), torch.tensor(labels))
        loss.backward()
        optimizer.step()
        torch_losses.append(loss.item())
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-4)
    assert losses[-1] < losses[0]
    np.testing.assert_allclose(p["W2"], model[2].weight.detach().numpy(), rtol=1e-4,
                               atol=1e-5)


def test_parameter_count_in_describe(server):
    from gradserve.v1 import gradient_service_pb2 as pb
    from gradserve.v1 import tensor_pb2
    rng = np.random.default_rng(8)
    p = params(rng, W1=(256, 784), b1=(256,), W2=(10, 256), b2=(10,))
    request = pb.DescribeRequest(graph=mlp_graph(p))
    request.input_shapes["x"].dims.extend([64, 784])
    request.input_shapes["labels"].dims.extend([64])
    request.input_shapes["labels"].dtype = tensor_pb2.DATA_TYPE_INT64
    response = server.rpc.Describe(request, timeout=30)
    torch_count = sum(t.numel() for t in (torch.nn.Linear(784, 256).parameters())) + \
        sum(t.numel() for t in torch.nn.Linear(256, 10).parameters())
    assert response.total_parameters == torch_count == 203530
    assert [n.name for n in response.nodes] == ["fc1", "act", "fc2", "loss"]
    assert list(response.nodes[2].output_shapes[0].dims) == [64, 10]
    assert response.nodes[0].parameters == 256 * 784 + 256
    assert response.nodes[0].forward_flops >= 2 * 64 * 784 * 256


class TorchCnn(torch.nn.Module):
    """conv-BN-ReLU-maxpool twice, flatten, linear."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.c2 = torch.nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(16)
        self.fc = torch.nn.Linear(16 * 2 * 2, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.c1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.c2(x))), 2)
        return self.fc(torch.flatten(x, 1))


def cnn_graph(model):
    """The same network as a gradserve graph, with the torch model's values."""
    p = {name.replace(".", "_"): t.detach().numpy().astype(np.float32)
         for name, t in model.named_parameters()}
    b = {name.replace(".", "_"): t.detach().numpy().astype(np.float32)
         for name, t in model.named_buffers() if "running" in name}
    pad, pool = {"padding": [1, 1]}, {"kernel": [2, 2]}
    nodes = [
        gs.node("conv1", "Conv2d", ["x", "c1_weight", "c1_bias"], ["h1"], **pad),
        gs.node("bn1", "BatchNorm", ["h1", "bn1_weight", "bn1_bias", "bn1_running_mean",
                                     "bn1_running_var"], ["n1"]),
        gs.node("relu1", "ReLU", ["n1"], ["a1"]),
        gs.node("pool1", "MaxPool2d", ["a1"], ["p1"], **pool),
        gs.node("conv2", "Conv2d", ["p1", "c2_weight", ""], ["h2"], **pad),
        gs.node("bn2", "BatchNorm", ["h2", "bn2_weight", "bn2_bias", "bn2_running_mean",
                                     "bn2_running_var"], ["n2"]),
        gs.node("relu2", "ReLU", ["n2"], ["a2"]),
        gs.node("pool2", "MaxPool2d", ["a2"], ["p2"], **pool),
        gs.node("flat", "Flatten", ["p2"], ["f"]),
        gs.node("fc", "Linear", ["f", "fc_weight", "fc_bias"], ["logits"]),
        gs.node("loss", "CrossEntropyLoss", ["logits", "labels"], ["L"]),
    ]
    return gs.graph(nodes, inputs=["x", "labels"], parameters=p, buffers=b,
                    outputs=["logits"])


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_small_cnn_matches_torch(server, train):
    torch.manual_seed(0)
    model = TorchCnn().double()
    model.train(train)
    rng = np.random.default_rng(9)
    x = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 5, size=(4,)).astype(np.int64)
    g = cnn_graph(model)
    mode = gs.pb.MODE_TRAIN if train else gs.pb.MODE_EVAL
    result = server.compute(gs.compute_request(g, feeds={"x": x, "labels": labels},
                                               fetch=["logits"], loss="L", mode=mode))
    logits = model(torch.tensor(x, dtype=torch.float64))
    loss = F.cross_entropy(logits, torch.tensor(labels))
    loss.backward()
    np.testing.assert_allclose(result.outputs["L"], loss.item(), rtol=RTOL)
    np.testing.assert_allclose(result.outputs["logits"], logits.detach().numpy(), rtol=RTOL,
                               atol=ATOL)
    grads = {name.replace(".", "_"): t.grad.numpy() for name, t in model.named_parameters()}
    assert set(result.gradients) == set(grads)
    for name, expected in grads.items():
        np.testing.assert_allclose(result.gradients[name], expected, rtol=RTOL, atol=ATOL,
                                   err_msg=f"d/d{name}")
    if train:
        for name, t in model.named_buffers():
            if "running" in name:
                np.testing.assert_allclose(result.buffers[name.replace(".", "_")],
                                           t.numpy(), rtol=1e-5, atol=1e-6)
    else:
        assert not result.buffers


def test_batch_norm_running_statistics_over_several_steps(server):
    # Three TRAIN passes, the returned running statistics fed back each time,
    # against torch.nn.BatchNorm1d's own.
    torch.manual_seed(1)
    bn = torch.nn.BatchNorm1d(4, momentum=0.3).double()
    rng = np.random.default_rng(2)
    state = {"rm": np.zeros(4, np.float32), "rv": np.ones(4, np.float32)}
    for step in range(3):
        x = (rng.normal(size=(6, 4)) * (step + 1) + step).astype(np.float32)
        g = gs.graph([gs.node("bn", "BatchNorm", ["x", "", "", "rm", "rv"], ["y"],
                              momentum=0.3)],
                     inputs=["x"], buffers=state, outputs=["y"])
        result = server.compute(gs.compute_request(g, feeds={"x": x}))
        state = {"rm": result.buffers["rm"], "rv": result.buffers["rv"]}
        y = bn(torch.tensor(x, dtype=torch.float64))
        np.testing.assert_allclose(result.outputs["y"], y.detach().numpy(), rtol=RTOL,
                                   atol=ATOL)
    np.testing.assert_allclose(state["rm"], bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["rv"], bn.running_var.numpy(), rtol=1e-5, atol=1e-6)


def test_unbatched_conv_and_pool_between_layout_aware_ops(server):
    # BatchNorm's [N, C, L] output [2, 8, 8] is an unbatched [C, H, W] image
    # for Conv2d (16 filters: a blocked output inside the adapter), pooled
    # unbatched, then a Conv1d on [C, L] and a loss over everything.
    rng = np.random.default_rng(5)
    p = params(rng, bn_w=(8,), bn_b=(8,), K=(16, 2, 3, 3), c=(16,), K1=(4, 16, 2))
    buffers = {"rm": np.zeros(8, np.float32), "rv": np.ones(8, np.float32)}
    x = rng.normal(size=(2, 8, 8)).astype(np.float32)
    target = rng.normal(size=(4, 2)).astype(np.float32)
    g = gs.graph(
        [gs.node("bn", "BatchNorm", ["x", "bn_w", "bn_b", "rm", "rv"], ["h"]),
         gs.node("conv", "Conv2d", ["h", "K", "c"], ["z"], padding=1),
         gs.node("pool", "MaxPool2d", ["z"], ["q"], kernel=2),
         gs.node("flat", "Reshape", ["q"], ["r"], shape=[16, 16]),
         gs.node("conv1", "Conv1d", ["r", "K1"], ["s"], stride=8),
         gs.node("loss", "MSELoss", ["s", "t"], ["L"])],
        inputs=["x", "t"], parameters=p, buffers=buffers, outputs=["s"])
    result = server.compute(gs.compute_request(
        g, feeds={"x": x, "t": target}, fetch=["s"], loss="L",
        wrt=["x", "bn_w", "K", "c", "K1"], mode=gs.pb.MODE_EVAL))

    t = torch_leaves({**p, "x": x})
    h = F.batch_norm(t["x"], torch.zeros(8, dtype=torch.float64),
                     torch.ones(8, dtype=torch.float64), t["bn_w"], t["bn_b"])
    z = F.max_pool2d(F.conv2d(h, t["K"], t["c"], padding=1), 2)
    s = F.conv1d(z.reshape(16, 16), t["K1"], stride=8)
    F.mse_loss(s, torch.tensor(target.astype(np.float64))).backward()
    np.testing.assert_allclose(result.outputs["s"], s.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert_grads(result, t, ["x", "bn_w", "K", "c", "K1"])
