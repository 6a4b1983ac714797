"""ATen converters for math: elementwise arithmetic and activations (with torch's type
promotion), comparisons and selection, reductions and softmax, linear algebra.
See `fx_aten.py` for the calling convention; `MATH_CONVERTERS` is this module's part of the table.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..ir import dtypes
from ..ir.graph import Value
from .fx_context import FxEmitter, Unsupported, float_of, ir_dtype

aten = torch.ops.aten


# -- elementwise ---------------------------------------------------------------------------
def _unary(op: str, to_float: bool = False, **attrs) -> Callable:
    def convert(cx: FxEmitter, x, **_):
        return cx.op(op, float_of(cx, x) if to_float else x, **attrs)
    return convert


def _binary(op: str, true_division: bool = False) -> Callable:
    def convert(cx: FxEmitter, x, other, alpha=1, **_):
        if alpha != 1:
            other = cx.op("Mul", *cx.promote(other, alpha))
        a, b = cx.promote(x, other)
        if true_division and not cx.dtype(a).is_float:
            a, b = cx.cast(a, dtypes.float32), cx.cast(b, dtypes.float32)
        return cx.op(op, a, b)
    return convert


def _compare(op: str, negate: bool = False) -> Callable:
    def convert(cx: FxEmitter, x, other, **_):
        out = cx.op(op, *cx.promote(x, other))
        return cx.op("Not", out) if negate else out
    return convert


def _logical(op: str) -> Callable:
    def convert(cx: FxEmitter, x, other, **_):
        return cx.op(op, cx.cast(x, dtypes.bool_), cx.tensor(other, dtypes.bool_))
    return convert


def _bitwise(logical_op: str, bitwise_op: str) -> Callable:
    """`a & b` on bools is logical; on integers it is bitwise."""
    def convert(cx: FxEmitter, x, other, **_):
        a, b = cx.promote(x, other)
        return cx.op(logical_op if cx.dtype(a) == dtypes.bool_ else bitwise_op, a, b)
    return convert


def _rsub(cx: FxEmitter, x, other, alpha=1, **_):
    dt = cx.result_dtype(x, other)
    scaled = cx.cast(x, dt) if alpha == 1 else cx.op("Mul", cx.cast(x, dt), cx.tensor(alpha, dt))
    return cx.op("Sub", cx.tensor(other, dt), scaled)


def _div(cx: FxEmitter, x, other, rounding_mode=None, **_):
    a, b = cx.promote(x, other)
    dt = cx.dtype(a)
    if rounding_mode is None:  # true division: ints divide as floats
        return cx.op("Div", float_of(cx, a), float_of(cx, b))
    wide = dt if dt.is_float else dtypes.float64  # exact for int32; int64 beyond 2**53 is not a use case here
    q = cx.op("Div", cx.cast(a, wide), cx.cast(b, wide))
    if rounding_mode == "floor":
        q = cx.op("Floor", q)
    else:  # "trunc": round toward zero
        q = cx.op("Mul", cx.op("Sign", q), cx.op("Floor", cx.op("Abs", q)))
    return cx.cast(q, dt)


def _floor_divide(cx: FxEmitter, x, other, **_):
    return _div(cx, x, other, rounding_mode="floor")


def _remainder(cx: FxEmitter, x, other, **_):
    """torch's remainder takes the divisor's sign (Python's %): Mod for ints; for floats
    a - floor(a / b) * b, since Mod's float form (fmod) takes the dividend's."""
    a, b = cx.promote(x, other)
    if not cx.dtype(a).is_float:
        return cx.op("Mod", a, b)
    return cx.op("Sub", a, cx.op("Mul", cx.op("Floor", cx.op("Div", a, b)), b))


def _pow(cx: FxEmitter, x, exponent, **_):
    a, b = cx.promote(x, exponent)
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool) and exponent == 2:
        return cx.op("Mul", a, a)  # x**2 (variance, norms) is exact as a product
    return cx.op("Pow", a, b)


def _square(cx: FxEmitter, x, **_):
    return cx.op("Mul", x, x)


def _rsqrt(cx: FxEmitter, x, **_):
    return cx.op("Reciprocal", cx.op("Sqrt", float_of(cx, x)))


def _gelu(cx: FxEmitter, x, approximate="none", **_):
    return cx.op("Gelu", x, approximate=approximate)


def _hardtanh(cx: FxEmitter, x, min_val=-1, max_val=1, **_):
    return _clamp(cx, x, min_val, max_val)


def _relu6(cx: FxEmitter, x, **_):
    return _clamp(cx, x, 0, 6)


def _clamp(cx: FxEmitter, x, min=None, max=None, **_):
    out = x
    if min is not None:
        out = cx.op("Max", *cx.promote(out, min))
    if max is not None:
        out = cx.op("Min", *cx.promote(out, max))
    return out


def _clamp_min(cx, x, min, **_):
    return _clamp(cx, x, min=min)


def _clamp_max(cx, x, max, **_):
    return _clamp(cx, x, max=max)


def _leaky_relu(cx: FxEmitter, x, negative_slope=0.01, **_):
    return cx.op("LeakyRelu", x, alpha=float(negative_slope))


def _elu(cx: FxEmitter, x, alpha=1, scale=1, input_scale=1, **_):
    if scale != 1 or input_scale != 1:
        raise Unsupported("elu with scale/input_scale (selu-style) arguments")
    return cx.op("Elu", x, alpha=float(alpha))


def _softplus(cx: FxEmitter, x, beta=1, threshold=20, **_):
    if beta == 1:
        return cx.op("Softplus", x)
    scaled = cx.op("Mul", *cx.promote(x, beta))
    return cx.op("Div", *cx.promote(cx.op("Softplus", scaled), beta))


def _where(cx: FxEmitter, condition, x, other, **_):
    a, b = cx.promote(x, other)
    return cx.op("Where", cx.cast(condition, dtypes.bool_), a, b)


def _masked_fill(cx: FxEmitter, x, mask, value, **_):
    return cx.op("Where", cx.cast(mask, dtypes.bool_), cx.tensor(value, cx.dtype(x)), x)


def _bitwise_not(cx: FxEmitter, x, **_):
    return cx.op("Not" if cx.dtype(x) == dtypes.bool_ else "BitwiseNot", x)


def _logical_not(cx: FxEmitter, x, **_):
    return cx.op("Not", cx.cast(x, dtypes.bool_))


# -- reductions ----------------------------------------------------------------------------
def _axes(cx: FxEmitter, x: Value, dim) -> list[int] | None:
    """torch's dim argument as a list of axes; None or [] reduces everything."""
    if dim is None:
        return None
    dims = [dim] if isinstance(dim, int) else list(dim)
    return [cx.axis(d, x) for d in dims] or None


def _reduce(cx: FxEmitter, op: str, x: Value, dim, keepdim: bool) -> Value:
    axes = _axes(cx, x, dim)
    if cx.rank(x) == 0:
        return x
    return cx.op(op, x, None if axes is None else cx.ints(axes), keepdims=int(bool(keepdim)))


def _reduction(op: str, int_to_int64: bool = False, to_float: bool = False) -> Callable:
    def convert(cx: FxEmitter, x, dim=None, keepdim=False, dtype=None, **_):
        if dtype is not None:
            x = cx.cast(x, ir_dtype(dtype))
        elif int_to_int64 and not cx.dtype(x).is_float:
            x = cx.cast(x, dtypes.int64)  # torch sums ints and bools in int64
        elif to_float:
            x = float_of(cx, x)
        return _reduce(cx, op, x, dim, keepdim)
    return convert


def _min_max(reduce_op: str, arg_op: str, pair_op: str) -> Callable:
    """max(x) / max(x, dim) -> (values, indices) / max(x, other): three ops under one name."""
    def convert(cx: FxEmitter, x, other=None, dim=None, keepdim=False, **_):
        if other is not None:
            return cx.op(pair_op, *cx.promote(x, other))
        if dim is None:
            return _reduce(cx, reduce_op, x, None, False)
        axis = cx.axis(dim, x)
        values = _reduce(cx, reduce_op, x, [axis], keepdim)
        indices = cx.op(arg_op, x, axis=axis, keepdims=int(bool(keepdim)))
        return values, indices
    return convert


def _arg_reduce(op: str) -> Callable:
    def convert(cx: FxEmitter, x, dim=None, keepdim=False, **_):
        if dim is None:
            return cx.op(op, cx.op("Reshape", x, cx.ints([-1])), axis=0, keepdims=0)
        return cx.op(op, x, axis=cx.axis(dim, x), keepdims=int(bool(keepdim)))
    return convert


def _var(cx: FxEmitter, x, dim=None, unbiased=True, correction=None, keepdim=False, **_):
    x = float_of(cx, x)
    correction = (1 if unbiased else 0) if correction is None else correction
    axes = _axes(cx, x, dim) or list(range(cx.rank(x)))
    count = math.prod(cx.shape(x)[a] for a in axes)
    centered = cx.op("Sub", x, _reduce(cx, "ReduceMean", x, axes, True))
    total = _reduce(cx, "ReduceSum", cx.op("Mul", centered, centered), axes, keepdim)
    return cx.op("Div", total, cx.tensor(max(count - correction, 0), cx.dtype(x)))


def _std(cx: FxEmitter, x, **kwargs):
    return cx.op("Sqrt", _var(cx, x, **kwargs))


def _any_all(op: str) -> Callable:
    def convert(cx: FxEmitter, x, dim=None, keepdim=False, **_):
        as_int = cx.cast(cx.cast(x, dtypes.bool_), dtypes.int32)
        return cx.cast(_reduce(cx, op, as_int, dim, keepdim), dtypes.bool_)
    return convert


def _vector_norm(cx: FxEmitter, x, ord=2, dim=None, keepdim=False, dtype=None, p=None, **_):
    order = ord if p is None else p  # aten.norm calls it p (None = 2), linalg_vector_norm ord
    ops = {1: "ReduceL1", 2: "ReduceL2", float("inf"): "ReduceMax"}
    if order not in ops:
        raise Unsupported(f"vector norm of order {order}")
    x = cx.cast(x, ir_dtype(dtype)) if dtype is not None else float_of(cx, x)
    if order == float("inf"):
        x = cx.op("Abs", x)
    return _reduce(cx, ops[order], x, dim, keepdim)


def _topk(cx: FxEmitter, x, k, dim=-1, largest=True, sorted=True, **_):
    values, indices = cx.ops("TopK", x, cx.ints([k]), num_outputs=2, axis=cx.axis(dim, x), largest=int(bool(largest)),
                             sorted=1)  # unsorted order is unspecified in torch: sorted is one valid answer
    return values, indices


def _cumsum(cx: FxEmitter, x, dim, dtype=None, **_):
    if dtype is not None:
        x = cx.cast(x, ir_dtype(dtype))
    elif not cx.dtype(x).is_float:
        x = cx.cast(x, dtypes.int64)
    return cx.op("CumSum", x, cx.const(np.int64(cx.axis(dim, x))))


def _softmax(op: str) -> Callable:
    def convert(cx: FxEmitter, x, dim, dtype=None, half_to_float=False, **_):
        if dtype is not None:
            x = cx.cast(x, ir_dtype(dtype))
        elif half_to_float:
            x = cx.cast(x, dtypes.float32)
        return cx.op(op, x, axis=cx.axis(dim, x))
    return convert


# -- linear algebra ------------------------------------------------------------------------
def transpose_last2(cx: FxEmitter, w: Value) -> Value:
    perm = list(range(cx.rank(w)))
    perm[-2:] = perm[-1], perm[-2]
    if w.const is not None:  # weights: transpose once, at import
        return cx.const(np.ascontiguousarray(np.transpose(w.const, perm)))
    return cx.op("Transpose", w, perm=perm)


def _linear(cx: FxEmitter, x, weight, bias=None, **_):
    if cx.rank(x) == 2 and cx.rank(weight) == 2:
        return cx.op("Gemm", x, weight, bias, transB=1)
    y = cx.op("MatMul", x, transpose_last2(cx, weight))
    return y if bias is None else cx.op("Add", y, bias)


def _addmm(cx: FxEmitter, x, mat1, mat2, beta=1, alpha=1, **_):
    return cx.op("Gemm", mat1, mat2, x, alpha=float(alpha), beta=float(beta))


def _matmul(cx: FxEmitter, x, other=None, mat2=None, **_):
    return cx.op("MatMul", x, mat2 if other is None else other)


def _baddbmm(cx: FxEmitter, x, batch1, batch2, beta=1, alpha=1, **_):
    prod = cx.op("MatMul", batch1, batch2)
    if alpha != 1:
        prod = cx.op("Mul", *cx.promote(prod, alpha))
    if beta == 0:
        return prod
    return cx.op("Add", prod, x if beta == 1 else cx.op("Mul", *cx.promote(x, beta)))


def _t(cx: FxEmitter, x, **_):
    return x if cx.rank(x) < 2 else transpose_last2(cx, x)


def _einsum(cx: FxEmitter, equation, tensors, **_):
    return cx.op("Einsum", *cx.promote(*tensors), equation=equation)


MATH_CONVERTERS: dict = {
    # arithmetic
    aten.add: _binary("Add"), aten.sub: _binary("Sub"), aten.rsub: _rsub, aten.mul: _binary("Mul"),
    aten.div: _div, aten.true_divide: _binary("Div", true_division=True), aten.floor_divide: _floor_divide,
    aten.remainder: _remainder, aten.pow: _pow, aten.neg: _unary("Neg"), aten.abs: _unary("Abs"),
    aten.sqrt: _unary("Sqrt", True), aten.rsqrt: _rsqrt, aten.exp: _unary("Exp", True),
    aten.log: _unary("Log", True), aten.reciprocal: _unary("Reciprocal", True), aten.erf: _unary("Erf", True),
    aten.sin: _unary("Sin", True), aten.cos: _unary("Cos", True), aten.tanh: _unary("Tanh", True),
    aten.floor: _unary("Floor"), aten.ceil: _unary("Ceil"), aten.round: _unary("Round"), aten.sign: _unary("Sign"),
    aten.square: _square, aten.maximum: _binary("Max"), aten.minimum: _binary("Min"), aten.clamp: _clamp, aten.clip: _clamp,
    aten.clamp_min: _clamp_min, aten.clamp_max: _clamp_max,
    # activations
    aten.relu: _unary("Relu"), aten.sigmoid: _unary("Sigmoid", True), aten.gelu: _gelu,
    aten.silu: _unary("Swish", alpha=1.0), aten.hardswish: _unary("HardSwish"),
    aten.hardsigmoid: _unary("HardSigmoid", alpha=1.0 / 6, beta=0.5), aten.hardtanh: _hardtanh,
    aten.relu6: _relu6,
    aten.leaky_relu: _leaky_relu, aten.elu: _elu, aten.softplus: _softplus, aten.mish: _unary("Mish"),
    # comparisons and selection
    aten.eq: _compare("Equal"), aten.ne: _compare("Equal", negate=True), aten.lt: _compare("Less"),
    aten.le: _compare("LessOrEqual"), aten.gt: _compare("Greater"), aten.ge: _compare("GreaterOrEqual"),
    aten.logical_not: _logical_not, aten.logical_and: _logical("And"), aten.logical_or: _logical("Or"),
    aten.logical_xor: _logical("Xor"),
    aten.bitwise_and: _bitwise("And", "BitwiseAnd"), aten.bitwise_or: _bitwise("Or", "BitwiseOr"),
    aten.bitwise_xor: _bitwise("Xor", "BitwiseXor"), aten.__and__: _bitwise("And", "BitwiseAnd"),
    aten.__or__: _bitwise("Or", "BitwiseOr"), aten.__xor__: _bitwise("Xor", "BitwiseXor"),
    aten.bitwise_not: _bitwise_not, aten.isnan: _unary("IsNaN"),
    aten.where: _where, aten.masked_fill: _masked_fill,
    # reductions
    aten.mean: _reduction("ReduceMean", to_float=True), aten.sum: _reduction("ReduceSum", int_to_int64=True),
    aten.prod: _reduction("ReduceProd", int_to_int64=True), aten.amax: _reduction("ReduceMax"),
    aten.amin: _reduction("ReduceMin"), aten.max: _min_max("ReduceMax", "ArgMax", "Max"),
    aten.min: _min_max("ReduceMin", "ArgMin", "Min"), aten.argmax: _arg_reduce("ArgMax"),
    aten.argmin: _arg_reduce("ArgMin"), aten.var: _var, aten.std: _std, aten.any: _any_all("ReduceMax"),
    aten.all: _any_all("ReduceMin"), aten.cumsum: _cumsum, aten.linalg_vector_norm: _vector_norm,
    aten.norm: _vector_norm, aten.topk: _topk,
    aten.softmax: _softmax("Softmax"), aten._softmax: _softmax("Softmax"),
    aten.log_softmax: _softmax("LogSoftmax"), aten._log_softmax: _softmax("LogSoftmax"),
    # linear algebra
    aten.linear: _linear, aten.addmm: _addmm, aten.mm: _matmul, aten.bmm: _matmul, aten.matmul: _matmul,
    aten.baddbmm: _baddbmm, aten.t: _t, aten.einsum: _einsum,
}
