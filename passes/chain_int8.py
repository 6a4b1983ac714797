"""int8 chains: a product whose every reader is an int8 product hands them uint8 codes.

After `lower_precision("int8")` each int8 product quantizes its float32 activation as it
packs it. Where a product's output is read only by int8 products (VGG's conv -> conv,
SqueezeNet's squeeze conv -> both expand convs, a conv feeding the next stage's convs), all
of them quantize it with the same (scale, zero point) - the ranges belong to the value - so
the producer can do it once, in its epilogue: it gets out_scale / out_zero_point, its output
becomes a uint8 tensor, and the readers take the codes as they are (`ir.int8`; the kernels
copy bytes instead of converting floats, and padding reads the zero point's code). The
arithmetic is unchanged: the readers' reference dequantizes the codes and quantizes them
again, which gives the same codes back. What moves through memory is a quarter of the bytes.

A value that is a graph output, or that any other op reads (a residual Add, a pool, a
concat), stays float32.
"""
from __future__ import annotations

import dataclasses

from ..ir import dtypes
from ..ir.graph import Graph, Node, Value
from ..ir.types import TensorType
from .core import PassContext, graph_pass

_PRODUCTS = ("ConvNhwc", "Linear")


def _int8_product(node: Node) -> bool:
    compute = node.attrs.get("compute")
    return node.op in _PRODUCTS and compute is not None and compute.name == "int8"


def _chainable(node: Node, readers: list[Node], outputs: set) -> tuple[float, int] | None:
    """The (scale, zero point) the readers of `node`'s output quantize it with, when it can
    leave `node` as uint8 codes."""
    y = node.outputs[0]
    if not _int8_product(node) or node.attrs.get("out_scale") or y in outputs or not readers:
        return None
    if not isinstance(y.type, TensorType) or y.type.dtype is not dtypes.float32:
        return None
    params = set()
    for reader in readers:
        if not _int8_product(reader) or any(v is y for v in reader.inputs[1:]):
            return None
        params.add((reader.attrs["act_scale"], reader.attrs["act_zero_point"]))
    return params.pop() if len(params) == 1 else None


@graph_pass
def chain_int8(graph: Graph, ctx: PassContext) -> Graph:
    users = graph.users()
    outputs = set(graph.outputs)
    codes: dict[Value, Value] = {}
    nodes = []
    for node in graph.nodes:
        inputs = [codes.get(v, v) for v in node.inputs]
        params = _chainable(node, users.get(node.outputs[0], []), outputs)
        if params is None:
            nodes.append(dataclasses.replace(node, inputs=inputs) if inputs != node.inputs else node)
            continue
        y = node.outputs[0]
        out = Value(y.name, TensorType(y.type.shape, dtypes.uint8))
        codes[y] = out
        attrs = {**node.attrs, "out_scale": params[0], "out_zero_point": params[1]}
        nodes.append(dataclasses.replace(node, inputs=inputs, outputs=[out], attrs=attrs))
    if not codes:
        return graph
    ctx.analyses["int8_chains"] = sorted(v.name for v in codes)
    return dataclasses.replace(graph, nodes=nodes)
