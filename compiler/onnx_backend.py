"""An `onnx.backend.base.Backend` that runs models through our pipeline, for ONNX's
conformance suite (`onnx.backend.test.BackendTest`).

`backend_for(target)` returns a Backend class bound to one target; the reference
target imports and runs the graph on the numpy interpreter with run-time type checks,
so the suite tests our type inference as well as our references.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
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


def backend_for(target: str = "reference") -> type[Backend]:
    """A Backend class that compiles for `target`."""

    class CompilerBackend(Backend):
        @classmethod
        def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> bool:
            return True

        @classmethod
        def supports_device(cls, device: str) -> bool:
            return device == "CPU"

        @classmethod
        def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> BackendRep:
            graph = import_onnx(model)
            if target == "reference":
                return ReferenceRep(graph)
            raise NotImplementedError(f"target {target!r} is not available in the conformance backend yet")

        @classmethod
        def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
            raise NotImplementedError("node-level runs go through prepare() on a one-node model")

    CompilerBackend.__name__ = f"CompilerBackend_{target}"
    return CompilerBackend
