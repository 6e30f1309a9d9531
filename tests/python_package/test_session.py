"""Sessions: training as torch.optim does, checkpoints, handles, analysis."""

import numpy as np
import pytest
import torch

import gradserve
from models import batch, mlp_graph, mlp_weights, torch_mlp_loss


def torch_steps(weights, batches, make_optimizer):
    params = {k: torch.tensor(v, requires_grad=True) for k, v in weights.items()}
    optimizer = make_optimizer(list(params.values()))
    losses = []
    for x, labels in batches:
        optimizer.zero_grad()
        xt = torch.tensor(x, dtype=torch.float32)
        h = torch.tanh(xt @ params["W1"].T + params["b1"])
        loss = torch.nn.functional.cross_entropy(h @ params["W2"].T + params["b2"],
                                                 torch.tensor(labels))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, {k: p.detach().numpy() for k, p in params.items()}


@pytest.mark.parametrize("optimizer, make", [
    (gradserve.SGD(lr=0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    (gradserve.Adam(lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    (gradserve.AdamW(lr=0.01, weight_decay=0.1),
     lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
], ids=["sgd", "adam", "adamw"])
def test_training_matches_torch_optim(client, optimizer, make):
    weights = mlp_weights()
    batches = [batch(seed=i) for i in range(5)]
    with client.session(mlp_graph(weights), optimizer=optimizer) as session:
        steps = [session.train_step({"x": x, "labels": labels}) for x, labels in batches]
        trained = session.parameters()
    losses, expected = torch_steps(weights, batches, make)
    assert [s.step for s in steps] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([s.loss for s in steps], losses, rtol=1e-5)
    for name in weights:
        np.testing.assert_allclose(trained[name], expected[name], rtol=1e-5, atol=1e-6)


def test_context_manager_closes_the_session(client):
    with client.session(mlp_graph(mlp_weights())) as session:
        assert session.id in {s.session_id for s in client.sessions()}
    assert session.id not in {s.session_id for s in client.sessions()}
    with pytest.raises(gradserve.NotFound, match=session.id):
        client.compute(session, dict(zip(("x", "labels"), batch())))


def test_save_and_restore_continue_exactly(client, tmp_path):
    weights = mlp_weights()
    batches = [batch(seed=i) for i in range(6)]
    feeds = [{"x": x, "labels": labels} for x, labels in batches]
    optimizer = gradserve.Adam(lr=0.01)
    with client.session(mlp_graph(weights), optimizer=optimizer) as unbroken:
        reference = [unbroken.train_step(f).loss for f in feeds]
        final = unbroken.parameters()
    with client.session(mlp_graph(weights), optimizer=optimizer) as first:
        for f in feeds[:3]:
            first.train_step(f)
        first.save(tmp_path / "ckpt.npz")
    with np.load(tmp_path / "ckpt.npz") as saved:
        assert int(saved["step"]) == 3 and "optimizer_state/W1/exp_avg" in saved.files
    with client.session(mlp_graph(mlp_weights(seed=9)), optimizer=optimizer) as second:
        second.restore(tmp_path / "ckpt.npz")
        assert second.step == 3
        assert [second.train_step(f).loss for f in feeds[3:]] == reference[3:]
        for name, value in second.parameters().items():
            np.testing.assert_array_equal(value, final[name])


def test_load_parameters_replaces_what_it_names(client):
    with client.session(mlp_graph(mlp_weights())) as session:
        session.load_parameters({"b2": np.full(3, 7.0)})
        values = session.parameters()
        np.testing.assert_array_equal(values["b2"], np.full(3, 7.0, np.float32))
        np.testing.assert_array_equal(values["W1"], mlp_weights()["W1"])
        with pytest.raises(gradserve.InvalidArgument, match="b2"):
            session.load_parameters({"b2": np.zeros(4)})


def test_forward_handle_backward_later(client):
    weights = mlp_weights()
    x, labels = batch()
    with client.session(mlp_graph(weights)) as session:
        activation = session.forward({"x": x, "labels": labels}, wrt=["W1", "x"])
        gradients = activation.backward()
        loss, params, xt = torch_mlp_loss(weights, x, labels)
        loss.backward()
        assert activation.loss == pytest.approx(loss.item(), rel=1e-6)
        np.testing.assert_allclose(gradients["W1"], params["W1"].grad.numpy(), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(gradients["x"], xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_check_gradients_and_hessian(client):
    weights = mlp_weights()
    x, labels = batch()
    with client.session(mlp_graph(weights)) as session:
        check = session.check_gradients({"x": x, "labels": labels})
        assert check.passed and {t.name for t in check.tensors} == set(weights)
    g = gradserve.Graph()  # f = x² + y² at the origin: a minimum
    p = g.parameter("p", np.zeros(2))
    g.sum(g.mul(p, p), name="f")
    g.loss = "f"
    eig = client.hessian_eigenvalues(g, k=2)
    assert eig.exact and eig.critical_point == "minimum"
    assert eig.largest == pytest.approx([2, 2]) and eig.smallest == pytest.approx([2, 2])
    hv = client.hessian_vector_product(g, None, {"p": np.array([1.0, -3.0])})
    np.testing.assert_allclose(hv["p"], [2, -6], rtol=1e-6)


def test_train_step_without_optimizer_is_failed_precondition(client):
    with client.session(mlp_graph(mlp_weights())) as session:
        with pytest.raises(gradserve.FailedPrecondition):
            session.train_step(dict(zip(("x", "labels"), batch())))
