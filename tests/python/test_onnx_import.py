"""ONNX import: PyTorch models exported with torch.onnx.export, sent as
onnx_model bytes, give PyTorch autograd's outputs and gradients; models the
importer cannot take get errors naming the culprit."""

import grpc
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import gs
import onnx_models as om
from gs import pb, spb

TRAIN = torch.onnx.TrainingMode.TRAINING
PRESERVE = torch.onnx.TrainingMode.PRESERVE


def torch_reference(module, x, seed_grad):
    """Outputs and gradients (every parameter and dL/dx) of y·seed_grad."""
    module.zero_grad(set_to_none=True)
    x = torch.tensor(x, requires_grad=True)
    y = module(x)
    y.backward(torch.tensor(seed_grad))
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    grads["x"] = x.grad.numpy()
    return y.detach().numpy(), grads


def onnx_compute(server, model, x, seed_grad, wrt, mode, fetch=("y",), seed=0):
    request = pb.ComputeRequest(onnx_model=model, fetch=list(fetch), wrt=list(wrt),
                                mode=mode, seed=seed)
    gs.fill(request.feeds, {"x": x})
    gs.fill(request.output_gradients, {"y": seed_grad})
    return gs.Result(server.rpc.Compute(request, timeout=120))


def assert_matches(result, y, grads, rtol=1e-4, atol=1e-5):
    np.testing.assert_allclose(result.outputs["y"], y, rtol=rtol, atol=atol)
    assert set(result.gradients) == set(grads)
    for name, g in grads.items():
        np.testing.assert_allclose(result.gradients[name], g, rtol=rtol, atol=atol,
                                   err_msg=name)


def exported_mlp(seed, batch):
    """(module, x, ONNX bytes, dL/dy) of a random MLP."""
    torch.manual_seed(seed)
    module = om.MLP()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 6)).astype(np.float32)
    model = om.export(module, torch.tensor(x), ["x"], ["y"], PRESERVE)
    return module, x, model, rng.standard_normal((batch, 4)).astype(np.float32)


@pytest.mark.parametrize("mode", [pb.MODE_EVAL, pb.MODE_TRAIN], ids=["eval", "train"])
def test_mlp_outputs_and_gradients_match_torch(server, mode):
    module, x, model, seed_grad = exported_mlp(0, 5)
    y, grads = torch_reference(module, x, seed_grad)
    wrt = [name for name, _ in module.named_parameters()] + ["x"]
    assert_matches(onnx_compute(server, model, x, seed_grad, wrt, mode), y, grads)


def randomize_batch_norms(module):
    """Random BatchNorm weights and statistics: the exporter would merge
    initializers of equal values (the default 1s and 0s) into one."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_resnet18_gradients_match_torch(server, train):
    """torchvision's resnet18 (random weights) at batch 2: every parameter's
    gradient and dL/dx; in TRAIN, batch statistics and the running ones
    updated as PyTorch updates them."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(14)
    module = torchvision.models.resnet18().train(train)
    randomize_batch_norms(module)
    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    model = om.export(module, torch.tensor(x), ["x"], ["y"], PRESERVE)
    seed_grad = rng.standard_normal((2, 1000)).astype(np.float32)
    describe = pb.DescribeRequest(onnx_model=model)
    describe.input_shapes["x"].dims.extend(x.shape)
    assert (server.rpc.Describe(describe, timeout=120).total_parameters
            == sum(p.numel() for p in module.parameters()))
    wrt = [name for name, _ in module.named_parameters()] + ["x"]
    result = onnx_compute(server, model, x, seed_grad, wrt,
                          pb.MODE_TRAIN if train else pb.MODE_EVAL)
    y, grads = torch_reference(module, x, seed_grad)
    np.testing.assert_allclose(result.outputs["y"], y, rtol=1e-4, atol=1e-4)
    assert set(result.gradients) == set(grads)
    for name, g in grads.items():  # float32 sums over up to 10^5 terms
        np.testing.assert_allclose(result.gradients[name], g, rtol=1e-3,
                                   atol=1e-4 * np.abs(g).max(), err_msg=name)
    stats = {n: b.numpy() for n, b in module.named_buffers() if "running" in n}
    if not train:
        assert result.buffers == {}
        return
    assert set(result.buffers) == set(stats)
    for name, value in stats.items():
        np.testing.assert_allclose(result.buffers[name], value, rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_cnn_eval_matches_torch(server):
    """BatchNorm on running statistics, Dropout the identity."""
    torch.manual_seed(2)
    module = om.CNN()
    with torch.no_grad():  # running statistics that are not the defaults
        module.bn.running_mean.uniform_(-0.5, 0.5)
        module.bn.running_var.uniform_(0.5, 2.0)
    module.eval()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    model = om.export(module, torch.tensor(x), ["x"], ["y"], PRESERVE)
    seed_grad = rng.standard_normal((2, 5)).astype(np.float32)
    y, grads = torch_reference(module, x, seed_grad)
    wrt = [name for name, _ in module.named_parameters()] + ["x"]
    result = onnx_compute(server, model, x, seed_grad, wrt, pb.MODE_EVAL)
    assert_matches(result, y, grads)
    assert result.buffers == {}


def test_flatten_is_imported_as_flatten(server):
    """ONNX Flatten(axis=1) of a 4-d value (torch.nn.Flatten's export) is
    gradserve's Flatten; it was emitted as an op named "Flatten | Reshape",
    so the model was UNIMPLEMENTED."""
    torch.manual_seed(4)
    module = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(),
                                 torch.nn.Linear(12, 4))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    model = om.export(module, torch.tensor(x), ["x"], ["y"], PRESERVE)
    assert "Flatten" in [n.op_type for n in onnx.load_model_from_string(model).graph.node]
    seed_grad = rng.standard_normal((2, 4)).astype(np.float32)
    y, grads = torch_reference(module, x, seed_grad)
    wrt = [name for name, _ in module.named_parameters()] + ["x"]
    assert_matches(onnx_compute(server, model, x, seed_grad, wrt, pb.MODE_EVAL), y, grads)


