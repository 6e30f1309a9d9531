"""gradserve: forward and backward passes of neural-network graphs on a
gradserve server, NumPy in and out.

    import numpy as np, gradserve
    g = gradserve.Graph()
    x, t = g.input("x", [32, 4]), g.input("t", [32, 1])
    y = g.linear(g.relu(g.linear(x, g.parameter("W1", w1), g.parameter("b1", b1))),
                 g.parameter("W2", w2))
    g.mse_loss(y, t)
    with gradserve.Client("localhost:50051") as client, \\
            client.session(g, optimizer=gradserve.SGD(lr=0.1, momentum=0.9)) as s:
        print(s.train_step({"x": xs, "t": ts}).loss)

Client (calls, retries, typed errors), Graph (builder and files), Session
(training, checkpoints, Forward/Backward handles, analysis), SGD/Adam/AdamW,
and gradserve.torch (import it explicitly: a torch.nn.Module run on the
server inside PyTorch's autograd). The generated stubs are gradserve.v1."""

from gradserve.client import TLS, Client, RetryPolicy, retryable
from gradserve.errors import (Aborted, AlreadyExists, Cancelled, DataLoss, DeadlineExceeded,
                              Error, FailedPrecondition, Internal, InvalidArgument, NotFound,
                              OutOfRange, PermissionDenied, ResourceExhausted, Unauthenticated,
                              Unavailable, Unimplemented, Unknown)
from gradserve.graph import Graph, OnnxModel, Value
from gradserve.optim import SGD, Adam, AdamW
from gradserve.results import (Activation, ComputeResult, Description, GradientCheck,
                               HessianEigenvalues, ServerInfo, StepResult)
from gradserve.session import Session

__version__ = "0.1.0"

__all__ = [
    "Client", "TLS", "RetryPolicy", "retryable", "Graph", "OnnxModel", "Value", "Session",
    "SGD", "Adam", "AdamW", "Activation", "ComputeResult", "Description", "GradientCheck",
    "HessianEigenvalues", "ServerInfo", "StepResult", "Error", "Aborted", "AlreadyExists",
    "Cancelled", "DataLoss", "DeadlineExceeded", "FailedPrecondition", "Internal",
    "InvalidArgument", "NotFound", "OutOfRange", "PermissionDenied", "ResourceExhausted",
    "Unauthenticated", "Unavailable", "Unimplemented", "Unknown",
]
