"""Elementwise and broadcasting ops: arithmetic, math functions, activations, comparisons, logic, casts."""
from __future__ import annotations

import numpy as np

from ..registry import Category, OpDef, Precision
from ..shape_utils import broadcast_infer, same_as_input


def _binary(name, fn, precision=Precision.FOLLOW, doc=""):
    return OpDef(name=name, inputs=("A", "B"), outputs=("C",), infer=broadcast_infer(),
                 reference=lambda ctx, a, b: fn(a, b).astype(a.dtype, copy=False),
                 category=Category.BROADCAST, precision=precision, doc=doc)


def _unary(name, fn, precision=Precision.FOLLOW, doc=""):
    return OpDef(name=name, inputs=("X",), outputs=("Y",), infer=same_as_input(0),
                 reference=lambda ctx, x: np.asarray(fn(x)).astype(x.dtype, copy=False),
                 category=Category.ELEMENTWISE, precision=precision, doc=doc)


OPS = [
    _binary("Add", np.add),
    _binary("Sub", np.subtract),
    _binary("Mul", np.multiply),
    _unary("Relu", lambda x: np.maximum(x, 0)),
    _unary("Exp", np.exp, Precision.FP32),
]
