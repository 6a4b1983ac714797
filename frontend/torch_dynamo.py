"""What the torch.compile backend needs to know about the graphs Dynamo hands it.

Dynamo (torch >= 2.5, `inline_inbuilt_nn_modules`) lifts a module's parameters and buffers
into graph inputs. For inference we freeze them into IR constants, as inductor's
`freezing` does, so the compiled code sees weights at compile time (BatchNorm folding,
pre-transposed matmul weights). Dynamo's guards keep the identity of these tensors, so a
model whose weights are replaced gets a new graph; in-place weight updates are not seen.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.fx


def _source_chain(source) -> list:
    chain = []
    while source is not None:
        chain.append(source)
        source = getattr(source, "base", None)
    return chain


def _is_module_state(node: torch.fx.Node, example) -> bool:
    """A placeholder that holds a parameter or buffer of the compiled module (not a user input)."""
    if isinstance(example, torch.nn.Parameter):
        return True
    grapharg = node.meta.get("grapharg")
    source = getattr(grapharg, "source", None)
    names = {type(s).__name__ for s in _source_chain(source)}
    # Parameters and buffers of inlined modules come from these sources; user tensors from LocalSource.
    return bool(names & {"UnspecializedParamBufferSource", "ParamBufferSource", "NNModuleSource",
                         "UnspecializedNNModuleSource", "UnspecializedBuiltinNNModuleSource"}) \
        and not getattr(source, "is_input", False)


def frozen_positions(gm: torch.fx.GraphModule, example_inputs: Sequence) -> list[int]:
    """Positions of the placeholders that are module parameters/buffers (frozen into constants)."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    return [i for i, (n, ex) in enumerate(zip(placeholders, example_inputs))
            if isinstance(ex, torch.Tensor) and _is_module_state(n, ex)]


def is_fake(example) -> bool:
    """FakeTensors carry shapes but no data: nothing can be frozen or run with them."""
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(example, FakeTensor)
