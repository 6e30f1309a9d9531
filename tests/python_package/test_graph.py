"""The graph builder against the server's op list, and graph files."""

import inspect
import os

import numpy as np
import pytest

import gradserve
from gradserve.graph import OP_METHODS

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def test_every_served_op_has_a_builder_method_and_no_other(client):
    served = client.info().ops
    assert set(OP_METHODS) == set(served)
    for op, method in OP_METHODS.items():
        assert callable(getattr(gradserve.Graph, method)), method


def _call_with_placeholders(g, method):
    """Calls a builder method with value names for its value arguments."""
    signature = inspect.signature(getattr(gradserve.Graph, method))
    args = []
    for parameter in list(signature.parameters.values())[1:]:
        if parameter.kind == parameter.VAR_POSITIONAL:
            args += ["a", "b"]
        elif parameter.default is inspect.Parameter.empty and parameter.kind in (
                parameter.POSITIONAL_OR_KEYWORD, parameter.POSITIONAL_ONLY):
            args.append({"kernel": [2, 2], "output_size": [1, 1], "shape": [-1],
                         "factor": 2.0, "split_size_or_sections": [1, 1], "dims": [0],
                         "pads": [1, 1], "dim": 0, "dim0": 0, "dim1": 1,
                         "num_groups": 1}.get(parameter.name, parameter.name))
    return getattr(g, method)(*args)


def test_builder_nodes_use_the_served_inputs_and_attributes(client):
    served = client.info().ops
    for op, method in OP_METHODS.items():
        g = gradserve.Graph()
        _call_with_placeholders(g, method)
        node = g.proto.nodes[-1]
        assert node.op == op
        spec = served[op]
        if not any(i.variadic for i in spec.inputs):
            assert len(node.inputs) <= len(spec.inputs), (op, list(node.inputs))
            for given, expected in zip(node.inputs, spec.inputs):
                assert given or expected.optional, (op, expected.name)
        assert set(node.attributes) <= {a.name for a in spec.attributes}, op


def test_a_built_cnn_describes_as_torch_counts(client):
    rng = np.random.default_rng(0)
    g = gradserve.Graph()
    x = g.input("x", [2, 3, 8, 8])
    w = g.parameter("conv.weight", rng.normal(size=(4, 3, 3, 3)))
    h = g.max_pool2d(g.relu(g.conv2d(x, w, g.parameter("conv.bias", np.zeros(4)),
                                     padding=1)), 2)
    y = g.linear(g.flatten(h), g.parameter("fc.weight", rng.normal(size=(5, 64))))
    g.output(y)
    described = client.describe(g)
    assert described.total_parameters == 4 * 27 + 4 + 5 * 64
    assert [n["op"] for n in described.nodes] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten",
                                                  "Linear"]
    assert described.nodes[-1]["output_shapes"] == [[2, 5]]
    assert "total: 432 trainable parameters" in str(described)


def test_names_are_checked():
    g = gradserve.Graph()
    g.input("x")
    with pytest.raises(ValueError, match="'x' is already defined"):
        g.parameter("x", np.zeros(2))


@pytest.mark.parametrize("name", ["mlp.json", "mlp.pbtxt"])
def test_load_graph_files(client, name, tmp_path):
    g = gradserve.Graph.load(os.path.join(EXAMPLES, name))
    x = np.load(os.path.join(EXAMPLES, "x.npy"))
    labels = np.load(os.path.join(EXAMPLES, "labels.npy"))
    result = client.compute(g, {"x": x, "labels": labels}, loss="L")
    assert result.loss == pytest.approx(1.03741, abs=1e-5)  # the README's gradctl run
    g.save(tmp_path / "copy.pbtxt")
    again = client.compute(tmp_path / "copy.pbtxt", {"x": x, "labels": labels}, loss="L")
    assert again.loss == result.loss
    np.testing.assert_array_equal(again.gradients["W1"], result.gradients["W1"])


def test_load_onnx(client, tmp_path):
    import torch

    from models import batch
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    x, _ = batch()
    model = gradserve.OnnxModel.from_torch(module, torch.tensor(x, dtype=torch.float32),
                                           ["x"], ["y"])
    (tmp_path / "m.onnx").write_bytes(model.data)
    loaded = gradserve.Graph.load(tmp_path / "m.onnx")
    result = client.compute(loaded, {"x": x}, fetch=["y"], mode="eval")
    np.testing.assert_allclose(result.outputs["y"],
                               module(torch.tensor(x, dtype=torch.float32)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    assert client.describe(loaded, {"x": [8, 4]}).total_parameters == 4 * 6 + 6 + 6 * 2 + 2


def test_embedding_max_norm_attributes():
    g = gradserve.Graph()
    g.embedding("i", "w")
    assert set(g.proto.nodes[-1].attributes) == set()
    g.embedding("i", "w", max_norm=1, norm_type=float("inf"))
    attrs = g.proto.nodes[-1].attributes
    assert attrs["max_norm"].f == 1.0 and attrs["norm_type"].s == "inf"
    g.embedding("i", "w", max_norm=0.5, norm_type=1)
    attrs = g.proto.nodes[-1].attributes
    assert attrs["max_norm"].f == 0.5 and attrs["norm_type"].f == 1.0
