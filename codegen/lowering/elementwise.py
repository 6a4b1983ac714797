"""Lowering rules of elementwise and broadcasting ops: one expression per output element.

Each rule is one line through a factory: `_unary(fn)` or `_nary(fn)` where `fn` builds the
element's expression from the (broadcast) input elements, widened to float32 for narrow
floats exactly as the numpy references compute them.
"""
from __future__ import annotations

import math

from ...ir import dtypes
from .. import loop_ir as L
from ..narrow_floats import NARROW_FLOATS, max_finite
from ..te import Compute, wide
from .context import LowerContext, NotLowerable


def _c(value, like: L.Expr) -> L.Expr:
    return L.const(value, like.dtype)


def _operands(ctx: LowerContext, idx, rank: int, count: int | None) -> list[L.Expr]:
    return [wide(t.bcast(idx, rank)) for t in ctx.inputs[:count] if t is not None]


def _nary(fn, count: int | None = None):
    """Rule: out[i] = fn(ctx, [inputs broadcast at i]) for the first `count` (default: all) inputs."""

    def rule(ctx: LowerContext):
        shape = ctx.out_shape()

        def element(idx):
            return fn(ctx, _operands(ctx, idx, len(shape), count))

        return [Compute(shape, ctx.out_dtype(), element)]

    return rule


def _unary(fn):
    """Rule for one-input ops: out[i] = fn(x[i], **attrs)."""
    return _nary(lambda ctx, xs: fn(xs[0], **ctx.attrs))


def _fold(op: str):
    """Variadic ops folding their inputs pairwise (Sum, Max, Min)."""

    def fn(ctx, xs):
        acc = xs[0]
        for x in xs[1:]:
            acc = L.binary(op, acc, x)
        return acc

    return _nary(fn)


# ------------------------------------------------------------------------ elements


def sigmoid(x):
    """1 / (1 + exp(-|x|)) mirrored for x < 0: exp never overflows."""
    e = L.call("exp", L.call("neg", L.call("abs", x)))
    one = _c(1.0, x)
    pos = L.div(one, L.add(one, e))
    return L.select(L.binary("ge", x, _c(0.0, x)), pos, L.div(e, L.add(one, e)))


def softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), stable for large |x|."""
    return L.add(L.binary("max", x, _c(0.0, x)), L.call("log1p", L.call("exp", L.call("neg", L.call("abs", x)))))


def expm1_neg(x, alpha):
    """alpha * expm1(min(x, 0)): the negative branch of the ELU family."""
    return L.mul(_c(alpha, x), L.call("expm1", L.binary("min", x, _c(0.0, x))))


def erf(x):
    return L.call("erf", x)


def gelu(x, approximate):
    if approximate == "tanh":
        inner = L.mul(_c(math.sqrt(2 / math.pi), x), L.add(x, L.mul(_c(0.044715, x), L.mul(x, L.mul(x, x)))))
        return L.mul(x, sigmoid(L.mul(_c(2.0, x), inner)))
    if approximate != "none":
        raise NotLowerable(f"Gelu approximate={approximate!r}")
    return L.mul(L.mul(_c(0.5, x), x), L.add(_c(1.0, x), erf(L.mul(x, _c(1 / math.sqrt(2), x)))))


def _where0(cond, a, x):
    return L.select(cond, a, _c(0, x))


def _relu(x):
    return L.binary("max", x, _c(0, x)) if x.dtype.is_float else L.select(L.binary("lt", x, _c(0, x)), _c(0, x), x)


def _div(ctx, xs):
    a, b = xs
    return L.div(a, b)  # ints: LLVM's sdiv/udiv truncate toward zero, as ONNX Div does


def _mod(ctx, xs):
    a, b = xs
    r = L.mod(a, b)  # frem / srem: the sign of the dividend (C fmod)
    if ctx.attrs["fmod"] or a.dtype.kind == "uint":
        return r
    # floor modulo: move a non-zero remainder whose sign differs from the divisor's by b
    zero = _c(0, a)
    fix = L.binary("and", L.binary("ne", r, zero), L.binary("ne", L.binary("lt", r, zero), L.binary("lt", b, zero)))
    return L.select(fix, L.add(r, b), r)


def _pow(ctx, xs):
    """x ** y in x's type: matching float types natively, any other mix in float64 and
    converted back (truncating, for an integer base). Integer powers are exact while the
    result fits float64's 53 bits, as onnxruntime's (std::pow in double) are; past that the
    reference's numpy wraps around, and this does not (a square-and-multiply chain in one
    expression would copy its operands at every step)."""
    x, y = xs
    if x.dtype.is_float and y.dtype is x.dtype:
        return L.binary("pow", x, y)
    if not all(v.dtype.is_float or v.dtype.is_int for v in (x, y)):
        raise NotLowerable(f"Pow with {x.dtype} ** {y.dtype}")
    f64 = dtypes.float64
    return L.cast(L.binary("pow", L.cast(x, f64), L.cast(y, f64)), x.dtype)


def _clip(ctx, xs):
    y = xs[0]
    lo = wide(ctx.inputs[1][[]]) if ctx.has(1) and ctx.inputs[1].rank == 0 else None
    hi = wide(ctx.inputs[2][[]]) if ctx.has(2) and ctx.inputs[2].rank == 0 else None
    for i, bound in ((1, lo), (2, hi)):
        if ctx.has(i) and bound is None:
            bound = wide(ctx.inputs[i][[L.const(0)]])
        if bound is not None:
            y = L.binary("max" if i == 1 else "min", y, bound)
    return y


def _where(ctx, xs):
    cond, a, b = xs
    return L.select(cond, a, b)


def _mean(ctx, xs):
    acc = xs[0]
    for x in xs[1:]:
        acc = L.add(acc, x)
    return L.div(acc, _c(len(xs), acc))


def _prelu(ctx, xs):
    x, slope = xs
    return L.select(L.binary("ge", x, _c(0, x)), x, L.mul(slope, x))


def _bitshift(ctx, xs):
    """Counts outside [0, bits) leave what sign extension alone gives: 0, or -1 for a negative x shifted right."""
    x, y = xs
    zero = _c(0, y)
    valid = L.binary("and", L.binary("ge", y, zero), L.binary("lt", y, _c(x.dtype.bits, y)))
    count = L.cast(L.select(valid, y, zero), x.dtype)
    if ctx.attrs["direction"] == "LEFT":
        return L.select(valid, L.binary("shl", x, count), _c(0, x))
    fill = L.select(L.binary("lt", x, _c(0, x)), _c(-1, x), _c(0, x)) if x.dtype.kind == "int" else _c(0, x)
    return L.select(valid, L.binary("shr", x, count), fill)


def _cast(ctx, xs):
    src, dst = ctx.inputs[0].dtype, ctx.out_dtype()
    narrow = dst.kind in ("bool", "int", "uint") or dst in NARROW_FLOATS  # the sub-byte types native code stores
    if dst.kind in ("string",) or src.kind == "string" or dst.bits < 8 and not narrow:
        raise NotLowerable(f"Cast from {src} to {dst}")
    if dst in NARROW_FLOATS and ctx.attrs.get("saturate", 1):  # out of range -> the largest finite value
        return saturate(L.cast(xs[0], dtypes.float32), dst)
    return xs[0]  # the stage casts to the output type when storing


def saturate(x, dst):
    """float32 `x` clamped to float8 type `dst`'s finite range (NaN stays NaN: its
    comparisons are false)."""
    top = max_finite(dst)
    return L.select(L.binary("gt", x, _c(top, x)), _c(top, x), L.select(L.binary("lt", x, _c(-top, x)), _c(-top, x), x))


def _isinf(x, detect_negative, detect_positive):
    inf = L.call("isinf", x)
    pos = L.binary("gt", x, _c(0.0, x))
    keep = L.binary("or", L.binary("and", pos, L.const(bool(detect_positive), dtypes.bool_)),
                    L.binary("and", L.binary("lt", x, _c(0.0, x)), L.const(bool(detect_negative), dtypes.bool_)))
    return L.binary("and", inf, keep)


def _shrink(x, bias, lambd):
    below = L.binary("lt", x, _c(-lambd, x))
    above = L.binary("gt", x, _c(lambd, x))
    return L.select(below, L.add(x, _c(bias, x)), L.select(above, L.sub(x, _c(bias, x)), _c(0.0, x)))


def _hard_sigmoid(x, alpha, beta):
    y = L.add(L.mul(_c(alpha, x), x), _c(beta, x))
    return L.binary("min", L.binary("max", y, _c(0.0, x)), _c(1.0, x))


def _sign(x):
    zero = _c(0, x)
    pos = L.select(L.binary("gt", x, zero), _c(1, x), zero)
    return L.select(L.binary("lt", x, zero), _c(-1, x), pos)


def _round(x):
    return L.call("round", x)


def _reciprocal(x):
    return L.div(_c(1.0, x), x)


def _intrinsic(name: str):
    """Rule for an op that is one loop-IR intrinsic, element by element."""
    return _unary(lambda x: L.call(name, x))


# Op -> the intrinsic it is.
_INTRINSIC_OPS = {
    "Neg": "neg", "Floor": "floor", "Ceil": "ceil", "Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Sin": "sin",
    "Cos": "cos", "Tan": "tan", "Asin": "asin", "Acos": "acos", "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh",
    "Tanh": "tanh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh", "IsNaN": "isnan", "Not": "not",
    "BitwiseNot": "not",
}


RULES = {
    "Add": _fold("add"),
    "Sub": _nary(lambda ctx, xs: L.sub(*xs)),
    "Mul": _nary(lambda ctx, xs: L.mul(*xs)),
    "Div": _nary(_div),
    "Mod": _nary(_mod),
    "Pow": _nary(_pow),
    "Max": _fold("max"),
    "Min": _fold("min"),
    "Sum": _fold("add"),
    "Mean": _nary(_mean),
    **{op: _intrinsic(name) for op, name in _INTRINSIC_OPS.items()},
    "Abs": _unary(lambda x: L.call("abs", x) if x.dtype.kind != "uint" else x),
    "Sign": _unary(_sign),
    "Reciprocal": _unary(_reciprocal),
    "Round": _unary(_round),
    "Erf": _unary(erf),
    "IsInf": _unary(_isinf),
    "Relu": _unary(_relu),
    "LeakyRelu": _unary(lambda x, alpha: L.select(L.binary("ge", x, _c(0.0, x)), x, L.mul(_c(alpha, x), x))),
    "PRelu": _nary(_prelu),
    "Elu": _unary(lambda x, alpha: L.select(L.binary("ge", x, _c(0.0, x)), x, expm1_neg(x, alpha))),
    "Selu": _unary(lambda x, alpha, gamma: L.mul(_c(gamma, x), L.select(L.binary("gt", x, _c(0.0, x)), x, expm1_neg(x, alpha)))),
    "Celu": _unary(lambda x, alpha: L.add(L.binary("max", x, _c(0.0, x)), L.binary(
        "min", _c(0.0, x), L.mul(_c(alpha, x), L.call("expm1", L.div(L.binary("min", x, _c(0.0, x)), _c(alpha, x))))))),
    "Sigmoid": _unary(sigmoid),
    "HardSigmoid": _unary(_hard_sigmoid),
    "HardSwish": _unary(lambda x: L.mul(x, _hard_sigmoid(x, 1 / 6, 0.5))),
    "Softplus": _unary(softplus),
    "Softsign": _unary(lambda x: L.div(x, L.add(_c(1.0, x), L.call("abs", x)))),
    "Mish": _unary(lambda x: L.mul(x, L.call("tanh", softplus(x)))),
    "Swish": _unary(lambda x, alpha: L.mul(x, sigmoid(L.mul(_c(alpha, x), x)))),
    "Gelu": _unary(gelu),
    "ThresholdedRelu": _unary(lambda x, alpha: _where0(L.binary("gt", x, _c(alpha, x)), x, x)),
    "Shrink": _unary(_shrink),
    "Clip": _nary(_clip),
    "Equal": _nary(lambda ctx, xs: L.binary("eq", *xs)),
    "Less": _nary(lambda ctx, xs: L.binary("lt", *xs)),
    "LessOrEqual": _nary(lambda ctx, xs: L.binary("le", *xs)),
    "Greater": _nary(lambda ctx, xs: L.binary("gt", *xs)),
    "GreaterOrEqual": _nary(lambda ctx, xs: L.binary("ge", *xs)),
    "And": _fold("and"),
    "Or": _fold("or"),
    "Xor": _nary(lambda ctx, xs: L.binary("ne", *xs)),
    "BitwiseAnd": _fold("and"),
    "BitwiseOr": _fold("or"),
    "BitwiseXor": _fold("xor"),
    "BitShift": _nary(_bitshift),
    "Where": _nary(_where),
    "SwiGLU": _nary(lambda ctx, xs: L.mul(L.mul(xs[0], sigmoid(L.mul(_c(ctx.attrs["alpha"], xs[0]), xs[0]))), xs[1])),
    "Cast": _nary(_cast),
    "ml.Binarizer": _unary(lambda x, threshold: L.select(L.binary("gt", x, _c(threshold, x)), _c(1, x), _c(0, x))),
    "CastLike": _nary(_cast, count=1),  # input 1 only lends its element type
}
