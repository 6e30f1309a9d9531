"""Writes the request fuzzer's seed corpus: realistic FuzzCase inputs for
every op (the parity suite's cases: Compute with output gradients or a loss,
Forward then Backward, Describe), small MLP and CNN models (Compute in TRAIN
and EVAL, sessions trained with SGD and Adam, parameters read and replaced,
calls on the session), dropout, residual and normalisation graphs.

  make fuzz-corpus          (GRADSERVE_BUILD_DIR=build /usr/bin/python3 \\
                             tests/fuzz/make_corpus.py tests/fuzz/corpus)

The output is deterministic: the same files, byte for byte, on every run."""

import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import gs  # noqa: E402
import test_op_parity  # noqa: E402
import fuzz_case_pb2  # noqa: E402  (generated into <build>/python)
from gradserve.v1 import session_pb2  # noqa: E402

pb = gs.pb


def op_case_values(case, rng):
    values = {name: make(rng) for name, make in case.inputs if name}
    leaves = [torch.tensor(v) for v in values.values()]
    y = case.reference(*leaves)
    return values, tuple(y.shape)


def op_cases():
    """(name, FuzzCase) for each parity case: Compute, Forward/Backward, Describe."""
    rng = np.random.default_rng(0)
    for case in test_op_parity.CASES + test_op_parity.BATCH_NORM_CASES:
        values, y_shape = op_case_values(case, rng)
        node = gs.node("node", case.op, [name for name, _ in case.inputs], ["y"], **case.attrs)
        g = gs.graph([node], inputs=list(values), outputs=["y"])
        wrt = [n for n, v in values.items() if v.dtype == np.float32]
        seeds = {} if case.loss else {"y": rng.uniform(-1, 1, size=y_shape).astype(np.float32)}
        loss = "y" if case.loss else ""
        compute = gs.compute_request(g, feeds=values, fetch=["y"], loss=loss,
                                     output_gradients=seeds, wrt=wrt)
        yield f"compute-{case.id}", fuzz_case_pb2.FuzzCase(compute=compute)

        fb = fuzz_case_pb2.ForwardBackward(forward=pb.ForwardRequest(
            graph=g, fetch=["y"], loss=loss, wrt=wrt, seed=3))
        for name, t in compute.feeds.items():
            fb.forward.feeds[name].CopyFrom(t)
        backward = fb.backward.add(from_loss=case.loss, keep=True)
        for name, t in compute.output_gradients.items():
            backward.output_gradients[name].CopyFrom(t)
        fb.backward.add(from_loss=case.loss, wrt=wrt[:1])
        for name, t in compute.output_gradients.items():
            fb.backward[1].output_gradients[name].CopyFrom(t)
        yield f"forward-backward-{case.id}", fuzz_case_pb2.FuzzCase(forward_backward=fb)

        describe = pb.DescribeRequest(graph=g)
        for name, v in values.items():
            describe.input_shapes[name].CopyFrom(gs.tensor_pb2.TensorShape(
                dims=list(v.shape), dtype=gs.tensor(v).dtype))
        yield f"describe-{case.id}", fuzz_case_pb2.FuzzCase(describe=describe)


def uniform(rng, *shape):
    return rng.uniform(-1, 1, size=shape).astype(np.float32)


def mlp(rng):
    nodes = [gs.node("fc1", "Linear", ["x", "W1", "b1"], ["h1"]),
             gs.node("act", "ReLU", ["h1"], ["a1"]),
             gs.node("fc2", "Linear", ["a1", "W2", "b2"], ["logits"]),
             gs.node("loss", "CrossEntropyLoss", ["logits", "t"], ["L"])]
    params = {"W1": uniform(rng, 8, 4), "b1": uniform(rng, 8),
              "W2": uniform(rng, 3, 8), "b2": uniform(rng, 3)}
    feeds = {"x": uniform(rng, 6, 4), "t": rng.integers(0, 3, size=(6,)).astype(np.int64)}
    return gs.graph(nodes, inputs=["x", "t"], parameters=params, outputs=["logits"]), feeds


