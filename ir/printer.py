"""The IR's text form, printing side. `ir.parser.parse_graph` reads it back.

    graph main(%x: f32[batch,4]) {
      %w: f32[4,4] = const blob
      %b: f32[4] = const [0.0, 1.0, 2.0, 3.0]
      %y: f32[batch,4] = MatMul(%x, %w) @mm
      %z: f32[batch,4] = Add(%y, %b) @add
      return %z
    }

Small constants print inline; larger ones print as `blob` (the parser takes their
arrays by name) or, with `embed_constants=True`, as base64 of their bytes so the text
alone round-trips. Node names follow `@`. Attributes are `{key=value, ...}`.
"""
from __future__ import annotations

import base64
import json
import math
import re

import numpy as np

from .dtypes import DType
from .graph import Graph, Node, Value
from .types import OptionalType, SequenceType, TensorType

INLINE_CONST_LIMIT = 16
_SIMPLE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def name_text(name: str) -> str:
    return name if _SIMPLE_NAME.match(name) else json.dumps(name)


def type_text(t) -> str:
    if isinstance(t, TensorType):
        return str(t)
    if isinstance(t, SequenceType):
        return f"seq<{type_text(t.elem)}>"
    if isinstance(t, OptionalType):
        return f"opt<{type_text(t.elem)}>"
    raise TypeError(f"no text form for type {t!r}")


def _scalar_text(x, dtype: DType) -> str:
    if dtype.kind == "string":
        return json.dumps(x.decode("utf-8", "surrogateescape") if isinstance(x, bytes) else str(x))
    if dtype.kind == "bool":
        return "true" if x else "false"
    if dtype.kind == "float":
        f = float(x)
        if math.isnan(f) or math.isinf(f):
            return _float_text(f)
        # numpy prints the shortest text that reads back to the same value *in this dtype*
        # (0.01 rather than float32's 0.009999999776482582).
        text = str(dtype.numpy.type(x))
        return text if any(c in text for c in ".e") else text + ".0"
    return str(int(x))


def _float_text(f: float) -> str:
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return repr(f)


def array_text(arr: np.ndarray, dtype: DType, embed: bool) -> str:
    """Inline literal `[1, 2]`, base64 `b64"..."`, or `blob` (data kept outside the text)."""
    # Strings always print inline: they have no raw-bytes form to embed.
    if dtype.kind == "string" or (arr.size <= INLINE_CONST_LIMIT and dtype.kind in ("float", "int", "uint", "bool")
                                  and dtype.bits >= 8):
        return "[" + ", ".join(_scalar_text(x, dtype) for x in arr.reshape(-1)) + "]"
    if embed:
        return 'b64"' + base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode() + '"'
    return "blob"


def attr_text(value, indent: str, embed: bool) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bytes):
        return json.dumps(value.decode("utf-8", "surrogateescape"))
    if isinstance(value, DType):
        return f"dtype({value.short})"
    if isinstance(value, (TensorType, SequenceType, OptionalType)):
        return f"type({type_text(value)})"
    if isinstance(value, np.ndarray):
        from . import dtypes

        dt = dtypes.from_numpy(value.dtype)
        return f"tensor<{TensorType(value.shape, dt)}>{array_text(value, dt, embed=True)}"
    if isinstance(value, Graph):
        return _graph_text(value, indent, embed)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(attr_text(v, indent, embed) for v in value) + "]"
    raise TypeError(f"no text form for attribute value {value!r}")


def _value_decl(v: Value) -> str:
    return f"%{name_text(v.name)}: {type_text(v.type)}"


def _node_text(node: Node, indent: str, embed: bool) -> str:
    outs = ", ".join(_value_decl(v) for v in node.outputs)
    ins = ", ".join("_" if v is None else f"%{name_text(v.name)}" for v in node.inputs)
    text = f"{outs} = {node.op}({ins})"
    if node.attrs:
        text += " {" + ", ".join(f"{k}={attr_text(v, indent, embed)}" for k, v in sorted(node.attrs.items())) + "}"
    if node.name:
        text += f" @{name_text(node.name)}"
    return text


def _graph_text(graph: Graph, indent: str, embed: bool) -> str:
    inner = indent + "  "
    lines = [f"graph {name_text(graph.name)}(" + ", ".join(_value_decl(v) for v in graph.inputs) + ") {"]
    for c in graph.constants:
        lines.append(f"{inner}{_value_decl(c)} = const {array_text(c.const, c.type.dtype, embed)}")
    for n in graph.nodes:
        lines.append(inner + _node_text(n, inner, embed))
    lines.append(inner + "return " + ", ".join(f"%{name_text(v.name)}" for v in graph.outputs))
    lines.append(indent + "}")
    return "\n".join(lines)


def print_graph(graph: Graph, embed_constants: bool = False) -> str:
    """The graph as stable, readable text (parse it back with `ir.parser.parse_graph`)."""
    return _graph_text(graph, "", embed_constants) + "\n"
