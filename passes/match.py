"""Small predicates the rewrite rules share: constants holding one value, types that agree,
and "this output may simply become that value"."""
from __future__ import annotations

import numpy as np

from ..ir.graph import Node, Value
from ..ir.ops import REGISTRY
from ..ir.types import TensorType
from .rewriter import Rewriter


def const_of(v: Value | None) -> np.ndarray | None:
    return None if v is None else v.const


def is_filled(v: Value | None, value: float) -> bool:
    """`v` is a non-empty constant whose every element equals `value`."""
    c = const_of(v)
    return c is not None and c.size > 0 and c.dtype.kind in "fiub" and bool(np.all(c == value))


def scalar_of(v: Value | None) -> float | None:
    """The number a one-element numeric constant holds."""
    c = const_of(v)
    if c is None or c.size != 1 or c.dtype.kind not in "fiu":
        return None
    return float(c.reshape(-1)[0])


def near(x: float | None, target: float, rel: float = 1e-3) -> bool:
    return x is not None and abs(x - target) <= rel * abs(target)


def static_shape(v: Value | None, rank: int) -> tuple | None:
    """v's shape when it is a tensor of `rank` with every dim a known int; else None."""
    shape = getattr(v.type, "shape", None) if v is not None else None
    if shape is None or len(shape) != rank or not all(isinstance(d, int) for d in shape):
        return None
    return tuple(shape)


def same_type(a: Value, b: Value) -> bool:
    """Equal types with a known rank: evidence that two values have the same shape (equal
    symbols are equal sizes). Two tensors of unknown rank prove nothing."""
    return isinstance(a.type, TensorType) and a.type.shape is not None and a.type == b.type


def forward(node: Node, rw: Rewriter, x: Value, keeps_shape: bool = False) -> list[Value] | None:
    """Replace the node's only output by `x`, when that keeps graph outputs nameable.

    The output must provably have x's type: `same_type`, or, for ops whose output has
    their input's shape by definition (`keeps_shape`: Identity, Cast...), the same dtype.
    A graph output that would become an input, a constant or another output is left
    alone: its name would need an Identity again, and the rule would fire forever.
    """
    out = node.outputs[0]
    if not (same_type(out, x) or keeps_shape and isinstance(out.type, TensorType)
            and isinstance(x.type, TensorType) and out.type.dtype == x.type.dtype):
        return None
    if rw.is_output(out) and (x.const is not None or rw.producer(x) is None or rw.is_output(x)):
        return None
    return [x] + [None] * (len(node.outputs) - 1)


def compatible(a: Value, b: Value) -> bool:
    """Same dtype and rank, and equal wherever both dims are static (symbols may be named
    differently by separate inference runs, as the verifier allows)."""
    ta, tb = a.type, b.type
    if not (isinstance(ta, TensorType) and isinstance(tb, TensorType)) or ta.dtype != tb.dtype:
        return False
    if ta.shape is None or tb.shape is None or len(ta.shape) != len(tb.shape):
        return False
    return all(x == y or not (isinstance(x, int) and isinstance(y, int)) for x, y in zip(ta.shape, tb.shape))


def broadcasts_within(small: Value, big: Value) -> bool:
    """Broadcasting `small` onto `big` leaves big's shape as it is (no dim of big grows).

    A symbol against a static size is taken to fit: at run time it must be 1 or that size.
    """
    ts, tb = small.type, big.type
    if ts.shape is None or tb.shape is None or len(ts.shape) > len(tb.shape):
        return False
    for s, b in zip(ts.shape, tb.shape[len(tb.shape) - len(ts.shape):]):
        if s == 1 or s == b:
            continue
        if b == 1 or (isinstance(s, int) and isinstance(b, int)):
            return False  # s would grow b, or they do not broadcast at all
    return True


def deterministic(node: Node) -> bool:
    """Same inputs, same outputs: the node may be folded or merged with a twin."""
    from ..ir.ops import REGISTRY

    if not REGISTRY[node.op].deterministic:  # random draws
        return False
    if node.op == "Dropout" and len(node.inputs) > 2 and node.inputs[2] is not None:
        training = node.inputs[2].const
        return training is not None and not bool(training)
    return True


def concat_axis(node: Node) -> int:
    """The axis a Concat joins along, counted from 0."""
    return REGISTRY["Concat"].resolve_attrs(node.attrs, node.describe())["axis"] % node.outputs[0].type.rank
