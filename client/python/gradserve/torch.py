"""gradserve.torch: run a PyTorch module (or a gradserve Graph) on a gradserve
server inside a local PyTorch autograd graph.

    import gradserve, gradserve.torch
    client = gradserve.Client("localhost:50051")
    remote = gradserve.torch.RemoteModule(client, block, example_input)
    y = head(remote(x))            # forward: one Forward call on the server
    loss_fn(y, t).backward()       # backward: one Backward on Forward's handle
    optimizer.step()               # block's parameters got their .grad from the server

The module is exported once with torch.onnx.export (in training mode, so
BatchNorm and Dropout stay, and follow module.train()/eval()) into a server-side
session; each call sends the input and the module's current parameter
values as feeds (so a local optimizer may change them between calls), asks
for the outputs, and keeps the activations under a handle that the backward
pass uses with the output gradients PyTorch hands it: dL/dinput and every
parameter's gradient come back. In training mode the BatchNorm running
statistics the server updates are copied into the module's buffers.

The parameters stay the module's own torch Parameters (remote.module), so
`optimizer = torch.optim.SGD(remote.parameters(), ...)` trains them."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from gradserve.graph import Graph, OnnxModel


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _tensor(a: np.ndarray, like: Optional[torch.Tensor] = None) -> torch.Tensor:
    out = torch.from_numpy(np.array(a))  # a writable copy of the reply's bytes
    return out if like is None else out.to(like.device)


class _RemoteCall(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, remote: "RemoteModule", n_inputs: int,
                *tensors: torch.Tensor) -> Any:
        inputs, params = tensors[:n_inputs], tensors[n_inputs:]
        feeds: Dict[str, Any] = {n: _numpy(t) for n, t in zip(remote.input_names, inputs)}
        feeds.update({n: _numpy(p) for n, p in zip(remote.parameter_names, params)})
        feeds.update({n: _numpy(b) for n, b in remote._buffers_by_name.items()})
        wrt = [n for n, t in zip(remote.input_names, inputs) if t.requires_grad]
        wrt += [n for n, p in zip(remote.parameter_names, params) if p.requires_grad]
        mode = "train" if remote.training else "eval"
        seed = int(torch.randint(0, 2**62, ()).item())
        if wrt:
            activation = remote.client.forward(remote.session, feeds, fetch=remote.output_names,
                                               wrt=wrt, loss="", mode=mode, seed=seed,
                                               ttl_seconds=remote.ttl_seconds)
            outputs, buffers = activation.outputs, activation.buffers
        else:
            result = remote.client.compute(remote.session, feeds, fetch=remote.output_names,
                                           loss="", mode=mode, seed=seed)
            activation, outputs, buffers = None, result.outputs, result.buffers
        remote._update_buffers(buffers)
        ctx.remote, ctx.activation, ctx.wrt = remote, activation, wrt
        ctx.names = list(remote.input_names) + list(remote.parameter_names)
        ctx.likes = tensors
        results = tuple(_tensor(outputs[n], inputs[0] if inputs else None)
                        for n in remote.output_names)
        return results if len(results) > 1 else results[0]

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        remote = ctx.remote
        seeds = {n: _numpy(g) for n, g in zip(remote.output_names, grads) if g is not None}
        gradients = ctx.activation.backward(seeds, from_loss=False, wrt=ctx.wrt)
        ctx.activation = None
        out: List[Optional[torch.Tensor]] = [None, None]
        for name, like in zip(ctx.names, ctx.likes):
            out.append(_tensor(gradients[name], like).to(like.dtype)
                       if name in gradients else None)
        return tuple(out)


class RemoteModule(torch.nn.Module):
    """A module whose forward and backward passes run on a gradserve server.

    client: a gradserve.Client. module: a torch.nn.Module (exported through
    ONNX at `example_inputs`, a tensor or a tuple of them) or a
    gradserve.Graph (with `input_names` and `output_names`). Calls take the
    inputs positionally and return one tensor, or a tuple for several
    outputs. ttl_seconds: how long the server keeps a Forward's activations
    for the backward pass (0 = its default)."""

    def __init__(self, client: Any, module: Union[torch.nn.Module, Graph],
                 example_inputs: Any = None, *, input_names: Optional[Sequence[str]] = None,
                 output_names: Optional[Sequence[str]] = None, opset: int = 14,
                 ttl_seconds: int = 0):
        super().__init__()
        self.client = client
        self.ttl_seconds = ttl_seconds
        if isinstance(module, Graph):
            self._from_graph(module, input_names, output_names)
        else:
            self._from_module(module, example_inputs, input_names, output_names, opset)
        self.session = client.session(self._model)
        if self.module is not None:
            self.train(self.module.training)  # the module's mode, until told otherwise

    def _from_module(self, module: torch.nn.Module, example_inputs: Any,
                     input_names: Optional[Sequence[str]],
                     output_names: Optional[Sequence[str]], opset: int) -> None:
        if example_inputs is None:
            raise ValueError("a torch module needs example_inputs to export it")
        args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
        self.input_names = list(input_names or [f"input{i}" for i in range(len(args))])
        if output_names is None:
            # Counting the outputs runs forward: in training mode that would
            # move BatchNorm's running statistics.
            state = {k: v.clone() for k, v in module.state_dict().items()}
            with torch.no_grad():
                outputs = module(*args)
            module.load_state_dict(state)
            count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
            output_names = [f"output{i}" for i in range(count)]
        self.output_names = list(output_names)
        self._model = OnnxModel.from_torch(module, args, self.input_names, self.output_names,
                                           opset=opset)
        self.module = module
        self.parameter_names = [n for n, _ in module.named_parameters()]
        self._parameters_list = [p for _, p in module.named_parameters()]
        initializers = self._exported_initializers()
        # Float buffers the model reads (running statistics) are fed with
        # every call too, so the module's own buffers are what the server uses.
        self._buffers_by_name = {n: b for n, b in module.named_buffers()
                                 if n in initializers and b.is_floating_point()}

    def _from_graph(self, graph: Graph, input_names: Optional[Sequence[str]],
                    output_names: Optional[Sequence[str]]) -> None:
        self.input_names = list(input_names or graph.inputs)
        self.output_names = list(output_names or graph.proto.outputs)
        if not self.output_names:
            raise ValueError("name the outputs (output_names=, or graph.output())")
        self._model = graph
        self.module = None
        self.parameter_names = sorted(graph.proto.parameters)
        self.graph_parameters = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.from_numpy(np.array(graph.parameters[n])))
             for n in self.parameter_names])
        self._parameters_list = list(self.graph_parameters)
        self._buffers_by_name = {}

    def _exported_initializers(self) -> set:
        """The exported model's initializer names; every parameter must be one
        under its own name (the feeds that override it use that name)."""
        import onnx
        model = onnx.load_model_from_string(self._model.data)
        initializers = {i.name for i in model.graph.initializer}
        missing = [n for n in self.parameter_names if n not in initializers]
        if missing:
            raise ValueError(f"parameters not exported under their names: {missing} "
                             "(a parameter used twice or folded away by the export)")
        return initializers

    def _update_buffers(self, buffers: Dict[str, np.ndarray]) -> None:
        if not self.training or not buffers:
            return
        with torch.no_grad():
            for name, value in buffers.items():
                if name in self._buffers_by_name:
                    self._buffers_by_name[name].copy_(torch.from_numpy(np.array(value)))
            for sub in (self.module.modules() if self.module is not None else ()):
                if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm) and \
                        sub.num_batches_tracked is not None:
                    sub.num_batches_tracked += 1

    def forward(self, *inputs: torch.Tensor) -> Any:
        if len(inputs) != len(self.input_names):
            raise TypeError(f"expected {len(self.input_names)} input(s) "
                            f"({', '.join(self.input_names)}), got {len(inputs)}")
        return _RemoteCall.apply(self, len(inputs), *inputs, *self._parameters_list)

    def close(self) -> None:
        """Closes the server-side session."""
        self.session.close()
