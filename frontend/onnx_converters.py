"""ONNX nodes that do not map one-to-one onto a registry op of the same name.

`CONVERTERS[(domain, op_type)]` is a function `(ctx, inputs, attrs) -> outputs` that
emits IR nodes through `ctx`. ONNX-only constructs (Constant) become IR constants here;
the rewrites of older opsets into the newest semantics live in `onnx_legacy` and are
merged into the same table below, so the importer has one place to look.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..ir import dtypes
from ..ir.builder import GraphBuilder
from ..ir.errors import ShapeInferenceError
from ..ir.graph import Value
from ..ir.ops import REGISTRY
from ..ir.types import TensorType

NEWEST = None  # `opset=NEWEST` in ImportContext.emit: the node is already in the newest form


class ImportContext:
    """What a converter sees of the ONNX node it converts, and how it emits IR.

    `expand` is the importer's fallback for ops the registry lacks: it inlines the op's
    ONNX function body (the importer supplies it; None means no fallback).
    """

    def __init__(self, builder: GraphBuilder, node_name: str, domain: str, op_type: str, opset: int,
                 output_names: list[str], expand: Callable | None = None):
        self.builder = builder
        self.node_name = node_name
        self.domain = domain
        self.op_type = op_type
        self.opset = opset
        self.output_names = output_names
        self._expand = expand

    def emit(self, op: str, inputs: list[Value | None], attrs: dict[str, Any] | None = None, *,
             num_outputs: int = 1, output_names: list[str] | None = None, opset: int | None = NEWEST) -> list[Value]:
        """Add one IR node. Attributes are coerced to the op's declared kinds (dtype ints -> DType).

        An op the registry lacks is expanded into its ONNX function body, taken at `opset`
        (the newest when None: converters emit ops in their newest form).
        """
        names = None
        if output_names is not None:
            names = [n if n else f"{self.node_name}_unused{i}" for i, n in enumerate(output_names)]
        if op not in REGISTRY and self._expand is not None:
            return self._expand(self, op, inputs, dict(attrs or {}), num_outputs, names, opset)
        try:
            attrs = coerce_attrs(op, dict(attrs or {}))
        except ValueError as e:  # an element type attribute ONNX does not define (Cast to=123)
            raise self.error(str(e)) from None
        return self.builder.node(op, inputs, attrs, name=self.node_name, num_outputs=num_outputs, output_names=names)

    def emit_same(self, inputs: list[Value | None], attrs: dict[str, Any], op: str | None = None,
                  upgraded: bool = False) -> list[Value]:
        """Emit the node with all its outputs under the model's output names: as it stands,
        or `upgraded` by a converter into the newest form (which then picks the function
        body used if the registry lacks the op)."""
        return self.emit(op or self.op_type, inputs, attrs, num_outputs=len(self.output_names),
                         output_names=list(self.output_names), opset=NEWEST if upgraded else self.opset)

    def emit1(self, op: str, *inputs: Value | None, **attrs) -> Value:
        """Shorthand for an intermediate single-output node."""
        return self.emit(op, list(inputs), attrs)[0]

    def const(self, array, name: str = "const") -> Value:
        return self.builder.const(np.asarray(array), name)

    def ints(self, values) -> Value:
        """An int64 1-D constant (axes, pads, shapes)."""
        return self.const(np.asarray(list(values), dtype=np.int64))

    def scalar_like(self, value, like: Value) -> Value:
        """A 0-d constant of `like`'s element type."""
        return self.const(np.asarray(value, dtype=tensor_type(like, self).dtype.numpy))

    def error(self, message: str) -> ShapeInferenceError:
        return ShapeInferenceError(f"node '{self.node_name}' ({self.op_type}, opset {self.opset}): {message}")


def tensor_type(v: Value, ctx: ImportContext) -> TensorType:
    if not isinstance(v.type, TensorType):
        raise ctx.error(f"expected a tensor, got {v.type}")
    return v.type


def coerce_attrs(op: str, attrs: dict[str, Any]) -> dict[str, Any]:
    opdef = REGISTRY.get(op)
    if opdef is None:
        return attrs
    for key, value in list(attrs.items()):
        spec = opdef.attrs.get(key)
        if spec is None:
            continue
        if spec.kind == "dtype" and isinstance(value, (int, np.integer)):
            try:
                attrs[key] = dtypes.from_onnx(int(value))
            except ValueError:
                raise ValueError(f"attribute '{key}' = {value} is not an ONNX element type") from None
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


def _build_table() -> dict[tuple[str, str], Converter]:
    from .onnx_legacy import LEGACY_CONVERTERS

    table: dict[tuple[str, str], Converter] = {
        ("", "Constant"): convert_constant,  # a value, not a computation
    }
    for key, fn in LEGACY_CONVERTERS.items():
        if key in table:
            raise RuntimeError(f"two converters for {key}")
        table[key] = fn
    return table


CONVERTERS: dict[tuple[str, str], Converter] = _build_table()