def cnn(rng):
    nodes = [gs.node("conv", "Conv2d", ["x", "cw", "cb"], ["c"], padding=[1, 1]),
             gs.node("bn", "BatchNorm", ["c", "g", "beta", "rm", "rv"], ["n"]),
             gs.node("act", "ReLU", ["n"], ["a"]),
             gs.node("pool", "MaxPool2d", ["a"], ["p"], kernel=[2, 2]),
             gs.node("flat", "Flatten", ["p"], ["f"]),
             gs.node("fc", "Linear", ["f", "W", "b"], ["logits"]),
             gs.node("loss", "CrossEntropyLoss", ["logits", "t"], ["L"])]
    params = {"cw": uniform(rng, 3, 1, 3, 3), "cb": uniform(rng, 3),
              "g": np.ones(3, np.float32), "beta": np.zeros(3, np.float32),
              "W": uniform(rng, 4, 27), "b": uniform(rng, 4)}
    buffers = {"rm": np.zeros(3, np.float32), "rv": np.ones(3, np.float32)}
    feeds = {"x": uniform(rng, 2, 1, 6, 6), "t": np.array([1, 3], np.int64)}
    return gs.graph(nodes, inputs=["x", "t"], parameters=params, buffers=buffers,
                    outputs=["logits"]), feeds


def residual(rng):
    nodes = [gs.node("fc", "Linear", ["x", "W", ""], ["h"]),
             gs.node("add", "Add", ["x", "h"], ["r"]),
             gs.node("act", "Tanh", ["r"], ["a"]),
             gs.node("norm", "LayerNorm", ["a", "lw", "lb"], ["n"]),
             gs.node("gelu", "GELU", ["n"], ["z"]),
             gs.node("sm", "LogSoftmax", ["z"], ["lp"]),
             gs.node("loss", "NLLLoss", ["lp", "t"], ["L"])]
    params = {"W": uniform(rng, 5, 5), "lw": np.ones(5, np.float32),
              "lb": np.zeros(5, np.float32)}
    feeds = {"x": uniform(rng, 4, 5), "t": np.array([0, 4, 2, 1], np.int64)}
    return gs.graph(nodes, inputs=["x", "t"], parameters=params, outputs=["lp"]), feeds


def dropout(rng):
    nodes = [gs.node("drop", "Dropout", ["x"], ["d", "mask"], p=0.3),
             gs.node("fc", "Linear", ["d", "W", "b"], ["y"]),
             gs.node("cat", "Concat", ["y", "x"], ["c"], axis=1),
             gs.node("mean", "Mean", ["c"], ["m"], axes=[1]),
             gs.node("loss", "MSELoss", ["m", "target"], ["L"])]
    params = {"W": uniform(rng, 2, 3), "b": uniform(rng, 2)}
    feeds = {"x": uniform(rng, 4, 3), "target": uniform(rng, 4)}
    return gs.graph(nodes, inputs=["x", "target"], parameters=params,
                    outputs=["y", "mask"]), feeds


def conv1d(rng):
    nodes = [gs.node("conv", "Conv1d", ["x", "w", ""], ["c"], stride=2, padding=1),
             gs.node("bn", "BatchNorm", ["c", "g", "beta", "rm", "rv"], ["n"]),
             gs.node("act", "ELU", ["n"], ["a"]),
             gs.node("flat", "Flatten", ["a"], ["f"]),
             gs.node("s", "Sigmoid", ["f"], ["p"]),
             gs.node("sum", "Sum", ["p"], ["L"])]
    params = {"w": uniform(rng, 2, 3, 3), "g": np.ones(2, np.float32),
              "beta": np.zeros(2, np.float32)}
    buffers = {"rm": np.zeros(2, np.float32), "rv": np.ones(2, np.float32)}
    feeds = {"x": uniform(rng, 2, 3, 7)}
    return gs.graph(nodes, inputs=["x"], parameters=params, buffers=buffers,
                    outputs=["p"]), feeds


