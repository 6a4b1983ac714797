"""Algebraic identities: ops that compute nothing (x*1, x+0, Identity, inference Dropout,
Cast to the same type, Transpose pairs that cancel) disappear, a Transpose that only moves
size-1 axes is a Reshape, and chains of reshapes become one Reshape.

Each rule keeps the value's type exactly (checked by `match.forward`), so broadcasting
by the neutral operand (x + zeros of a bigger shape) is never dropped.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from .core import PassContext, graph_pass
from .match import forward, is_filled, same_type
from .rewriter import Rewriter, Rule, apply_rules, rule_table

RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def identity(node: Node, rw: Rewriter):
    return forward(node, rw, node.inputs[0], keeps_shape=True)


def inference_dropout(node: Node, rw: Rewriter):
    training = node.inputs[2] if len(node.inputs) > 2 else None
    if training is not None and (training.const is None or bool(training.const)):
        return None
    if len(node.outputs) > 1 and rw.used(node.outputs[1]):
        return None  # the mask is read: leave it to run time (it is all True)
    return forward(node, rw, node.inputs[0], keeps_shape=True)


def cast_to_same_type(node: Node, rw: Rewriter):
    return forward(node, rw, node.inputs[0], keeps_shape=True) if node.attrs["to"] == node.inputs[0].type.dtype else None


def castlike_same_type(node: Node, rw: Rewriter):
    x, like = node.inputs[0], node.inputs[1]
    return forward(node, rw, x, keeps_shape=True) if x.type.dtype == like.type.dtype else None


def _neutral(value: float, commutes: bool):
    def rule(node: Node, rw: Rewriter):
        a, b = node.inputs
        if is_filled(b, value):
            return forward(node, rw, a)
        if commutes and is_filled(a, value):
            return forward(node, rw, b)
        return None

    return rule


def _perm(node: Node) -> list[int] | None:
    rank = node.inputs[0].type.rank
    if rank is None:
        return None
    perm = node.attrs.get("perm")
    return list(reversed(range(rank))) if perm is None else [int(p) for p in perm]


def transpose_identity(node: Node, rw: Rewriter):
    perm = _perm(node)
    identical = perm is not None and perm == sorted(perm)
    return forward(node, rw, node.inputs[0], keeps_shape=True) if identical else None


def transpose_pair(node: Node, rw: Rewriter):
    inner = rw.producer_op(node.inputs[0], "Transpose")
    if inner is None or _perm(inner) is None or _perm(node) is None:
        return None
    first, second = _perm(inner), _perm(node)
    composed = [first[p] for p in second]
    x = inner.inputs[0]
    if composed == sorted(composed):
        return forward(node, rw, x, keeps_shape=True)
    return [rw.op("Transpose", x, perm=composed, name=node.name)]


def transpose_of_unit_axes(node: Node, rw: Rewriter):
    """Transpose([N,1,1,C], [0,3,1,2]) and the like: the non-1 axes keep their order, so the
    elements keep theirs and only the shape changes."""
    perm, shape = _perm(node), node.inputs[0].type.shape
    if perm is None or shape is None:
        return None
    moved = [p for p in perm if shape[p] != 1]
    if moved != sorted(moved):
        return None
    target = []
    for k, p in enumerate(perm):
        if isinstance(shape[p], int):
            target.append(shape[p])
        elif p == k:
            target.append(0)  # Reshape's 0 copies the input's dim at the same position
        else:
            return None
    return [rw.op("Reshape", node.inputs[0], rw.constant(np.array(target, np.int64), f"{node.outputs[0].name}_shape"),
                  name=node.name)]


def reshape_chain(node: Node, rw: Rewriter):
    out, x = node.outputs[0], node.inputs[0]
    if same_type(out, x):  # equal symbols are equal sizes, so this holds for symbolic shapes too
        return forward(node, rw, x)
    if not out.type.is_static:
        return None
    inner = rw.producer(x)
    if inner is None or inner.op not in RESHAPES:
        return None
    shape = rw.constant(np.array(out.type.shape, np.int64), f"{out.name}_shape")
    return [rw.op("Reshape", inner.inputs[0], shape, name=node.name)]


def expand_noop(node: Node, rw: Rewriter):
    return forward(node, rw, node.inputs[0])


def sum_to_add(node: Node, rw: Rewriter):
    if len(node.inputs) == 1:
        return forward(node, rw, node.inputs[0], keeps_shape=True)
    if len(node.inputs) == 2 and node.inputs[0].type.dtype == node.inputs[1].type.dtype:
        return [rw.op("Add", *node.inputs, name=node.name)]
    return None


def single_concat(node: Node, rw: Rewriter):
    return forward(node, rw, node.inputs[0], keeps_shape=True) if len(node.inputs) == 1 else None


RULES = rule_table([
    Rule("Identity", identity, "Identity copies its input; readers can read the input"),
    Rule("Dropout", inference_dropout, "without training_mode Dropout is the identity (and its mask is unread)"),
    Rule("Cast", cast_to_same_type, "a Cast to the type the value already has changes nothing"),
    Rule("CastLike", castlike_same_type, "a CastLike to the type the value already has changes nothing"),
    Rule("Mul", _neutral(1, commutes=True), "x * 1 = x when the ones do not broadcast x to a bigger shape"),
    Rule("Add", _neutral(0, commutes=True), "x + 0 = x when the zeros do not broadcast x to a bigger shape"),
    Rule("Sub", _neutral(0, commutes=False), "x - 0 = x when the zeros do not broadcast x to a bigger shape"),
    Rule("Div", _neutral(1, commutes=False), "x / 1 = x when the ones do not broadcast x to a bigger shape"),
    Rule("Pow", _neutral(1, commutes=False), "x ** 1 = x when the exponent does not broadcast x"),
    Rule("Transpose", transpose_identity, "a Transpose by the identity permutation moves nothing"),
    Rule("Transpose", transpose_pair, "two Transposes compose into one (or cancel when the result is the identity)"),
    Rule("Transpose", transpose_of_unit_axes, "a Transpose that only moves size-1 axes keeps the element order: "
         "it is a Reshape"),
    *[Rule(op, reshape_chain, "a chain of reshapes ends at the last one's static shape; a reshape to "
           "the same shape is a no-op") for op in RESHAPES],
    Rule("Expand", expand_noop, "Expand to the shape the value already has copies it"),
    Rule("Sum", sum_to_add, "Sum of one value is that value; of two it is Add, which the other rules and fusion know"),
    Rule("Concat", single_concat, "Concat of one value is that value"),
])


@graph_pass
def simplify_algebra(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "simplify_algebra")
