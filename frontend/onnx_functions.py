"""ONNX function ops: an op the registry lacks but whose schema defines it as a function of
other ops (or a model-local function) is expanded into that body at import.

`FunctionLibrary` answers two questions: can this (domain, op, opset) be expanded at
all (asked up front, to report every unsupported op at once), and what is its body for
one concrete node (asked while importing; context-dependent bodies need the input types).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import onnx
import onnx.defs
from onnx import helper, numpy_helper

from ..ir.dtypes import DType
from ..ir.types import TensorType

DYNAMIC = "dynamic"  # the body depends on the node (context-dependent function): known only per node


def _normal_domain(domain: str) -> str:
    return "" if domain == "ai.onnx" else domain


def function_opsets(fn: onnx.FunctionProto, outer: Mapping[str, int]) -> dict[str, int]:
    """The opsets a function body's nodes are written against (the model's, where it names none)."""
    opsets = dict(outer)
    opsets.update({_normal_domain(o.domain): int(o.version) for o in fn.opset_import})
    return opsets


def _schema(domain: str, op_type: str, opset: int | None):
    try:
        if opset is None:
            return onnx.defs.get_schema(op_type, domain=domain)
        return onnx.defs.get_schema(op_type, opset, domain)
    except onnx.defs.SchemaError:
        return None


def _pick_version(versions, opset: int) -> int | None:
    """The newest body written for this opset or earlier; else the oldest one there is
    (a body from a later opset still defines the same op where the op did not change)."""
    versions = sorted(versions)
    if not versions:
        return None
    older = [v for v in versions if v <= opset]
    return older[-1] if older else versions[0]


class FunctionLibrary:
    """Function bodies from ONNX's schemas and from the model's own `functions`."""

    def __init__(self, local: list[onnx.FunctionProto] = ()):
        self.local = {(_normal_domain(f.domain), f.name): f for f in local}

    def static_body(self, domain: str, op_type: str, opset: int | None):
        """The body as a FunctionProto, DYNAMIC when it depends on the node, None when there is none."""
        if (domain, op_type) in self.local:
            return self.local[(domain, op_type)]
        schema = _schema(domain, op_type, opset)
        if schema is None:
            return None
        version = _pick_version(schema.function_opset_versions, opset or schema.since_version)
        if version is not None:
            fn = onnx.FunctionProto()
            fn.ParseFromString(schema.get_function_with_opset_version(version))
            return fn
        if schema.has_context_dependent_function:
            return DYNAMIC
        return None

    def body_for(self, domain: str, op_type: str, opset: int | None, inputs: list, attrs: dict[str, Any],
                 num_outputs: int) -> onnx.FunctionProto | None:
        """The body for one node: `inputs` are IR values (None when missing), `attrs` decoded."""
        body = self.static_body(domain, op_type, opset)
        if body is not DYNAMIC:
            return body
        schema = _schema(domain, op_type, opset)
        in_names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
        try:
            node = helper.make_node(op_type, in_names, [f"out{i}" for i in range(num_outputs)], domain=domain,
                                    **{k: _encodable(v) for k, v in attrs.items()})
            types = [_type_proto(v).SerializeToString() for v in inputs]
            versions = schema.context_dependent_function_opset_versions
            version = _pick_version(versions, opset or schema.since_version) or schema.since_version
            data = schema.get_context_dependent_function_with_opset_version(version, node.SerializeToString(), types)
        except (TypeError, ValueError, RuntimeError, onnx.defs.SchemaError):
            return None
        if not data:
            return None
        fn = onnx.FunctionProto()
        fn.ParseFromString(data)
        return fn if fn.node else None

    def attribute_defaults(self, domain: str, op_type: str, opset: int | None, fn: onnx.FunctionProto) -> dict:
        """Defaults for attributes the body refers to but the node does not set."""
        defaults = {a.name: a for a in fn.attribute_proto}
        schema = None if (domain, op_type) in self.local else _schema(domain, op_type, opset)
        if schema is not None:
            for name, spec in schema.attributes.items():
                if spec.default_value.name and name not in defaults:
                    defaults[name] = spec.default_value
        return defaults


def _encodable(value):
    """A decoded attribute back in a form `helper.make_attribute` takes."""
    if isinstance(value, DType):
        return value.onnx
    if isinstance(value, np.ndarray):
        return numpy_helper.from_array(value)
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return [numpy_helper.from_array(v) for v in value]
    return value


def _type_proto(v) -> onnx.TypeProto:
    """An IR value's type for schema functions that depend on input types."""
    if v is None or not isinstance(v.type, TensorType):
        return onnx.TypeProto()
    shape = None if v.type.shape is None else [d for d in v.type.shape]
    return helper.make_tensor_type_proto(v.type.dtype.onnx, shape)
