"""ONNX op-table rows onto existing core ops, each through a hand-built
model: Clip, Pad, Split, Gather (indices at run time), GatherElements,
Where, Pow, ConvTranspose, InstanceNormalization and BatchNormalization's
training_mode outputs. Outputs and the gradients of every float input and
initializer are torch autograd's."""

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import gs
from gs import pb

F = torch.nn.functional
RNG = np.random.default_rng(40)


def normal(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def const(name, value):
    """A Constant node giving `value` (numpy) as `name`."""
    return helper.make_node("Constant", [], [name], name=f"const_{name}",
                            value=numpy_helper.from_array(np.asarray(value), name))


def elem_type(a):
    return {np.dtype(np.float32): TensorProto.FLOAT,
            np.dtype(np.int64): TensorProto.INT64}[a.dtype]


def build(nodes, feeds, inits, outputs, opset):
    """A model of `nodes`: graph inputs `feeds`, initializers `inits`
    (name -> array), float outputs `outputs` (name -> shape)."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, elem_type(a), a.shape) for n, a in feeds.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
        initializer=[numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model.SerializeToString()


def torch_side(feeds, inits, reference):
    """torch's outputs of `reference` and the gradients of Σ⟨output, seed⟩
    for every float tensor."""
    tensors = {n: torch.tensor(a, requires_grad=a.dtype == np.float32)
               for n, a in {**feeds, **inits}.items()}
    outputs = reference(**tensors)
    seeds = {n: normal(*y.shape) for n, y in outputs.items()}
    total = sum((y * torch.tensor(seeds[n])).sum() for n, y in outputs.items())
    total.backward()
    grads = {n: t.grad.numpy() for n, t in tensors.items() if t.requires_grad}
    return {n: y.detach().numpy() for n, y in outputs.items()}, seeds, grads


def check(server, nodes, feeds, reference, inits=None, opset=13, mode=pb.MODE_EVAL,
          rtol=1e-5, atol=1e-5):
    inits = inits or {}
    want, seeds, grads = torch_side(feeds, inits, reference)
    model = build(nodes, feeds, inits, {n: list(y.shape) for n, y in want.items()}, opset)
    request = pb.ComputeRequest(onnx_model=model, fetch=list(want), wrt=list(grads),
                                mode=mode)
    gs.fill(request.feeds, feeds)
    gs.fill(request.output_gradients, seeds)
    result = gs.Result(server.rpc.Compute(request, timeout=60))
    for name, y in want.items():
        np.testing.assert_allclose(result.outputs[name], y, rtol=rtol, atol=atol,
                                   err_msg=name)
    assert set(result.gradients) == set(grads)
    for name, g in grads.items():
        np.testing.assert_allclose(result.gradients[name], g, rtol=rtol, atol=atol,
                                   err_msg=f"d/d{name}")
    return result


def node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=op.lower(), **attrs)


# --- Clip -----------------------------------------------------------------

def test_clip_attributes_before_opset_11(server):
    check(server, [node("Clip", ["x"], min=-0.5, max=0.7)], {"x": normal(3, 4)},
          lambda x: {"y": torch.clamp(x, -0.5, 0.7)}, opset=9)


def test_clip_default_bounds_before_opset_11_are_the_float_range(server):
    x = np.array([-np.inf, -1.0, 2.0, np.inf], dtype=np.float32)
    big = np.finfo(np.float32).max
    check(server, [node("Clip", ["x"], min=0.0)], {"x": x},
          lambda x: {"y": torch.clamp(x, 0.0, float(big))}, opset=9)


def test_clip_constant_bounds_become_attributes(server):
    nodes = [const("lo", np.float32(-0.3)), const("hi", np.float32(0.4)),
             node("Clip", ["x", "lo", "hi"])]
    check(server, nodes, {"x": normal(2, 5)}, lambda x: {"y": torch.clamp(x, -0.3, 0.4)})


def test_clip_max_only(server):
    nodes = [const("hi", np.float32(0.2)), node("Clip", ["x", "", "hi"])]
    check(server, nodes, {"x": normal(6)}, lambda x: {"y": torch.clamp(x, max=0.2)},
          opset=12)


def test_clip_bounds_at_run_time_get_gradients(server):
    """min and max fed: Clamp's tensor bounds, whose gradients are torch's."""
    feeds = {"x": normal(4, 3), "lo": np.array(-0.4, np.float32),
             "hi": np.array(0.5, np.float32)}
    check(server, [node("Clip", ["x", "lo", "hi"])], feeds,
          lambda x, lo, hi: {"y": torch.clamp(x, lo, hi)})


# --- Pad ------------------------------------------------------------------

def test_pad_constant_value_and_negative_pads(server):
    """pads [0, 1, 2, -1]: dim 0 gets 2 rows at its end, dim 1 one column
    before and one cropped at its end (ONNX order: every begin, then every
    end; torch's: the last dim first)."""
    nodes = [const("pads", np.array([0, 1, 2, -1], np.int64)),
             const("value", np.float32(1.5)), node("Pad", ["x", "pads", "value"])]
    check(server, nodes, {"x": normal(3, 4)},
          lambda x: {"y": F.pad(x, (1, -1, 0, 2), value=1.5)})


def test_pad_reflect(server):
    nodes = [const("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)),
             node("Pad", ["x", "pads"], mode="reflect")]
    check(server, nodes, {"x": normal(2, 3, 5, 6)},
          lambda x: {"y": F.pad(x, (2, 1, 1, 2), mode="reflect")})


def test_pad_edge_with_attributes_before_opset_11(server):
    check(server, [node("Pad", ["x"], mode="edge", pads=[0, 0, 0, 1, 0, 0, 2, 0])],
          {"x": normal(1, 2, 3, 4)},
          lambda x: {"y": F.pad(x, (1, 0, 0, 2), mode="replicate")}, opset=9)


def test_pad_constant_attribute_value_before_opset_11(server):
    check(server, [node("Pad", ["x"], pads=[1, 0, 0, 2], value=-2.0)], {"x": normal(2, 3)},
          lambda x: {"y": F.pad(x, (0, 2, 1, 0), value=-2.0)}, opset=9)


# --- Split ----------------------------------------------------------------

def test_split_attribute_sizes(server):
    check(server, [node("Split", ["x"], ["a", "b"], axis=1, split=[1, 3])],
          {"x": normal(2, 4, 3)},
          lambda x: dict(zip("ab", torch.split(x, [1, 3], dim=1))), opset=11)


def test_split_input_sizes(server):
    nodes = [const("sizes", np.array([2, 1, 2], np.int64)),
             node("Split", ["x", "sizes"], ["a", "b", "c"])]
    check(server, nodes, {"x": normal(5, 2)},
          lambda x: dict(zip("abc", torch.split(x, [2, 1, 2]))))


def test_split_equal_parts(server):
    check(server, [node("Split", ["x"], ["a", "b", "c"], axis=-1)], {"x": normal(2, 6)},
          lambda x: dict(zip("abc", torch.chunk(x, 3, dim=-1))), opset=13)


def test_split_leaves_an_unused_output_out(server):
    check(server, [node("Split", ["x"], ["a", ""], axis=0)], {"x": normal(4, 3)},
          lambda x: {"a": x[:2]}, opset=13)


# --- Gather, GatherElements -----------------------------------------------

@pytest.mark.parametrize("axis, indices", [
    (0, np.array([[3, -1], [0, 1]])),
    (1, np.array([2, -3, 2])),
    (1, np.array(-1)),
], ids=["2d-indices", "vector", "scalar"])
def test_gather_indices_at_run_time(server, axis, indices):
    """Indices fed (not folded): IndexSelect, negative ones from the end."""
    x = normal(4, 3)
    n = x.shape[axis]

    def reference(x, i):
        picked = x.index_select(axis, (i % n).reshape(-1))
        shape = list(x.shape[:axis]) + list(i.shape) + list(x.shape[axis + 1:])
        return {"y": picked.reshape(shape)}
    check(server, [node("Gather", ["x", "i"], axis=axis)],
          {"x": x, "i": indices.astype(np.int64)}, reference)


def test_gather_of_an_initializer_is_an_embedding(server):
    """An initializer's rows gathered by fed ids: the table is a parameter
    with torch's embedding gradient (repeated ids summed)."""
    check(server, [node("Gather", ["table", "ids"])],
          {"ids": np.array([[1, 4], [1, 0]], np.int64)},
          lambda table, ids: {"y": F.embedding(ids, table)}, inits={"table": normal(5, 3)})


def test_gather_of_constants_still_folds(server):
    """Shape arithmetic: Shape then Gather of a constant index folds into
    the Reshape's shape (nothing gathered at run time)."""
    nodes = [node("Shape", ["x"], ["s"]), const("i", np.array([1, 0], np.int64)),
             node("Gather", ["s", "i"], ["t"]), node("Reshape", ["x", "t"])]
    x = normal(2, 3)
    check(server, nodes, {"x": x}, lambda x: {"y": x.reshape(3, 2)})
    describe = pb.DescribeRequest(onnx_model=build(nodes, {"x": x}, {}, {"y": [3, 2]}, 13))
    describe.input_shapes["x"].dims.extend(x.shape)
    assert [n.op for n in server.rpc.Describe(describe, timeout=30).nodes] == ["Reshape"]


def test_gather_of_a_constant_matrix_folds_each_row(server):
    """Known data and indices along axis 1: each row's picks (the fold
    once copied whole rows past its output: make test-sanitize)."""
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    nodes = [const("d", data), const("i", np.array([[2, 0], [3, 3]], np.int64)),
             node("Gather", ["d", "i"], ["g"], axis=1), node("Add", ["x", "g"])]
    check(server, nodes, {"x": normal(3, 2, 2)},
          lambda x: {"y": x + torch.from_numpy(data[:, [[2, 0], [3, 3]]])})


def test_gather_elements(server):
    check(server, [node("GatherElements", ["x", "i"], axis=1)],
          {"x": normal(3, 4), "i": np.array([[0, -1], [2, 2], [-4, 1]], np.int64)},
          lambda x, i: {"y": torch.gather(x, 1, i % 4)})


# --- Where, Pow -----------------------------------------------------------

def test_where_with_a_constant_condition(server):
    condition = np.array([[True, False, True]])
    nodes = [const("c", condition), node("Where", ["c", "a", "b"])]
    check(server, nodes, {"a": normal(2, 3), "b": normal(2, 1)},
          lambda a, b: {"y": torch.where(torch.tensor(condition), a, b)})


def test_pow_tensor_exponent(server):
    x = np.abs(normal(3, 4)) + 0.5
    check(server, [node("Pow", ["x", "e"])], {"x": x, "e": normal(4)},
          lambda x, e: {"y": torch.pow(x, e)})


def test_pow_integer_constant_exponent(server):
    nodes = [const("e", np.array(3, np.int64)), node("Pow", ["x", "e"])]
    check(server, nodes, {"x": normal(5)}, lambda x: {"y": torch.pow(x, 3.0)}, opset=15)


# --- ConvTranspose --------------------------------------------------------

def onnx_conv_transpose(x, w, b, strides, pads, output_padding, dilations, group):
    """ONNX's ConvTranspose in torch: the full transposed convolution (no
    padding; output_padding zeros at the end), pads cut from each side."""
    n = len(strides)
    full = (F.conv_transpose2d if n == 2 else F.conv_transpose1d)(
        x, w, b, stride=strides, output_padding=output_padding, groups=group,
        dilation=dilations)
    index = [slice(None), slice(None)]
    for d in range(n):
        index.append(slice(pads[d], full.shape[d + 2] - pads[d + n]))
    return full[tuple(index)]


@pytest.mark.parametrize("attrs", [
    dict(strides=[2, 1], pads=[1, 0, 0, 2], output_padding=[1, 0], dilations=[1, 2],
         group=2),
    dict(strides=[3, 2], pads=[1, 1, 1, 1], output_padding=[2, 1]),
    dict(strides=[1, 1], pads=[0, 0, 0, 0]),
], ids=["asymmetric-grouped-dilated", "symmetric-output-padding", "plain"])
def test_conv_transpose_2d(server, attrs):
    x, w, b = normal(2, 4, 3, 4), normal(4, 3, 3, 2), normal(6 if "group" in attrs else 3)
    if "group" not in attrs:
        w = normal(4, 3, 3, 2)
    full = dict(strides=[1, 1], pads=[0] * 4, output_padding=[0, 0], dilations=[1, 1],
                group=1)
    full.update(attrs)
    check(server, [node("ConvTranspose", ["x", "w", "b"], **attrs)], {"x": x},
          lambda x, w, b: {"y": onnx_conv_transpose(x, w, b, **full)},
          inits={"w": w, "b": b}, rtol=1e-4)


def test_conv_transpose_1d_output_shape(server):
    """output_shape: pads from the total padding (the odd one at the start,
    auto_pad NOTSET), no bias."""
    x, w = normal(1, 2, 5), normal(2, 3, 4)
    # full length (5 - 1)·2 + 4 = 12; output_shape 9: total 3, pads [2, 1]
    check(server, [node("ConvTranspose", ["x", "w"], strides=[2], output_shape=[9])],
          {"x": x}, lambda x, w: {"y": onnx_conv_transpose(x, w, None, [2], [2, 1], [0],
                                                           [1], 1)},
          inits={"w": w}, rtol=1e-4)


# --- InstanceNormalization ------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 4, 5), (2, 3, 2, 3, 4)],
                         ids=["1d", "2d", "3d-as-groupnorm"])
def test_instance_normalization(server, shape):
    check(server, [node("InstanceNormalization", ["x", "s", "b"], epsilon=1e-3)],
          {"x": normal(*shape)},
          lambda x, s, b: {"y": F.instance_norm(x, weight=s, bias=b, eps=1e-3)},
          inits={"s": normal(3), "b": normal(3)}, rtol=1e-4, atol=1e-4)


# --- BatchNormalization's training_mode -----------------------------------

@pytest.mark.parametrize("mode", [pb.MODE_EVAL, pb.MODE_TRAIN], ids=["eval", "train"])
def test_batch_normalization_training_mode_outputs(server, mode):
    """training_mode = 1 with running_mean and running_var read: batch
    statistics whatever the request's mode, running = input·momentum +
    batch·(1 − momentum) with the biased batch variance (ONNX's); gradients
    through all three outputs."""
    momentum, eps = 0.8, 1e-3
    x = normal(4, 3, 2, 5)
    stats = {"mean": normal(3), "var": np.abs(normal(3)) + 0.5}
    bn = node("BatchNormalization", ["x", "s", "b", "mean", "var"],
              ["y", "running_mean", "running_var"], training_mode=1, momentum=momentum,
              epsilon=eps)

    def reference(x, s, b, mean, var):
        dims = (0, 2, 3)
        return {"y": F.batch_norm(x, None, None, s, b, training=True, eps=eps),
                "running_mean": mean * momentum + x.mean(dims) * (1 - momentum),
                "running_var": var * momentum + x.var(dims, unbiased=False) * (1 - momentum)}
    inits = {"s": normal(3), "b": normal(3), **stats}
    check(server, [bn], {"x": x}, reference, inits=inits, opset=15, mode=mode, rtol=1e-4,
          atol=1e-4)
    # The input statistics are buffers: only scale and B are trainable.
    model = build([bn], {"x": x}, inits, {"y": list(x.shape), "running_mean": [3],
                                          "running_var": [3]}, 15)
    describe = pb.DescribeRequest(onnx_model=model)
    describe.input_shapes["x"].dims.extend(x.shape)
    assert server.rpc.Describe(describe, timeout=30).total_parameters == 6
