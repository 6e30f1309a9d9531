#!/usr/bin/python3
"""Writes the data sets that Debian's python3-sklearn ships as .npz files for
gradctl's examples and tests, and an MLP graph to train on them.

    /usr/bin/python3 tools/make-datasets.py --out DIR [--val-fraction 0.2] [--seed 0]

DIR/digits-train.npz, DIR/digits-val.npz: sklearn's digits (1797 8x8 images
of the digits 0-9), split into training and held-out samples by a seeded
permutation, stratified by class. Arrays: "images" float32 [N, 64] (pixel
values 0..16 scaled to 0..1) and "labels" int64 [N].

DIR/digits-mlp.json: a gradserve.v1.Graph in protobuf JSON: x [N, 64] ->
Linear 64 -> ReLU -> Linear 10 -> "logits", and "loss" =
CrossEntropyLoss(logits, labels); weights drawn as torch.nn.Linear draws them
(uniform in +-1/sqrt(fan_in)) from --seed. Feed it with
--map x=images (the labels array has the input's name).
"""

import argparse
import json
import os

import numpy as np
from sklearn.datasets import load_digits


def split(labels, val_fraction, rng):
    """Indices of training and held-out samples, the same fraction of each class."""
    train, val = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        held = int(round(val_fraction * len(members)))
        val.extend(members[:held])
        train.extend(members[held:])
    return rng.permutation(np.array(train)), rng.permutation(np.array(val))


def tensor(array):
    return {"dtype": "DATA_TYPE_FLOAT32", "shape": [str(d) for d in array.shape],
            "floatValues": [float(v) for v in array.astype(np.float32).ravel()]}


def linear(rng, fan_in, fan_out):
    bound = 1.0 / np.sqrt(fan_in)
    return (rng.uniform(-bound, bound, size=(fan_out, fan_in)),
            rng.uniform(-bound, bound, size=(fan_out,)))


def mlp(rng, hidden=64):
    w1, b1 = linear(rng, 64, hidden)
    w2, b2 = linear(rng, hidden, 10)
    return {
        "inputs": ["x", "labels"],
        "outputs": ["logits"],
        "nodes": [
            {"name": "fc1", "op": "Linear", "inputs": ["x", "W1", "b1"], "outputs": ["h"]},
            {"name": "act", "op": "ReLU", "inputs": ["h"], "outputs": ["a"]},
            {"name": "fc2", "op": "Linear", "inputs": ["a", "W2", "b2"], "outputs": ["logits"]},
            {"name": "ce", "op": "CrossEntropyLoss", "inputs": ["logits", "labels"],
             "outputs": ["loss"]},
        ],
        "parameters": {"W1": tensor(w1), "b1": tensor(b1), "W2": tensor(w2), "b2": tensor(b2)},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write to")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    train, val = split(labels, args.val_fraction, rng)
    for name, rows in (("train", train), ("val", val)):
        path = os.path.join(args.out, f"digits-{name}.npz")
        np.savez(path, images=images[rows], labels=labels[rows])
        print(f"{path}: {len(rows)} samples")
    path = os.path.join(args.out, "digits-mlp.json")
    with open(path, "w") as f:
        json.dump(mlp(rng), f)
        f.write("\n")
    print(f"{path}: 64 -> 64 -> 10 MLP with cross-entropy loss")


if __name__ == "__main__":
    main()