MODELS = {"mlp": mlp, "cnn": cnn, "residual": residual, "dropout": dropout, "conv1d": conv1d}


def optimizers():
    yield "sgd", session_pb2.Optimizer(sgd=session_pb2.SGD(lr=0.1, momentum=0.9, nesterov=True))
    yield "adam", session_pb2.Optimizer(adam=session_pb2.Adam(amsgrad=True), max_grad_norm=1.0)
    yield "adamw", session_pb2.Optimizer(adam=session_pb2.Adam(decoupled_weight_decay=True))


def session_case(g, feeds, optimizer):
    s = fuzz_case_pb2.SessionScenario(create=session_pb2.CreateSessionRequest(
        graph=g, optimizer=optimizer, label="fuzz"))
    train = session_pb2.TrainStepRequest(loss="L", fetch=list(g.outputs), seed=1)
    for name, v in feeds.items():
        train.feeds[name].CopyFrom(gs.tensor(v))
    s.steps.add(train_step=train)
    s.steps.add(train_step=session_pb2.TrainStepRequest(
        feeds=train.feeds, loss="L", seed=2, learning_rate=0.01))
    s.steps.add(get_parameters=session_pb2.GetParametersRequest(include_optimizer_state=True))
    first = sorted(g.parameters)[0]
    set_params = session_pb2.SetParametersRequest(step=5)
    set_params.parameters[first].CopyFrom(g.parameters[first])
    s.steps.add(set_parameters=set_params)
    compute = pb.ComputeRequest(loss="L", feeds=train.feeds, mode=pb.MODE_EVAL)
    s.steps.add(compute=compute)
    fb = fuzz_case_pb2.ForwardBackward(forward=pb.ForwardRequest(feeds=train.feeds, loss="L"))
    fb.backward.add(from_loss=True)
    s.steps.add(forward_backward=fb)
    s.steps.add(describe=pb.DescribeRequest())
    s.steps.add(close=session_pb2.CloseSessionRequest())
    return fuzz_case_pb2.FuzzCase(session=s)


def model_cases():
    rng = np.random.default_rng(1)
    for name, make in MODELS.items():
        g, feeds = make(rng)
        for mode, label in ((pb.MODE_TRAIN, "train"), (pb.MODE_EVAL, "eval")):
            compute = gs.compute_request(g, feeds=feeds, loss="L", mode=mode, seed=7,
                                         fetch=list(g.outputs) + ["L"])
            yield f"compute-{name}-{label}", fuzz_case_pb2.FuzzCase(compute=compute)
        fb = fuzz_case_pb2.ForwardBackward(forward=pb.ForwardRequest(
            graph=g, loss="L", fetch=list(g.outputs), seed=7))
        for key, v in feeds.items():
            fb.forward.feeds[key].CopyFrom(gs.tensor(v))
        fb.backward.add(from_loss=True, keep=True)
        fb.backward.add(from_loss=True, wrt=sorted(g.parameters)[:1])
        yield f"forward-backward-{name}", fuzz_case_pb2.FuzzCase(forward_backward=fb)
        for opt_name, optimizer in optimizers():
            yield f"session-{name}-{opt_name}", session_case(g, feeds, optimizer)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="the corpus directory (written anew)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for old in os.listdir(args.out):
        os.remove(os.path.join(args.out, old))
    total = 0
    count = 0
    for name, case in list(op_cases()) + list(model_cases()):
        data = case.SerializeToString(deterministic=True)
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)
        total += len(data)
        count += 1
    print(f"wrote {count} inputs, {total} bytes, to {args.out}")


if __name__ == "__main__":
    main()
