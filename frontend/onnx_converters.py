"""ONNX nodes that do not map one-to-one onto a registry op of the same name.

`CONVERTERS[(domain, op_type)]` is a function `(ctx, inputs, attrs) -> outputs` that
emits IR nodes through `ctx`. This is where older opsets are rewritten into the
newest semantics (attributes that later became inputs, changed defaults) and where
ONNX-only constructs (Constant) become IR constants.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..ir import dtypes
from ..ir.builder import GraphBuilder
from ..ir.errors import ShapeInferenceError
from ..ir.graph import Value
from ..ir.ops import REGISTRY


class ImportContext:
    """What a converter sees of the ONNX node it converts, and how it emits IR."""

    def __init__(self, builder: GraphBuilder, node_name: str, domain: str, op_type: str, opset: int,
                 output_names: list[str]):
        self.builder = builder
        self.node_name = node_name
        self.domain = domain
        self.op_type = op_type
        self.opset = opset
        self.output_names = output_names

    def emit(self, op: str, inputs: list[Value | None], attrs: dict[str, Any] | None = None, *,
             num_outputs: int = 1, output_names: list[str] | None = None) -> list[Value]:
        """Add one IR node. Attributes are coerced to the op's declared kinds (dtype ints -> DType)."""
        attrs = coerce_attrs(op, dict(attrs or {}))
        names = None
        if output_names is not None:
            names = [n if n else f"{self.node_name}_unused{i}" for i, n in enumerate(output_names)]
        return self.builder.node(op, inputs, attrs, name=self.node_name, num_outputs=num_outputs, output_names=names)

    def const(self, array, name: str = "const") -> Value:
        return self.builder.const(np.asarray(array), name)

    def error(self, message: str) -> ShapeInferenceError:
        return ShapeInferenceError(f"node '{self.node_name}' ({self.op_type}, opset {self.opset}): {message}")


def coerce_attrs(op: str, attrs: dict[str, Any]) -> dict[str, Any]:
    opdef = REGISTRY.get(op)
    if opdef is None:
        return attrs
    for key, value in list(attrs.items()):
        spec = opdef.attrs.get(key)
        if spec is None:
            continue
        if spec.kind == "dtype" and isinstance(value, (int, np.integer)):
            attrs[key] = dtypes.from_onnx(int(value))
        elif spec.kind == "float" and isinstance(value, int):
            attrs[key] = float(value)
        elif spec.kind == "floats" and isinstance(value, list):
            attrs[key] = [float(x) for x in value]
    return attrs


Converter = Callable[[ImportContext, list, dict], list]


def convert_constant(ctx: ImportContext, inputs, attrs):
    """Constant nodes become IR constants (value, or the value_* shorthand attributes)."""
    if "value" in attrs:
        arr = np.asarray(attrs["value"])
    elif "value_float" in attrs:
        arr = np.array(attrs["value_float"], dtype=np.float32)
    elif "value_floats" in attrs:
        arr = np.array(attrs["value_floats"], dtype=np.float32)
    elif "value_int" in attrs:
        arr = np.array(attrs["value_int"], dtype=np.int64)
    elif "value_ints" in attrs:
        arr = np.array(attrs["value_ints"], dtype=np.int64)
    elif "value_string" in attrs:
        arr = np.array(attrs["value_string"], dtype=object)
    elif "value_strings" in attrs:
        arr = np.array(attrs["value_strings"], dtype=object)
    elif "sparse_value" in attrs:
        arr = np.asarray(attrs["sparse_value"])
    else:
        raise ctx.error("has no value attribute")
    return [ctx.const(arr, ctx.output_names[0] if ctx.output_names else "const")]


CONVERTERS: dict[tuple[str, str], Converter] = {
    ("", "Constant"): convert_constant,  # a value, not a computation
}
