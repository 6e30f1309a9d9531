"""Train a small MLP on a gradserve server: a session holds the model and
its Adam state server-side; each TrainStep sends one batch. Then checkpoint
it, compute forward now and backward later on a handle, and evaluate over a
ComputeStream.

    make serve                                   # in one terminal
    /usr/bin/python3 examples/python/train_session.py [--server localhost:50051]

The gRPC stubs come from the build (build/python, made by `make build`)."""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("GRADSERVE_PYTHON_STUBS",
                                  os.path.join(HERE, "..", "..", "build", "python")))
import grpc  # noqa: E402
from gradserve.v1 import gradient_service_pb2 as pb  # noqa: E402
from gradserve.v1 import gradient_service_pb2_grpc as pb_grpc  # noqa: E402
from gradserve.v1 import graph_pb2, session_pb2, tensor_pb2  # noqa: E402


def tensor(a):
    a = np.asarray(a)
    dtype = tensor_pb2.DATA_TYPE_INT64 if a.dtype.kind in "iu" else tensor_pb2.DATA_TYPE_FLOAT32
    a = a.astype("<i8" if dtype == tensor_pb2.DATA_TYPE_INT64 else "<f4")
    return tensor_pb2.Tensor(dtype=dtype, shape=a.shape, data=a.tobytes())


def array(t):
    dtype = "<i8" if t.dtype == tensor_pb2.DATA_TYPE_INT64 else "<f4"
    return np.frombuffer(t.data, dtype).reshape(t.shape)


def node(name, op, inputs, output):
    return graph_pb2.Node(name=name, op=op, inputs=inputs, outputs=[output])


def mlp_graph(rng):
    """x [N, 2] -> Linear 2->16 -> ReLU -> Linear 16->2 -> cross-entropy."""
    g = graph_pb2.Graph(inputs=["x", "labels"], nodes=[
        node("fc1", "Linear", ["x", "W1", "b1"], "h"),
        node("relu", "ReLU", ["h"], "a"),
        node("fc2", "Linear", ["a", "W2", "b2"], "logits"),
        node("loss", "CrossEntropyLoss", ["logits", "labels"], "L")])
    for name, shape in {"W1": (16, 2), "b1": (16,), "W2": (2, 16), "b2": (2,)}.items():
        g.parameters[name].CopyFrom(tensor(rng.normal(0, 0.5, shape)))
    return g


def two_moons(rng, n):
    """Points of two interleaved half circles, labelled 0 and 1."""
    angle = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    x = np.stack([np.cos(angle) + label, np.sin(angle) * (1 - 2 * label) + 0.5 * label], 1)
    return x + rng.normal(0, 0.1, x.shape), label


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="localhost:50051")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    rpc = pb_grpc.GradientServiceStub(grpc.insecure_channel(args.server))
    rng = np.random.default_rng(0)

    # 1. A session: the graph, its weights and an optimizer, held server-side.
    created = rpc.CreateSession(session_pb2.CreateSessionRequest(
        graph=mlp_graph(rng), label="two moons",
        optimizer=session_pb2.Optimizer(adam=session_pb2.Adam(lr=0.05))), timeout=30)
    session = created.session.session_id
    print(f"session {session}: {created.session.parameter_count} parameters")

    # 2. Train: one TrainStep per batch; only the batch travels.
    for step in range(1, args.steps + 1):
        x, labels = two_moons(rng, 64)
        request = session_pb2.TrainStepRequest(session_id=session, loss="L")
        request.feeds["x"].CopyFrom(tensor(x))
        request.feeds["labels"].CopyFrom(tensor(labels))
        reply = rpc.TrainStep(request, timeout=30)
        if step % 100 == 0 or step == 1:
            print(f"step {reply.step:4d}  loss {float(array(reply.loss)):.4f}  "
                  f"grad norm {reply.grad_norm:.4f}")

    # 3. Checkpoint: parameters and Adam state; SetParameters restores them.
    checkpoint = rpc.GetParameters(session_pb2.GetParametersRequest(
        session_id=session, include_optimizer_state=True), timeout=30)
    print(f"checkpoint at step {checkpoint.step}: {sorted(checkpoint.parameters)} + "
          f"{len(checkpoint.optimizer_state)} optimizer tensors")

    # 4. Forward now, Backward later: the server keeps the activations.
    x, labels = two_moons(rng, 8)
    forward = pb.ForwardRequest(session_id=session, loss="L", fetch=["logits"])
    forward.feeds["x"].CopyFrom(tensor(x))
    forward.feeds["labels"].CopyFrom(tensor(labels))
    held = rpc.Forward(forward, timeout=30)
    backward = rpc.Backward(pb.BackwardRequest(activation_id=held.activation_id,
                                               from_loss=True, wrt=["W1"]), timeout=30)
    print(f"Forward then Backward: dL/dW1 has norm "
          f"{np.linalg.norm(array(backward.gradients['W1'])):.4f}")

    # 5. Evaluate over a stream: many requests, replies in order.
    def batches():
        for _ in range(20):
            x, labels = two_moons(rng, 50)
            request = pb.ComputeRequest(session_id=session, fetch=["logits"],
                                        mode=pb.MODE_EVAL)
            request.feeds["x"].CopyFrom(tensor(x))
            request.feeds["labels"].CopyFrom(tensor(labels))
            yield labels, request
    pending = list(batches())
    correct = 0
    for (labels, _), reply in zip(pending, rpc.ComputeStream(iter(r for _, r in pending),
                                                             timeout=60)):
        assert reply.code == 0, reply.error_message
        correct += int((array(reply.response.outputs["logits"]).argmax(1) == labels).sum())
    print(f"accuracy over 1000 held-out points: {correct / 1000:.1%}")

    rpc.CloseSession(session_pb2.CloseSessionRequest(session_id=session), timeout=30)


if __name__ == "__main__":
    main()
