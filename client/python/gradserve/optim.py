"""Optimizers for sessions, exactly torch.optim 1.13's (the server applies them).

    client.session(graph, optimizer=gradserve.SGD(lr=0.1, momentum=0.9))
    client.session(graph, optimizer=gradserve.Adam(lr=1e-3), max_grad_norm=1.0)

Unset Adam fields take torch's defaults on the server (lr 1e-3, betas
(0.9, 0.999), eps 1e-8, weight_decay 0 for Adam and 1e-2 for AdamW)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from gradserve.v1 import session_pb2


@dataclass(frozen=True)
class SGD:
    """torch.optim.SGD (lr is required)."""

    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    def to_proto(self, max_grad_norm: float = 0.0) -> session_pb2.Optimizer:
        return session_pb2.Optimizer(
            sgd=session_pb2.SGD(lr=self.lr, momentum=self.momentum, dampening=self.dampening,
                                weight_decay=self.weight_decay, nesterov=self.nesterov),
            max_grad_norm=max_grad_norm)


@dataclass(frozen=True)
class Adam:
    """torch.optim.Adam; None = torch's default."""

    lr: Optional[float] = None
    betas: Optional[Tuple[float, float]] = None
    eps: Optional[float] = None
    weight_decay: Optional[float] = None
    amsgrad: bool = False

    decoupled_weight_decay = False

    def to_proto(self, max_grad_norm: float = 0.0) -> session_pb2.Optimizer:
        adam = session_pb2.Adam(amsgrad=self.amsgrad,
                                decoupled_weight_decay=self.decoupled_weight_decay)
        if self.lr is not None:
            adam.lr = self.lr
        if self.betas is not None:
            adam.beta1, adam.beta2 = self.betas
        if self.eps is not None:
            adam.eps = self.eps
        if self.weight_decay is not None:
            adam.weight_decay = self.weight_decay
        return session_pb2.Optimizer(adam=adam, max_grad_norm=max_grad_norm)


@dataclass(frozen=True)
class AdamW(Adam):
    """torch.optim.AdamW (weight_decay defaults to 1e-2)."""

    decoupled_weight_decay = True


Optimizer = object  # SGD, Adam or AdamW: anything with to_proto(max_grad_norm)
