"""An `onnx.backend.base.Backend` that runs models through our pipeline, for ONNX's
conformance suite (`onnx.backend.test.BackendTest`).

`backend_for(target)` returns a Backend class bound to one target (any in the registry):
prepare() imports the model and compiles it as `compiler.compile` does; run() calls the
compiled model. On the reference target the interpreter checks every value against its
inferred type, so the suite tests our type inference as well as our references.

A target whose code needs static shapes gets graph inputs that feed shape-determining
slots (`OpDef.shape_inputs`: Reshape's shape, a reduction's axes, Slice's starts...)
bound as constants: such a model is compiled at its first run, with those inputs' values
turned into initializers (recompiled if a later run brings other values). Every other
input stays a run-time input.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.backend.base import Backend, BackendRep

from .backends import BuildOptions, Target, parse_target
from .frontend.onnx_import import import_onnx
from .ir.ops import REGISTRY


def shape_bound_inputs(model: onnx.ModelProto) -> list[str]:
    """Graph inputs read at a shape-determining slot (of an op with native code, or one that
    folds away once they are known: Range, ConstantOfShape)."""
    inputs = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        op = REGISTRY.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if op is None:
            continue
        for slot in op.shape_input_slots:
            if slot < len(node.input) and node.input[slot] in inputs and node.input[slot] not in found:
                found.append(node.input[slot])
    return found


def _with_constants(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    bound = onnx.ModelProto()
    bound.CopyFrom(model)
    kept = [i for i in bound.graph.input if i.name not in values]
    del bound.graph.input[:]
    bound.graph.input.extend(kept)
    bound.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in values.items())
    return bound


class CompiledRep(BackendRep):
    """One model compiled for one target (per set of bound shape inputs)."""

    def __init__(self, model: onnx.ModelProto, target: Target):
        self.onnx_model = model
        self.target = target
        self.input_names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        self.bound = shape_bound_inputs(model) if target.backend.static_shapes else []
        self.compiled: dict[bytes, Any] = {}
        if not self.bound:
            self.compiled[b""] = self._compile(model)

    def _compile(self, model: onnx.ModelProto):
        options = BuildOptions(check_types=True)
        backend = self.target.backend
        return backend.compile_model(import_onnx(model, inline=backend.inlined_ops()), self.target, options,
                                     "conformance")

    def run(self, inputs: Any, **kwargs) -> tuple:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if not isinstance(inputs, (list, tuple)):
                inputs = [inputs]
            feeds = dict(zip(self.input_names, inputs))
        values = {k: np.asarray(feeds.pop(k)) for k in self.bound}
        key = b"".join(v.tobytes() + str(v.shape).encode() for v in values.values())
        if key not in self.compiled:
            self.compiled[key] = self._compile(_with_constants(self.onnx_model, values))
        model = self.compiled[key]
        out = model.run(feeds)
        return tuple(out[s.name] for s in model.outputs)


def _one_node_model(node: onnx.NodeProto, inputs: list, opset: int | None) -> onnx.ModelProto:
    feeds = [(name, np.asarray(x)) for name, x in zip(node.input, inputs) if name]
    graph = helper.make_graph(
        [node], f"{node.op_type}_node",
        [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape) for name, x in feeds],
        [helper.make_empty_tensor_value_info(o) for o in node.output if o])
    opsets = [helper.make_opsetid(node.domain, opset or onnx.defs.onnx_opset_version())]
    return helper.make_model(graph, opset_imports=opsets)


class CompiledBackend(Backend):
    """What every target's conformance backend shares; `backend_for` binds the target."""

    target: Target

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> bool:
        return True

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> BackendRep:
        return CompiledRep(model, cls.target)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        """One node on numpy inputs, as a one-node model (of `opset_version`, else the newest)."""
        model = _one_node_model(node, list(inputs), kwargs.get("opset_version"))
        return cls.prepare(model, device).run(list(x for name, x in zip(node.input, inputs) if name))


def backend_for(target: str = "reference") -> type[Backend]:
    """The conformance Backend class that compiles for `target` (any target in the registry)."""
    tgt = parse_target(target)
    return type(f"{tgt.kind.capitalize()}ConformanceBackend", (CompiledBackend,), {"target": tgt})
