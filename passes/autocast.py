"""Reduced precision by casting around products ("autocast"): the precision lowering of
targets whose product kernels take 16-bit operands as they are (the cuda target's
tensor-core template, `codegen/cuda/products.py` and `attention.py`).

`autocast("fp16" | "bf16", ops, exclude)`: a node whose op is in the target's `ops` and
whose float operands are all float32 becomes the same node on float16 (bfloat16) operands
between Casts: constant operands are converted once, at compile time, the others by a Cast
in front (fusion merges it into the kernel that produces them); the kernel multiplies the
16-bit values and accumulates in float32 (`mma.sync ... f32.f16.f16.f32`), rounds its
result once to the 16-bit type, and a Cast behind widens it back. Everything else keeps
float32, as the op's precision policy on its registry entry says (the report names it).
The reference interpreter runs the same graph, so compiled and reference agree to float32
accumulation order, and against fp32 by the 16-bit rounding of operands and result.

Between lowered products the 16-bit values stay 16-bit where that is exact: a widening
Cast moves behind the ops that commute with rounding (Relu, MaxPool, Flatten, Reshape), so
the product kernel absorbs its Relu, and a product reading another's widened result reads
the 16-bit value itself (narrowing a widened value gives it back).

Not lowered: what `exclude` names (node names or op types), products with operands that
are not float32, and attention with a float mask (an additive mask's large negative values
overflow float16 to -inf, which turns fully masked rows into NaN).

Like `lower_precision`, the decisions go to `ctx.analyses["precision"]`; the graph the
pass received and, per lowered node, where its result lives in each graph go to
`ctx.analyses["precision_twin"]`, so the report can measure each layer against fp32
(`compiler.precision_report`).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..ir import dtypes
from ..ir.graph import Graph, Node
from ..ir.ops import get_op
from .core import Pass, PassContext
from .lower_precision import NodePrecision, check_precision, excluded_by, output_type, policy_reason
from .match import const_of
from .rewriter import Rule, apply_rules, rule_table

AUTOCAST_TYPES = {"fp16": dtypes.float16, "bf16": dtypes.bfloat16}
_REASON = {"fp16": "product: fp16 operands and result, fp32 accumulation (tensor cores)",
           "bf16": "product: bf16 operands and result, fp32 accumulation (tensor cores)"}


def _float_operands(node: Node) -> list:
    return [v for v in node.inputs if v is not None and v.type.dtype.is_float]


def _refusal(node: Node, excluded: frozenset) -> str | None:
    """Why `node` (of an autocast op) stays float32, or None when it is lowered."""
    if excluded_by(node, excluded):
        return "excluded by the user"
    floats = _float_operands(node)
    if not floats or any(v.type.dtype is not dtypes.float32 for v in floats):
        return "operands are not all float32"
    if any(v is not None for v in node.outputs[1:]):
        return "more than one output in use"
    if node.op == "Attention" and len(node.inputs) > 3 and node.inputs[3] is not None \
            and node.inputs[3].type.dtype.is_float:
        return "a float attention mask (its large negative values would overflow the 16-bit type)"
    return None


# Ops with op(round(x)) == round(op(x)) for rounding to a narrower float: a widening Cast
# in front of them moves behind them without changing a bit.
_COMMUTES = ("Relu", "MaxPool", "Flatten", "Reshape")
_SUNK_REASON = "exact in the 16-bit type: runs on a lowered product's result (commutes with rounding)"


def _widened_from(rw, v, narrow):
    """u when `v` is Cast(u: `narrow`) to float32 (a lowered product's widened result), else None."""
    cast = rw.producer_op(v, "Cast")
    if cast is None or v.type.dtype is not dtypes.float32 or cast.inputs[0].type.dtype is not narrow:
        return None
    return cast.inputs[0]


def autocast(precision: str, ops: Iterable[str], exclude: Iterable[str] = ()) -> Pass:
    """The pass casting the `ops` nodes' float32 operands to `precision` ("fp16", "bf16")
    and their results back, skipping `exclude` (node names or op types)."""
    check_precision(precision)
    narrow = AUTOCAST_TYPES[precision]
    ops, excluded = tuple(ops), frozenset(exclude)

    def run(graph: Graph, ctx: PassContext) -> Graph:
        reasons = {n.name: _refusal(n, excluded) for n in graph.nodes if n.op in ops}
        results: dict[str, object] = {}  # lowered node name -> its 16-bit result Value
        sunk: set[str] = set()  # nodes that now run on the 16-bit values (`sink`)

        def lower(node: Node, rw):
            if reasons.get(node.name, "") is not None or node.outputs[0].type.dtype is not dtypes.float32:
                return None
            inputs = []
            for i, v in enumerate(node.inputs):
                if v is None or not v.type.dtype.is_float:
                    inputs.append(v)
                    continue
                const = const_of(v)
                narrowed = _widened_from(rw, v, narrow)
                if const is not None:
                    inputs.append(rw.constant(np.asarray(const).astype(narrow.numpy), f"{v.name}_{narrow.name}"))
                elif narrowed is not None:  # narrowing a widened 16-bit value gives it back, exactly
                    inputs.append(narrowed)
                else:
                    inputs.append(rw.op("Cast", v, to=narrow, name=f"{node.name}_in{i}"))
            outs = rw.emit(node.op, inputs, node.attrs, name=node.name, num_outputs=1)
            results[node.name] = outs[0]
            return [rw.op("Cast", outs[0], to=dtypes.float32, name=f"{node.name}_widen")] + \
                [None] * (len(node.outputs) - 1)

        def sink(node: Node, rw):
            """op(widen(u)) -> widen(op(u)) for an op that commutes with rounding (max(0, x),
            max pooling, reshaping): exact, and the product's kernel absorbs a Relu, the next
            product reads the 16-bit value without a round trip."""
            x = node.inputs[0]
            u = _widened_from(rw, x, narrow)
            if u is None or not rw.single_use(x) or any(v is not None for v in node.outputs[1:]):
                return None
            out = rw.emit(node.op, [u, *node.inputs[1:]], node.attrs, name=node.name, num_outputs=1)[0]
            sunk.add(node.name)
            return [rw.op("Cast", out, to=dtypes.float32, name=f"{node.name}_widen")] + [None] * (len(node.outputs) - 1)

        rules = rule_table([*(Rule(op, lower, "16-bit operands on the target's 16-bit product kernels") for op in ops),
                            *(Rule(op, sink, "commutes with rounding to the 16-bit type") for op in _COMMUTES)])
        lowered = apply_rules(graph, ctx, rules, f"autocast_{precision}")
        report = []
        for node in graph.nodes:
            if node.name in results:
                report.append(NodePrecision(node.name, node.op, precision, _REASON[precision]))
            elif node.name in sunk:
                report.append(NodePrecision(node.name, node.op, precision, _SUNK_REASON))
            else:
                why = reasons.get(node.name) or policy_reason(get_op(node.op))
                report.append(NodePrecision(node.name, node.op, output_type(node), why))
        ctx.analyses["precision"] = report
        # each lowered node's result: its float32 value in the graph received, its 16-bit
        # value in the lowered graph
        names = {v.name for n in lowered.nodes for v in n.outputs if v is not None}
        ctx.analyses["precision_twin"] = (graph, {
            node.name: (node.outputs[0].name, results[node.name].name)
            for node in graph.nodes if node.name in results and results[node.name].name in names})
        return lowered

    return Pass(f"autocast_{precision}", run)