def dropout_mask_name(model):
    (node,) = [n for n in onnx.load_model_from_string(model).graph.node
               if n.op_type == "Dropout"]
    return node.output[1]


def test_cnn_train_matches_torch(server):
    """Batch statistics, running statistics updated as PyTorch does, and
    Dropout's mask (gradserve's draw, fetched, replayed in PyTorch)."""
    torch.manual_seed(4)
    module = om.CNN(p=0.4)
    module.train()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    model = om.export(module, torch.tensor(x), ["x"], ["y"], TRAIN)
    mask_name = dropout_mask_name(model)
    seed_grad = rng.standard_normal((4, 5)).astype(np.float32)
    wrt = [name for name, _ in module.named_parameters()] + ["x"]
    result = onnx_compute(server, model, x, seed_grad, wrt, pb.MODE_TRAIN,
                          fetch=("y", mask_name), seed=7)
    mask = result.outputs[mask_name]
    assert 0 < mask.mean() < 1  # some dropped, some kept
    module.mask = torch.tensor(mask)
    y, grads = torch_reference(module, x, seed_grad)
    assert_matches(result, y, grads)
    for name in ("bn.running_mean", "bn.running_var"):
        np.testing.assert_allclose(result.buffers[name],
                                   module.state_dict()[name].numpy(),
                                   rtol=1e-5, atol=1e-6, err_msg=name)


def exported_ops(model):
    return {n.op_type for n in onnx.load_model_from_string(model).graph.node}


@pytest.mark.parametrize("make, shape, opset, onnx_ops, folded", [
    (om.Pools, (2, 2, 9, 8), 14, {"MaxPool", "AveragePool"}, set()),
    (om.Pools1d, (2, 2, 11), 14, {"MaxPool", "AveragePool"}, set()),
    (om.GeluLayerNorm, (3, 6), 17, {"Erf", "LayerNormalization", "Sqrt", "Abs", "Neg"},
     {"Erf"}),
], ids=["pools", "pools-1d", "gelu-layernorm"])
def test_exported_ops_match_torch(server, make, shape, opset, onnx_ops, folded):
    """Each module's ONNX ops (as exported) give torch's outputs and
    gradients; the Erf form of GELU becomes one GELU node."""
    torch.manual_seed(16)
    module = make()
    rng = np.random.default_rng(17)
    x = rng.standard_normal(shape).astype(np.float32)
    model = om.export(module, torch.tensor(x), ["x"], ["y"], PRESERVE, opset=opset)
    assert onnx_ops <= exported_ops(model)
    seed_grad = rng.standard_normal(module(torch.tensor(x)).shape).astype(np.float32)
    y, grads = torch_reference(module, x, seed_grad)
    wrt = [name for name, _ in module.named_parameters()] + ["x"]
    assert_matches(onnx_compute(server, model, x, seed_grad, wrt, pb.MODE_EVAL), y, grads)
    describe = pb.DescribeRequest(onnx_model=model)
    describe.input_shapes["x"].dims.extend(shape)
    ops = [n.op for n in server.rpc.Describe(describe, timeout=30).nodes]
    if folded:
        assert ops.count("GELU") == 1 and "Div" not in ops, ops


