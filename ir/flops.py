"""Floating-point operation counts of IR nodes and graphs, from their static shapes.

Conventions (the ones papers and vendors quote, so GFLOP/s compare across systems):
a multiply-add is 2 FLOPs; a bias add, activation or other elementwise op is 1 FLOP per
output element whatever its libm cost; normalisations and softmax count their few passes
per element (declared on their ops); data movement (reshape, transpose, gather, pad...) and
exact integer/bool/comparison ops (Cast, Equal, Where) are 0.

Each op's counter is a fact on its registry entry (`OpDef.flops`): the counters below are
what op modules declare; an op that declares none counts by its category (`counter_of`).
Nodes whose shapes are not static cannot be counted: `count_flops` lists them instead of
guessing, and the GFLOP/s of such a model should not be quoted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Callable

from .registry import TABLE, Category, OpDef, Precision
from .types import TensorType

Counter = Callable[["Node"], "int | None"]  # noqa: F821 - ir.graph.Node, not imported (ir.graph imports the registry)


@dataclass
class FlopReport:
    """A graph's FLOPs: the total, per op type, and the nodes that could not be counted."""

    total: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    uncounted: list[str] = field(default_factory=list)  # node descriptions with non-static shapes

    @property
    def exact(self) -> bool:
        return not self.uncounted


def _shape(v) -> tuple[int, ...] | None:
    """The static shape of a value, or None (missing optional input, symbolic dims, not a tensor)."""
    t = getattr(v, "type", None)
    if v is None or not isinstance(t, TensorType) or not t.is_static:
        return None
    return tuple(t.shape)


def _numel(v) -> int | None:
    s = _shape(v)
    return None if s is None else prod(s)


def _has(node, i: int) -> bool:
    return i < len(node.inputs) and node.inputs[i] is not None


# --- counters op modules declare ---------------------------------------------------------


def conv(node) -> int | None:
    """Y[n, m, ...] sums (C/group) * prod(kernel) products: the size of W's trailing dims."""
    y, w = _numel(node.outputs[0]), _shape(node.inputs[1])
    if y is None or w is None:
        return None
    return 2 * y * prod(w[1:]) + (y if _has(node, 2) else 0)


def conv_transpose(node) -> int | None:
    """Each input element scatters into (M/group) * prod(kernel) outputs: W is [C, M/group, k...]."""
    x, w, y = _numel(node.inputs[0]), _shape(node.inputs[1]), _numel(node.outputs[0])
    if x is None or w is None or y is None:
        return None
    return 2 * x * prod(w[1:]) + (y if _has(node, 2) else 0)


def matmul(node) -> int | None:
    """MatMul and Linear (MatMul + bias): K is A's last dim (1-D A: its length)."""
    y, a = _numel(node.outputs[0]), _shape(node.inputs[0])
    if y is None or a is None:
        return None
    return 2 * y * a[-1] + (y if _has(node, 2) else 0)


def gemm(node) -> int | None:
    y, a = _numel(node.outputs[0]), _shape(node.inputs[0])
    if y is None or a is None:
        return None
    k = a[0] if node.attrs.get("transA", 0) else a[1]
    return 2 * y * k + (y if _has(node, 2) else 0)


def attention(node) -> int | None:
    """Q K^T and P V (2 FLOPs per multiply-add) plus ~5 per score for scale, mask and softmax."""
    q, k, v, y = (_shape(x) for x in (node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]))
    if q is None or k is None or v is None or y is None:
        return None
    if len(q) == 4:  # [batch, heads, seq, head_size]
        rows, d, kv_len = prod(q[:3]), q[3], k[2]
        dv = v[3]
    else:  # [batch, seq, heads * head_size]: heads from the attributes
        heads = node.attrs.get("q_num_heads") or 1
        kv_heads = node.attrs.get("kv_num_heads") or heads
        rows, d, kv_len = q[0] * q[1] * heads, q[2] // heads, k[1]
        dv = v[2] // kv_heads
    if _has(node, 4):  # past keys are attended to as well
        past = _shape(node.inputs[4])
        kv_len += past[2] if past is not None else 0
    scores = rows * kv_len
    return 2 * scores * d + 2 * scores * dv + 5 * scores


def pool(node) -> int | None:
    """One compare or add per window element and output."""
    y = _numel(node.outputs[0])
    kernel = node.attrs.get("kernel_shape")
    return None if y is None or not kernel else y * prod(kernel)


def lrn(node) -> int | None:
    """A square-sum over `size` channels, then scale, power and divide."""
    y = _numel(node.outputs[0])
    return None if y is None else y * (2 * int(node.attrs.get("size", 1)) + 3)


def per_input_element(cost: int) -> Counter:
    """Ops that touch every input element `cost` times (reductions, global pools, norms:
    mean, variance, subtract, scale, shift ~8 at inference; softmax: max, subtract, exp,
    sum, divide ~5)."""
    def count(node) -> int | None:
        x = _numel(node.inputs[0]) if node.inputs and node.inputs[0] is not None else None
        return None if x is None else cost * x
    return count


def one_per_output(node) -> int | None:
    return _numel(node.outputs[0])


def none(node) -> int:
    """Data movement, integer/bool/comparison work or control: no floating-point operations."""
    return 0


def fused_body(node) -> int | None:
    """A fused kernel: the sum over its body (None unless every body node is countable)."""
    report = count_flops(node.attrs["body"])
    return report.total if report.exact else None


_PER_INPUT_ELEMENT = per_input_element(1)


def counter_of(op: OpDef) -> Counter:
    """The op's declared counter, or its category's: 0 for integer, bool, comparison and
    data movement (precision EXACT), 1 per output element for elementwise ops, 1 per input
    element for reductions, 0 for injective and opaque ops (data or control work)."""
    if op.flops is not None:
        return op.flops
    if op.precision is Precision.EXACT:
        return none
    if op.category in (Category.ELEMENTWISE, Category.BROADCAST):
        return one_per_output
    if op.category is Category.REDUCTION:
        return _PER_INPUT_ELEMENT
    return none


# --- counting -----------------------------------------------------------------------------


def node_flops(node) -> int | None:
    """FLOPs of one node; 0 for data movement; None when its shapes are not static."""
    opdef = TABLE.get(node.op)
    return 0 if opdef is None else counter_of(opdef)(node)


def count_flops(graph) -> FlopReport:
    """FLOPs of every node of `graph` (not of control-flow subgraphs, which may run 0..n times)."""
    report = FlopReport()
    for node in graph.nodes:
        n = node_flops(node)
        if n is None:
            report.uncounted.append(node.describe())
            continue
        report.total += n
        if n:
            report.by_op[node.op] = report.by_op.get(node.op, 0) + n
    return report


def graph_flops(graph) -> int:
    """Total FLOPs of the nodes whose shapes are static (see `count_flops` for which are not)."""
    return count_flops(graph).total
