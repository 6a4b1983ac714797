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

A max pool between products (VGG's stage ends) runs on the codes: quantizing is monotone,
so max commutes with it, and the producer quantizes with the parameters of the pool's
readers. A value that is a graph output, or that any other op reads (a residual Add, an
average pool, a concat), stays float32.
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


def _reader_params(v: Value, users: dict, outputs: set, through: list) -> tuple[float, int] | None:
    """The one (scale, zero point) every reader of float32 `v` quantizes it with, when all of
    them are int8 products reading it as their activation, or max pools whose outputs are
    read that way (collected in `through`: quantizing commutes with max, so the pool can run
    on the codes); None otherwise."""
    readers = users.get(v, [])
    if v in outputs or not readers or not isinstance(v.type, TensorType) or v.type.dtype is not dtypes.float32:
        return None
    params = set()
    for reader in readers:
        if reader.op == "MaxPoolNhwc" and len(reader.outputs) == 1:
            inner = _reader_params(reader.outputs[0], users, outputs, through)
            if inner is None:
                return None
            through.append(reader)
            params.add(inner)
        elif _int8_product(reader) and not any(u is v for u in reader.inputs[1:]):
            params.add((reader.attrs["act_scale"], reader.attrs["act_zero_point"]))
        else:
            return None
    return params.pop() if len(params) == 1 else None


@graph_pass
def chain_int8(graph: Graph, ctx: PassContext) -> Graph:
    users = graph.users()
    outputs = set(graph.outputs)
    codes: dict[Value, Value] = {}  # float32 value -> the uint8 value that replaces it
    chained: dict[int, tuple[float, int]] = {}  # id(product) -> its out_scale, out_zero_point
    pools: set[int] = set()  # id(max pool) running on codes
    for node in graph.nodes:
        if _int8_product(node) and not node.attrs.get("out_scale"):
            through: list[Node] = []
            params = _reader_params(node.outputs[0], users, outputs, through)
            if params is not None:
                chained[id(node)] = params
                pools.update(id(p) for p in through)
    if not chained:
        return graph
    nodes = []
    for node in graph.nodes:
        inputs = [codes.get(v, v) for v in node.inputs]
        if id(node) in chained or id(node) in pools:
            y = node.outputs[0]
            out = Value(y.name, TensorType(y.type.shape, dtypes.uint8))
            codes[y] = out
            attrs = node.attrs
            if id(node) in chained:
                scale, zero_point = chained[id(node)]
                attrs = {**attrs, "out_scale": scale, "out_zero_point": zero_point}
            node = dataclasses.replace(node, inputs=inputs, outputs=[out], attrs=attrs)
        elif inputs != node.inputs:
            node = dataclasses.replace(node, inputs=inputs)
        nodes.append(node)
    ctx.analyses["int8_chains"] = sorted(v.name for v in codes)
    return dataclasses.replace(graph, nodes=nodes)