def test_weighted_losses_match_torch(server):
    """SoftmaxCrossEntropyLoss with class weights and ignore_index,
    NegativeLogLikelihoodLoss with weights and sum."""
    torch.manual_seed(18)
    module = om.WeightedLoss()
    rng = np.random.default_rng(19)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    target = np.array([0, 1, 3, 2, 1, 3], dtype=np.int64)
    model = om.export(module, (torch.tensor(x), torch.tensor(target)), ["x", "target"],
                      ["loss"], PRESERVE)
    assert {"SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"} <= exported_ops(model)
    xt = torch.tensor(x, requires_grad=True)
    loss = module(xt, torch.tensor(target))
    loss.backward()
    wrt = [name for name, _ in module.named_parameters()] + ["x"]
    request = pb.ComputeRequest(onnx_model=model, fetch=["loss"], loss="loss", wrt=wrt)
    gs.fill(request.feeds, {"x": x, "target": target})
    result = gs.Result(server.rpc.Compute(request, timeout=60))
    np.testing.assert_allclose(result.outputs["loss"], loss.detach().numpy(), rtol=1e-5)
    expected = {name: p.grad.numpy() for name, p in module.named_parameters()}
    expected["x"] = xt.grad.numpy()
    for name, g in expected.items():
        np.testing.assert_allclose(result.gradients[name], g, rtol=1e-4, atol=1e-6,
                                   err_msg=name)


