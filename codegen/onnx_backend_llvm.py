"""An `onnx.backend.base.Backend` compiling each model for the llvm target, for ONNX's
conformance suite on native code (tests/test_onnx_conformance_llvm.py).

prepare() imports the model and compiles it to a native library in-process; run()
calls the whole-model entry through the serving runtime (`compiler.runtime`). No
reference-interpreter fallback: a model that cannot be compiled fails.

Native code needs static shapes, so graph inputs that feed shape-determining slots
(`OpDef.shape_inputs`: Reshape's shape, a reduction's axes, Slice's starts...) are
bound as constants: such a model is compiled at its first run, with those inputs' values
turned into initializers (recompiled if a later run brings other values). Every other
input stays a run-time input of the native entry.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import BackendRep

from ..frontend.onnx_import import import_onnx
from ..model import native_artifact
from ..onnx_backend import CPUBackend
from ..runtime.native import NativeModel
from ..ir.ops import REGISTRY
from . import lowering  # noqa: F401 - registers the rules the check below reads


def _compile(model: onnx.ModelProto) -> NativeModel:
    from ..native_build import build_native

    graph, build = build_native(import_onnx(model))
    manifest, sections = native_artifact(graph, build, "llvm", "conformance")
    return NativeModel(manifest, sections, where="conformance")


def shape_bound_inputs(model: onnx.ModelProto) -> list[str]:
    """Graph inputs read at a shape-determining slot of a lowerable op."""
    inputs = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        op = REGISTRY.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if op is None or op.lowering is None:
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


class LLVMRep(BackendRep):
    def __init__(self, model: onnx.ModelProto):
        self.onnx_model = model
        self.input_names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        self.bound = shape_bound_inputs(model)
        self.compiled: dict[bytes, NativeModel] = {}
        if not self.bound:
            self.compiled[b""] = _compile(model)

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
            self.compiled[key] = _compile(_with_constants(self.onnx_model, values))
        model = self.compiled[key]
        out = model.run(feeds)
        return tuple(out[s.name] for s in model.outputs)


class LLVMBackend(CPUBackend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> BackendRep:
        return LLVMRep(model)
