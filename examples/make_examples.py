"""Writes the example graph (mlp.json, mlp.pbtxt) and inputs (x.npy,
labels.npy). Run with Debian's python: /usr/bin/python3 make_examples.py
(needs the stubs of a build: build/python)."""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "build", "python"))

from google.protobuf import json_format, text_format  # noqa: E402
from gradserve.v1 import graph_pb2, tensor_pb2  # noqa: E402


def floats(array):
    return tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=list(array.shape),
                             float_values=[round(float(v), 4) for v in array.ravel()])


def main():
    rng = np.random.default_rng(0)
    g = graph_pb2.Graph(inputs=["x", "labels"], outputs=["logits"])
    for name, op, inputs, output in [
            ("fc1", "Linear", ["x", "W1", "b1"], "h"),
            ("act", "ReLU", ["h"], "a"),
            ("fc2", "Linear", ["a", "W2", "b2"], "logits"),
            ("loss", "CrossEntropyLoss", ["logits", "labels"], "L")]:
        g.nodes.add(name=name, op=op, inputs=inputs, outputs=[output])
    for name, shape in [("W1", (8, 4)), ("b1", (8,)), ("W2", (3, 8)), ("b2", (3,))]:
        g.parameters[name].CopyFrom(floats(rng.normal(scale=0.5, size=shape)))
    with open(os.path.join(HERE, "mlp.json"), "w") as f:
        f.write(json_format.MessageToJson(g, indent=1) + "\n")
    with open(os.path.join(HERE, "mlp.pbtxt"), "w") as f:
        f.write("# gradserve.v1.Graph: x [N, 4] -> Linear 8 -> ReLU -> Linear 3 -> "
                "cross-entropy with labels [N]\n")
        f.write(text_format.MessageToString(g))
    np.save(os.path.join(HERE, "x.npy"), rng.normal(size=(5, 4)).astype(np.float32))
    np.save(os.path.join(HERE, "labels.npy"), np.array([0, 2, 1, 2, 0], dtype=np.int64))


if __name__ == "__main__":
    main()