def test_dynamic_batch_reshape_is_resolved_from_the_feeds(server):
    """A batch axis exported as dynamic: x.view(x.size(0), -1) becomes
    Shape, Gather, Unsqueeze, Concat, Reshape; each request's feed shape
    fixes it (batch 2, then 3, on the same model bytes)."""
    torch.manual_seed(22)
    module = om.CNN().eval()
    model = om.export(module, torch.zeros(2, 3, 8, 8), ["x"], ["y"], PRESERVE,
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    assert {"Shape", "Gather", "Concat", "Reshape"} <= exported_ops(model)
    declared = onnx.load_model_from_string(model).graph.input[0]
    assert declared.type.tensor_type.shape.dim[0].dim_param == "batch"
    rng = np.random.default_rng(23)
    wrt = [name for name, _ in module.named_parameters()] + ["x"]
    for batch in (2, 3):
        x = rng.standard_normal((batch, 3, 8, 8)).astype(np.float32)
        seed_grad = rng.standard_normal((batch, 5)).astype(np.float32)
        y, grads = torch_reference(module, x, seed_grad)
        assert_matches(onnx_compute(server, model, x, seed_grad, wrt, pb.MODE_EVAL), y, grads)
    describe = pb.DescribeRequest(onnx_model=model)
    describe.input_shapes["x"].dims.extend([4, 3, 8, 8])
    nodes = server.rpc.Describe(describe, timeout=30).nodes
    assert list(nodes[-1].output_shapes[0].dims) == [4, 5]


def test_describe_counts_the_parameters_torch_does(server):
    module = om.CNN()
    model = om.export(module.eval(), torch.zeros(2, 3, 8, 8), ["x"], ["y"], PRESERVE)
    request = pb.DescribeRequest(onnx_model=model)
    request.input_shapes["x"].dims.extend([2, 3, 8, 8])
    response = server.rpc.Describe(request, timeout=30)
    assert response.total_parameters == sum(p.numel() for p in module.parameters())
    assert list(response.nodes[-1].output_shapes[0].dims) == [2, 5]


def test_forward_then_backward_equals_compute(server):
    module, x, model, seed_grad = exported_mlp(6, 3)
    request = pb.ForwardRequest(onnx_model=model, fetch=["y"], mode=pb.MODE_EVAL)
    gs.fill(request.feeds, {"x": x})
    forward = server.rpc.Forward(request, timeout=60)
    grads = server.backward(forward.activation_id, output_gradients={"y": seed_grad})
    y, expected = torch_reference(module, x, seed_grad)
    np.testing.assert_allclose(gs.to_numpy(forward.outputs["y"]), y, rtol=1e-4, atol=1e-5)
    del expected["x"]  # Forward's wrt: empty = all parameters
    assert set(grads) == set(expected)
    for name, g in expected.items():
        np.testing.assert_allclose(grads[name], g, rtol=1e-4, atol=1e-5, err_msg=name)


def test_session_trains_an_exported_loss_like_torch_sgd(server):
    """SoftmaxCrossEntropyLoss inside the model; TrainStep = torch.optim.SGD."""
    torch.manual_seed(8)
    module = om.ClassifierLoss()
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    target = rng.integers(0, 3, size=6).astype(np.int64)
    model = om.export(module, (torch.tensor(x), torch.tensor(target)), ["x", "target"],
                      ["loss"], PRESERVE)
    assert "SoftmaxCrossEntropyLoss" in {n.op_type for n in
                                         onnx.load_model_from_string(model).graph.node}
    request = spb.CreateSessionRequest(onnx_model=model, optimizer=gs.sgd(0.1, momentum=0.9))
    session = server.rpc.CreateSession(request, timeout=60).session
    assert session.parameter_count == sum(p.numel() for p in module.parameters())
    opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        step = server.train_step(session.session_id, {"x": x, "target": target}, "loss")
        opt.zero_grad()
        loss = module(torch.tensor(x), torch.tensor(target))
        loss.backward()
        opt.step()
        np.testing.assert_allclose(step.loss, loss.detach().numpy(), rtol=1e-5)
    values = server.get_parameters(session.session_id)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(values.parameters[name], p.detach().numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=name)
    server.close_session(session.session_id)


def test_analysis_rpcs_take_onnx_models(server):
    torch.manual_seed(10)
    module = om.ClassifierLoss()
    x = np.random.default_rng(11).standard_normal((4, 5)).astype(np.float32)
    target = np.array([0, 2, 1, 1], dtype=np.int64)
    model = om.export(module, (torch.tensor(x), torch.tensor(target)), ["x", "target"],
                      ["loss"], PRESERVE)
    request = pb.CheckGradientsRequest(onnx_model=model, loss="loss")
    gs.fill(request.feeds, {"x": x, "target": target})
    response = server.rpc.CheckGradients(request, timeout=120)
    assert response.passed
    assert {t.name for t in response.tensors} == {n for n, _ in module.named_parameters()}


# --- Hand-built models: what torch.onnx.export does not write -------------

def neg_inf_pad(x, pads):
    """x [N, C, H, W] padded by ONNX's pads [top, left, bottom, right]."""
    return torch.nn.functional.pad(x, (pads[1], pads[3], pads[0], pads[2]),
                                   value=-float("inf"))


def zero_pad(x, pads):
    return torch.nn.functional.pad(x, (pads[1], pads[3], pads[0], pads[2]))


F = torch.nn.functional
WINDOWS = {  # ONNX node attributes, x's shape, torch's function of x (and w)
    "conv-asymmetric-pads": (
        "Conv", dict(pads=[0, 1, 2, 1], strides=[2, 1]), (2, 2, 6, 5),
        lambda x, w: F.conv2d(zero_pad(x, [0, 1, 2, 1]), w, stride=(2, 1))),
    "conv-same-lower": (
        "Conv", dict(auto_pad="SAME_LOWER"), (1, 2, 5, 4),
        lambda x, w: F.conv2d(zero_pad(x, [1, 1, 1, 1]), w)),
    "conv-same-upper-strided": (
        "Conv", dict(auto_pad="SAME_UPPER", strides=[2, 2]), (1, 2, 6, 6),
        lambda x, w: F.conv2d(zero_pad(x, [0, 0, 1, 1]), w, stride=2)),
    "maxpool-same-upper": (
        "MaxPool", dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER"), (2, 2, 5, 4),
        lambda x: F.max_pool2d(neg_inf_pad(x, [0, 0, 1, 1]), 2, stride=1)),
    "maxpool-same-lower": (
        "MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER"),
        (1, 2, 6, 6), lambda x: F.max_pool2d(neg_inf_pad(x, [1, 1, 0, 0]), 3, stride=2)),
    "averagepool-asymmetric-counted": (
        "AveragePool", dict(kernel_shape=[3, 3], pads=[1, 0, 0, 1], count_include_pad=1),
        (2, 2, 5, 5), lambda x: F.avg_pool2d(zero_pad(x, [1, 0, 0, 1]), 3, stride=1)),
    "averagepool-same-upper-not-counted": (
        "AveragePool", dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER"), (1, 2, 3, 3),
        lambda x: F.avg_pool2d(zero_pad(x, [0, 0, 1, 1]), 2, stride=1)
        / F.avg_pool2d(zero_pad(torch.ones_like(x), [0, 0, 1, 1]), 2, stride=1)),
    "globalmaxpool": (
        "GlobalMaxPool", {}, (2, 3, 4, 5), lambda x: F.adaptive_max_pool2d(x, 1)),
}


