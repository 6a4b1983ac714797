"""An `onnx.backend.base.Backend` that runs models through our pipeline, for ONNX's
conformance suite (`onnx.backend.test.BackendTest`).

`backend_for(target)` returns a Backend class bound to one target; the reference
target imports and runs the graph on the numpy interpreter with run-time type checks,
so the suite tests our type inference as well as our references.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep

from .frontend.onnx_import import import_onnx
from .ir.interpreter import Interpreter


class ReferenceRep(BackendRep):
    def __init__(self, graph):
        self.graph = graph
        self.interpreter = Interpreter(check_types=True)

    def run(self, inputs: Any, **kwargs) -> tuple:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if not isinstance(inputs, (list, tuple)):
                inputs = [inputs]
            feeds = {v.name: x for v, x in zip(self.graph.inputs, inputs)}
        out = self.interpreter.run(self.graph, feeds)
        return tuple(out[v.name] for v in self.graph.outputs)


def _one_node_model(node: onnx.NodeProto, inputs: list, opset: int | None) -> onnx.ModelProto:
    feeds = [(name, np.asarray(x)) for name, x in zip(node.input, inputs) if name]
    graph = helper.make_graph(
        [node], f"{node.op_type}_node",
        [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape) for name, x in feeds],
        [helper.make_empty_tensor_value_info(o) for o in node.output if o])
    opsets = [helper.make_opsetid(node.domain, opset or onnx.defs.onnx_opset_version())]
    return helper.make_model(graph, opset_imports=opsets)


class CPUBackend(Backend):
    """What every target's conformance backend shares; subclasses say how to `prepare`."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> bool:
        return True

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        """One node on numpy inputs, as a one-node model (of `opset_version`, else the newest)."""
        model = _one_node_model(node, list(inputs), kwargs.get("opset_version"))
        return cls.prepare(model, device).run(list(x for name, x in zip(node.input, inputs) if name))


class ReferenceBackend(CPUBackend):
    """Imports the model and runs it on the reference interpreter with run-time type checks."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> BackendRep:
        return ReferenceRep(import_onnx(model))


def backend_for(target: str = "reference") -> type[Backend]:
    """The Backend class that compiles for `target` (`reference` or `llvm`)."""
    if target == "llvm":
        from .codegen.onnx_backend_llvm import LLVMBackend

        return LLVMBackend
    if target != "reference":
        raise ValueError(f"no conformance backend for target {target!r}; known: reference, llvm")
    return ReferenceBackend
