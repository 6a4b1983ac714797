"""ATen op -> IR converters: the one table (`ATEN_CONVERTERS`) and how the importer looks a target up.

A converter is called as `fn(cx, **args)`: `cx` is an `FxEmitter`, `args` are the op's
arguments bound by name to its ATen schema (defaults filled, `self`/`input` renamed `x`),
with fx nodes already replaced by IR Values (tensors) or Python values (sizes, lists).
It returns a Value, a list/tuple of them (multi-output ops; None for an output we do not
produce), or a Python value. Arguments we cannot honour raise `Unsupported`, which the
importer adds to its one listing of everything the graph needs that we lack.

Covers both export's ATen IR (aten.linear, aten.conv2d, aten.scaled_dot_product_attention...)
and the core ATen that AOT autograd decomposes to (aten.addmm, aten.convolution,
aten._native_batch_norm_legit_no_training...). Semantics map onto registry ops (ONNX).

The converters live by family in fx_aten_math.py, fx_aten_nn.py and fx_aten_shape.py.
"""
from __future__ import annotations

import math
import operator
from typing import Callable

import torch

from ..ir.graph import Value
from .fx_aten_math import MATH_CONVERTERS
from .fx_aten_nn import NN_CONVERTERS
from .fx_aten_shape import SHAPE_CONVERTERS
from .fx_context import FxEmitter, Unsupported

# ATen overload packet (aten.add covers add.Tensor, add.Scalar...) -> converter.
ATEN_CONVERTERS: dict = {**MATH_CONVERTERS, **NN_CONVERTERS, **SHAPE_CONVERTERS}


def _python_op(fn: Callable) -> Callable:
    """Python arithmetic on sizes (SymInt math in exported graphs): evaluated at import."""
    def convert(cx: FxEmitter, *args):
        if any(isinstance(a, Value) for a in args):
            raise Unsupported(f"Python operator {fn.__name__} on a tensor")
        return fn(*args)
    return convert


def _getitem(cx: FxEmitter, seq, index):
    if isinstance(seq, Value):
        raise Unsupported("tensor indexing at the Python level (trace to ATen first)")
    item = seq[index]
    if item is None:
        raise Unsupported("an auxiliary output (saved statistics, indices) of a multi-output op")
    return item


# Targets of call_function nodes that are plain Python callables rather than ATen overloads.
PYTHON_CONVERTERS: dict = {
    operator.getitem: _getitem,
    **{fn: _python_op(fn) for fn in (operator.add, operator.sub, operator.mul, operator.floordiv,
                                     operator.truediv, operator.mod, operator.neg, operator.pow,
                                     torch.sym_int, torch.sym_float, torch.sym_max, torch.sym_min, math.ceil,
                                     math.floor, math.sqrt)},
}


def lookup(target) -> Callable | None:
    """The converter for a call_function target, or None when we have none."""
    if isinstance(target, torch._ops.OpOverload):
        return ATEN_CONVERTERS.get(target.overloadpacket)
    try:
        return PYTHON_CONVERTERS.get(target)
    except TypeError:  # unhashable targets
        return None