@pytest.mark.parametrize("case", sorted(WINDOWS))
def test_onnx_window_options_match_torch(server, case):
    """Asymmetric pads and auto_pad SAME_UPPER / SAME_LOWER in Conv,
    MaxPool and AveragePool (also count_include_pad = 0 with padding),
    GlobalMaxPool: outputs and gradients as torch computes them on x
    padded explicitly."""
    op, attrs, shape, reference = WINDOWS[case]
    rng = np.random.default_rng(20)
    x = rng.standard_normal(shape).astype(np.float32)
    inits, inputs, args = [], ["x"], [torch.tensor(x, requires_grad=True)]
    if op == "Conv":
        w = rng.standard_normal((3, shape[1], 3, 3)).astype(np.float32)
        inits, inputs = [om.float_initializer("w", w)], ["x", "w"]
        args.append(torch.tensor(w, requires_grad=True))
    y = reference(*args)
    seed_grad = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    y.backward(torch.tensor(seed_grad))
    node = helper.make_node(op, inputs, ["y"], name="window", **attrs)
    model = om.model_bytes([node], [("x", list(shape))], [("y", list(y.shape))], inits)
    result = onnx_compute(server, model, x, seed_grad, inputs, pb.MODE_EVAL)
    np.testing.assert_allclose(result.outputs["y"], y.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    for name, a in zip(inputs, args):
        np.testing.assert_allclose(result.gradients[name], a.grad.numpy(), rtol=1e-5,
                                   atol=1e-5, err_msg=name)


def float64_compute(server, model, feeds, seed_grad, wrt):
    """Compute of an ONNX model with float64 feeds and dL/dy = seed_grad."""
    request = pb.ComputeRequest(onnx_model=model.SerializeToString(), fetch=["y"],
                                wrt=list(wrt))
    for name, value in feeds.items():
        request.feeds[name].CopyFrom(gs.tensor(value, float64=True))
    request.output_gradients["y"].CopyFrom(gs.tensor(seed_grad, float64=True))
    return gs.Result(server.rpc.Compute(request, timeout=30))


def test_float64_model_computes_in_float64(server):
    """DOUBLE inputs and initializers: the program runs in float64 (outputs
    and gradients float64, as torch's in double)."""
    rng = np.random.default_rng(24)
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal((5, 4))
    b = rng.standard_normal(5)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc", transB=1),
             helper.make_node("Tanh", ["h"], ["y"], name="tanh")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [3, 5])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    seed_grad = rng.standard_normal((3, 5))
    result = float64_compute(server, model, {"x": x}, seed_grad, ["x", "w", "b"])
    args = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = torch.tanh(F.linear(*args))
    y.backward(torch.tensor(seed_grad))
    assert result.outputs["y"].dtype == np.float64
    np.testing.assert_allclose(result.outputs["y"], y.detach().numpy(), rtol=1e-12)
    for name, a in zip(["x", "w", "b"], args):
        assert result.gradients[name].dtype == np.float64
        np.testing.assert_allclose(result.gradients[name], a.grad.numpy(), rtol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_trans_a_gradients_match_torch(server, trans_b):
    """Gemm with transA (a Permute of A before the product), alpha, beta and
    a broadcast C: outputs and the gradients of A, B and C as torch's, in
    float64."""
    rng = np.random.default_rng(25)
    a = rng.standard_normal((4, 3))  # Aᵀ is [3, 4]
    b = rng.standard_normal((5, 4) if trans_b else (4, 5))
    c = rng.standard_normal(5)
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="gemm", transA=1,
                            transB=trans_b, alpha=0.5, beta=2.0)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("a", TensorProto.DOUBLE, [4, 3])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [3, 5])],
        initializer=[numpy_helper.from_array(b, "b"), numpy_helper.from_array(c, "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    seed_grad = rng.standard_normal((3, 5))
    result = float64_compute(server, model, {"a": a}, seed_grad, ["a", "b", "c"])
    ta, tb, tc = (torch.tensor(v, requires_grad=True) for v in (a, b, c))
    y = 0.5 * ta.T @ (tb.T if trans_b else tb) + 2.0 * tc
    y.backward(torch.tensor(seed_grad))
    np.testing.assert_allclose(result.outputs["y"], y.detach().numpy(), rtol=1e-12)
    for name, t in (("a", ta), ("b", tb), ("c", tc)):
        np.testing.assert_allclose(result.gradients[name], t.grad.numpy(), rtol=1e-12,
                                   atol=1e-14, err_msg=name)


def test_maxpool_indices_are_onnx_flat_offsets(server):
    """MaxPool's Indices: offsets into all of x [N, C, H, W], as ONNX counts
    them (torch's return_indices counts within each H·W plane)."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], name="mp", kernel_shape=[3, 3],
                            strides=[2, 2], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 3, 3]),
         helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3, 3, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    request = pb.ComputeRequest(onnx_model=model.SerializeToString(), fetch=["y", "i"])
    gs.fill(request.feeds, {"x": x})
    result = gs.Result(server.rpc.Compute(request, timeout=30))
    y, plane_indices = F.max_pool2d(torch.tensor(x), 3, stride=2, padding=1,
                                    return_indices=True)
    planes = (np.arange(6) * 25).reshape(2, 3, 1, 1)
    np.testing.assert_array_equal(result.outputs["y"], y.numpy())
    np.testing.assert_array_equal(result.outputs["i"], plane_indices.numpy() + planes)


# --- Models the importer refuses -----------------------------------------

def conv_model(**attrs):
    w = om.float_initializer("w", np.ones((2, 1, 3, 3)))
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv7", **attrs)
    return om.model_bytes([node], [("x", [1, 1, 5, 5])], [("y", [1, 2, 4, 4])], [w])


def external_data_model():
    w = om.float_initializer("w", np.ones((4,)))
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="weights.bin")
    node = helper.make_node("Add", ["x", "w"], ["y"], name="add")
    return om.model_bytes([node], [("x", [4])], [("y", [4])], [w])


INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED

BAD_MODELS = {
    "not protobuf": (lambda: b"\xff\xff\xff", INVALID, ["onnx_model", "ModelProto"]),
    "empty": (lambda: b"", INVALID, ["onnx_model"]),
    "checker: undefined input": (
        lambda: om.model_bytes([helper.make_node("Relu", ["nowhere"], ["y"], name="r")],
                               [("x", [2])], [("y", [2])]),
        INVALID, ["checker", "nowhere"]),
    "unsupported op": (
        lambda: om.model_bytes([helper.make_node("Hardmax", ["x"], ["y"], name="hm")],
                               [("x", [2, 3])], [("y", [2, 3])]),
        UNIMPLEMENTED, ["'hm'", "Hardmax", "opset 14"]),
    "pads over half a pooling window": (
        lambda: om.model_bytes(
            [helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[3, 3],
                              pads=[0, 2, 0, 0])],
            [("x", [1, 1, 5, 5])], [("y", [1, 1, 3, 5])]),
        UNIMPLEMENTED, ["'mp'", "half"]),
    "indices in column-major order": (
        lambda: om.model_bytes(
            [helper.make_node("MaxPool", ["x"], ["y", "i"], name="mp", kernel_shape=[2, 2],
                              storage_order=1),
             helper.make_node("Cast", ["i"], ["y2"], to=TensorProto.FLOAT)],
            [("x", [1, 1, 4, 4])], [("y", [1, 1, 3, 3]), ("y2", [1, 1, 3, 3])]),
        UNIMPLEMENTED, ["'mp'", "storage_order"]),
    "ceil mode window in the padding": (  # ONNX keeps it, PyTorch drops it
        lambda: om.model_bytes(
            [helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[2, 2],
                              strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)],
            [("x", [1, 1, 3, 3])], [("y", [1, 1, 3, 3])]),
        UNIMPLEMENTED, ["'mp'", "ceil_mode"]),
    "reshape shape at run time": (
        lambda: helper.make_model(
            helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")],
                              "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                               helper.make_tensor_value_info("s", TensorProto.INT64, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]),
            opset_imports=[helper.make_opsetid("", 14)]).SerializeToString(),
        UNIMPLEMENTED, ["'rs'", "'s'", "run time"]),
    "external data": (external_data_model, INVALID, ["initializer 'w'", "external"]),
    "unknown domain": (
        lambda: helper.make_model(
            helper.make_graph([helper.make_node("Foo", ["x"], ["y"], name="f",
                                                domain="com.example")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]),
            opset_imports=[helper.make_opsetid("", 14),
                           helper.make_opsetid("com.example", 1)]).SerializeToString(),
        UNIMPLEMENTED, ["'f'", "com.example"]),
    "float16 input": (
        lambda: helper.make_model(
            helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2])]),
            opset_imports=[helper.make_opsetid("", 14)]).SerializeToString(),
        UNIMPLEMENTED, ["'x'", "FLOAT16"]),
    "cast to float64 at run time": (
        lambda: helper.make_model(
            helper.make_graph([helper.make_node("Cast", ["x"], ["y"], name="c",
                                                to=TensorProto.DOUBLE)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2])]),
            opset_imports=[helper.make_opsetid("", 14)]).SerializeToString(),
        UNIMPLEMENTED, ["'c'", "DOUBLE", "run time"]),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_is_refused_naming_the_culprit(server, case):
    make, code, parts = BAD_MODELS[case]
    request = pb.ComputeRequest(onnx_model=make(), fetch=["y"])
    gs.fill(request.feeds, {"x": np.zeros((2,), np.float32)})
    with pytest.raises(grpc.RpcError) as error:
        server.rpc.Compute(request, timeout=30)
    assert error.value.code() == code, error.value.details()
    for part in parts:
        assert part in error.value.details()
    assert server.alive()


@pytest.mark.parametrize("rpc", ["Describe", "CreateSession", "Forward"])
def test_every_model_rpc_imports(server, rpc):
    model = om.model_bytes([helper.make_node("Hardmax", ["x"], ["y"], name="hm")],
                           [("x", [2, 3])], [("y", [2, 3])])
    request = {"Describe": pb.DescribeRequest, "Forward": pb.ForwardRequest,
               "CreateSession": spb.CreateSessionRequest}[rpc](onnx_model=model)
    with pytest.raises(grpc.RpcError) as error:
        getattr(server.rpc, rpc)(request, timeout=30)
    assert error.value.code() == UNIMPLEMENTED
    assert "Hardmax" in error.value.details()


def test_gradctl_takes_onnx_files(server, tmp_path):
    """describe and compute --graph model.onnx: the file's bytes go as
    onnx_model; compute's loss gradients are torch's."""
    from gradctl_runs import gradctl
    torch.manual_seed(12)
    module = om.ClassifierLoss()
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    target = np.array([2, 0, 1, 0], dtype=np.int64)
    path = tmp_path / "model.onnx"
    path.write_bytes(om.export(module, (torch.tensor(x), torch.tensor(target)),
                               ["x", "target"], ["loss"], PRESERVE))
    out = gradctl(server, "describe", "--graph", path, "--input", "x=4,5",
                  "--input", "target=4:int64")
    assert out.returncode == 0, out.stderr
    assert f"total: {sum(p.numel() for p in module.parameters())} trainable" in out.stdout
    # The imported graph: each node with its ONNX name and gradserve op.
    shown = gradctl(server, "describe", path, "--input", "x=4,5", "--input",
                    "target=4:int64")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == out.stdout
    for name, op in [("/fc1/Gemm", "Linear"), ("/Relu", "ReLU"),
                     ("/SoftmaxCrossEntropyLoss", "CrossEntropyLoss")]:
        assert any(line.split()[:2] == [name, op] for line in out.stdout.splitlines()), \
            out.stdout
    both = gradctl(server, "describe", path, "--graph", path)
    assert both.returncode == 2 and "one model" in both.stderr
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "target.npy", target)
    out_dir = tmp_path / "out"
    run = gradctl(server, "compute", "--graph", path, "--feed", f"x={tmp_path / 'x.npy'}",
                  "--feed", f"target={tmp_path / 'target.npy'}", "--loss", "loss",
                  "--out", out_dir)
    assert run.returncode == 0, run.stderr
    module(torch.tensor(x), torch.tensor(target)).backward()
    for name, p in module.named_parameters():
        np.testing.assert_allclose(np.load(out_dir / f"grad_{name}.npy"), p.grad.numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=name)


def test_gradctl_trains_an_onnx_model_like_torch_sgd(server, tmp_path):
    """gradctl train --graph model.onnx: the session is created from the
    file's bytes; per-step losses are torch.optim.SGD's on the same batches."""
    import csv
    from gradctl_runs import gradctl
    torch.manual_seed(25)
    module = om.ClassifierLoss()
    rng = np.random.default_rng(26)
    x = rng.standard_normal((12, 5)).astype(np.float32)
    target = rng.integers(0, 3, size=12).astype(np.int64)
    path = tmp_path / "model.onnx"
    path.write_bytes(om.export(module, (torch.tensor(x[:4]), torch.tensor(target[:4])),
                               ["x", "target"], ["loss"], PRESERVE))
    np.savez(tmp_path / "data.npz", x=x, target=target)
    run = gradctl(server, "train", "--graph", path, "--data", tmp_path / "data.npz",
                  "--loss", "loss", "--batch-size", 4, "--epochs", 2, "--optimizer", "sgd",
                  "--lr", 0.1, "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "out" / "steps.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    expected = []
    for step in range(6):
        rows = slice(4 * (step % 3), 4 * (step % 3) + 4)
        opt.zero_grad()
        loss = module(torch.tensor(x[rows]), torch.tensor(target[rows]))
        loss.backward()
        opt.step()
        expected.append(loss.item())
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-6)


def read_graph_file(path):
    from google.protobuf import json_format, text_format
    from gradserve.v1 import graph_pb2
    with open(path) as f:
        text = f.read()
    if str(path).endswith(".json"):
        return json_format.Parse(text, graph_pb2.Graph())
    return text_format.Parse(text, graph_pb2.Graph())


@pytest.mark.parametrize("suffix", [".pbtxt", ".json"])
def test_gradctl_import_writes_the_graph_compute_takes(server, tmp_path, suffix):
    """gradctl import model.onnx --out graph.pbtxt (or .json), with no
    server: the imported graph, initializers as parameters (their values
    readable as float_values), BatchNorm statistics as buffers; compute
    --graph on that file gives the .onnx's outputs and gradients, and an
    edited parameter value in it shows in the output."""
    from gradctl_runs import gradctl
    torch.manual_seed(31)
    module = om.CNN().eval()
    randomize_batch_norms(module)
    rng = np.random.default_rng(32)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    onnx_path, graph_path = tmp_path / "model.onnx", tmp_path / f"graph{suffix}"
    onnx_path.write_bytes(om.export(module, torch.tensor(x), ["x"], ["y"], PRESERVE))
    run = gradctl("127.0.0.1:1", "import", onnx_path, "--out", graph_path)
    assert run.returncode == 0, run.stderr
    assert f"wrote {graph_path}" in run.stdout
    graph = read_graph_file(graph_path)
    assert set(graph.parameters) == {n for n, _ in module.named_parameters()}
    assert {"bn.running_mean", "bn.running_var"} <= set(graph.buffers)
    weight = graph.parameters["fc.weight"]
    assert not weight.data and list(weight.shape) == [5, 6]
    np.testing.assert_array_equal(weight.float_values, module.fc.weight.detach().numpy().ravel())
    assert [n.op for n in graph.nodes if n.name == "/conv1/Conv"] == ["Conv2d"]

    np.save(tmp_path / "x.npy", x)
    dy = rng.standard_normal((2, 5)).astype(np.float32)
    np.save(tmp_path / "dy.npy", dy)

    def compute(path, out):
        run = gradctl(server, "compute", "--graph", path, "--feed", f"x={tmp_path / 'x.npy'}",
                      "--grad", f"y={tmp_path / 'dy.npy'}", "--wrt", "x", "--wrt",
                      "conv1.weight", "--wrt", "bn.weight", "--mode", "eval", "--out",
                      tmp_path / out)
        assert run.returncode == 0, run.stderr
        return {f.name: np.load(f) for f in (tmp_path / out).iterdir()}
    from_onnx, from_graph = compute(onnx_path, "onnx"), compute(graph_path, "graph")
    assert set(from_graph) == {"y.npy", "grad_x.npy", "grad_conv1.weight.npy",
                               "grad_bn.weight.npy"}
    for name, value in from_onnx.items():
        np.testing.assert_array_equal(from_graph[name], value, err_msg=name)
    y, grads = torch_reference(module, x, dy)
    np.testing.assert_allclose(from_graph["y.npy"], y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(from_graph["grad_x.npy"], grads["x"], rtol=1e-4, atol=1e-5)

    # An edit of the file: fc's bias + 1 moves every logit by 1 before the
    # softmax, which the softmax cancels; fc's weight · 0 leaves the bias.
    graph.parameters["fc.weight"].float_values[:] = [0.0] * 30
    with open(graph_path, "w") as f:
        from google.protobuf import json_format, text_format
        f.write(json_format.MessageToJson(graph) if suffix == ".json"
                else text_format.MessageToString(graph))
    edited = compute(graph_path, "edited")["y.npy"]
    bias = module.fc.bias.detach()
    np.testing.assert_allclose(edited, torch.softmax(bias, 0).expand(2, 5).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_gradctl_import_errors_name_the_model(tmp_path):
    """A model the import refuses exits non-zero naming the file and the
    node; a wrong --out suffix is a usage error (2)."""
    from gradctl_runs import gradctl
    path = tmp_path / "hardmax.onnx"
    path.write_bytes(om.model_bytes([helper.make_node("Hardmax", ["x"], ["y"], name="hm")],
                                    [("x", [2, 3])], [("y", [2, 3])]))
    run = gradctl("127.0.0.1:1", "import", path, "--out", tmp_path / "g.pbtxt")
    assert run.returncode not in (0, 2), run
    assert str(path) in run.stderr and "Hardmax" in run.stderr and "'hm'" in run.stderr
    assert not (tmp_path / "g.pbtxt").exists()
    run = gradctl("127.0.0.1:1", "import", path, "--out", tmp_path / "g.txt")
    assert run.returncode == 2 and ".pbtxt or .json" in run.stderr, run
