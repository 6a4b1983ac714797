"""Elementwise and broadcasting ops: arithmetic, math functions, activations, comparisons,
logic, bitwise ops, selection and casts.

Every op here maps each output element from the elements at the same (broadcast) position
of its inputs. The references compute narrow floats (float16, bfloat16, float8, float4) in
float32 and round once at the end, so a compound activation such as Gelu loses no more
than one rounding to its element type. `erf`, `erfc`, `sigmoid` and `cast_array` are public so
other op families can reuse them.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from .. import dtypes
from ..dtypes import DType
from ..registry import PENDING_RULE, REQUIRED, Attr, Category, InferContext, OpDef, Precision
from ..shape_utils import broadcast_shapes, require_same_dtype
from ..types import Dim, TensorType, fresh_dim

# Element kinds (DType.kind) an op accepts.
FLOAT = ("float",)
INTEGER = ("int", "uint")
SIGNED = ("float", "int")
NUMERIC = ("float", "int", "uint")
BOOL = ("bool",)
ANY = ("float", "int", "uint", "bool", "string", "complex")


def _f32(x: float) -> float:
    """ONNX stores float attributes as float32: defaults use the same rounded value."""
    return float(np.float32(x))


# ---------------------------------------------------------------------------- helpers


def _is_ml_dtype(dt: np.dtype) -> bool:
    """Types numpy lacks (ml_dtypes): bfloat16, float8/float4, int4/uint4/int2/uint2."""
    return dt.type.__module__.startswith("ml_dtypes")


def _is_narrow_float(dt: np.dtype) -> bool:
    return dt == np.float16 or (_is_ml_dtype(dt) and dtypes.from_numpy(dt).is_float)


def _widen(x: np.ndarray) -> np.ndarray:
    """Floats narrower than float32 are computed in float32 (exact: each is a subset of it)."""
    x = np.asarray(x)
    return x.astype(np.float32) if _is_narrow_float(x.dtype) else x


def _as(y, dtype) -> np.ndarray:
    return np.asarray(y).astype(dtype, copy=False)


def _check_kinds(ctx: InferContext, i: int, kinds: tuple[str, ...]) -> None:
    t = ctx.input(i)
    if not isinstance(t, TensorType):
        raise ctx.error(f"input {i} must be a tensor, got {t}")
    if t.dtype.kind not in kinds:
        raise ctx.error(f"input {i} has element type {t.dtype}, expected a {' or '.join(kinds)} tensor")


def _broadcast(ctx: InferContext, types: list[TensorType]):
    try:
        return broadcast_shapes(*[t.shape for t in types])
    except ValueError as e:
        raise ctx.error(f"inputs {', '.join(str(t) for t in types)} do not broadcast: {e}") from None


def _checking_choices(infer, choices: dict | None):
    """Wrap an inference rule so enumerated attributes (Mod's fmod, Gelu's approximate...) are
    checked when the node is built, not when it first runs."""
    if not choices:
        return infer

    def checked(ctx: InferContext) -> list:
        for key, allowed in choices.items():
            if ctx.attrs[key] not in allowed:
                raise ctx.error(f"attribute {key} must be one of {', '.join(map(repr, allowed))}, "
                                f"got {ctx.attrs[key]!r}")
        return infer(ctx)

    return checked


def _elementwise_infer(kinds, result: DType | None = None):
    """One tensor in, one of the same shape out (with `result` element type if given)."""

    def infer(ctx: InferContext) -> list[TensorType]:
        _check_kinds(ctx, 0, kinds)
        x = ctx.input(0)
        return [x if result is None else x.with_dtype(result)]

    return infer


def _broadcast_infer(kinds, result: DType | None = None, same_dtype: bool = True):
    """All present inputs broadcast together; output dtype is `result` or input 0's."""

    def infer(ctx: InferContext) -> list[TensorType]:
        present = [i for i in range(len(ctx.inputs)) if ctx.has(i)]
        for i in present:
            _check_kinds(ctx, i, kinds)
        if same_dtype:
            require_same_dtype(ctx, *present)
        shape = _broadcast(ctx, [ctx.input(i) for i in present])
        return [TensorType(shape, result or ctx.input(0).dtype)]

    return infer


def _unary(name, fn, doc, *, kinds=FLOAT, precision=Precision.FOLLOW, attrs=None, result=None, choices=None, **facts):
    """A one-input op `Y = fn(X, **attrs)`, computed in a wide type and rounded to X's (or `result`)."""

    def reference(ctx, x):
        return _as(fn(_widen(x), **ctx.attrs), x.dtype if result is None else result.numpy)

    return OpDef(name=name, inputs=("X",), outputs=("Y",),
                 infer=_checking_choices(_elementwise_infer(kinds, result), choices),
                 reference=reference, category=Category.ELEMENTWISE, precision=precision,
                 attrs=dict(attrs or {}), doc=doc, **facts)


def _binary(name, fn, doc, *, kinds=NUMERIC, precision=Precision.FOLLOW, attrs=None, result=None,
            same_dtype=True, choices=None, shape_value=None):
    """A two-input broadcasting op `C = fn(A, B, **attrs)` with A's element type (or `result`)."""

    def reference(ctx, a, b):
        return _as(fn(_widen(a), _widen(b), **ctx.attrs), a.dtype if result is None else result.numpy)

    return OpDef(name=name, inputs=("A", "B"), outputs=("C",),
                 infer=_checking_choices(_broadcast_infer(kinds, result, same_dtype), choices),
                 reference=reference, category=Category.BROADCAST, precision=precision,
                 attrs=dict(attrs or {}), doc=doc, shape_value=shape_value)


def _variadic(name, combine, doc, *, kinds=NUMERIC, precision=Precision.FOLLOW, finish=None):
    """One or more broadcasting inputs folded pairwise by `combine`; `finish(acc, n)` post-processes."""

    def reference(ctx, *xs):
        acc = _widen(xs[0])
        for x in xs[1:]:
            acc = combine(acc, _widen(x))
        if finish is not None:
            acc = finish(acc, len(xs))
        return _as(acc, xs[0].dtype)

    return OpDef(name=name, inputs=("data_0+",), outputs=("result",), infer=_broadcast_infer(kinds),
                 reference=reference, category=Category.BROADCAST, precision=precision, doc=doc)


# ----------------------------------------------------------------------- math kernels


def _trunc_divide(a, b):
    """Integer division rounds toward zero (C semantics), unlike numpy's floor division."""
    if a.dtype.kind not in "iu":
        return np.true_divide(a, b)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = np.floor_divide(a, b)
        if a.dtype.kind == "i":
            # Floor and trunc differ by one where the division is inexact and the signs differ.
            inexact = (q * b != a) & ((a < 0) != (b < 0)) & (b != 0)
            q = q + inexact.astype(q.dtype)
    return q


def _mod(a, b, fmod):
    with np.errstate(divide="ignore", invalid="ignore"):
        # fmod=1: sign of the dividend (C fmod); fmod=0: sign of the divisor (floor modulo).
        return np.fmod(a, b) if fmod else np.mod(a, b)


def _power(x, y):
    """x ** y in x's element type; exponents may be of another type (ONNX Pow's T1)."""
    if x.dtype.kind in "iu" and y.dtype.kind in "iu" and not np.any(y < 0):
        return np.power(x, y.astype(x.dtype, copy=False))  # exact integer powers
    # float32 stays float32; any other mix (int base, int or float64 exponent) computes in float64.
    wide = np.float32 if x.dtype == y.dtype == np.float32 else np.float64
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.power(x.astype(wide, copy=False), y.astype(wide, copy=False))
        if x.dtype.kind in "iu":  # float result back to an integer base type truncates, as C does
            out = np.trunc(out)
    return out


def _bitshift(x, y, direction):
    """Shifts by >= the bit width (or negative) give what sign extension alone leaves: 0 or -1."""
    bits = x.dtype.itemsize * 8
    y64 = y.astype(np.int64)  # a huge uint64 count wraps negative: out of range either way
    valid = (y64 >= 0) & (y64 < bits)
    count = np.where(valid, y64, 0).astype(x.dtype)
    if direction == "LEFT":
        return np.where(valid, np.left_shift(x, count), 0)
    fill = np.where(x < 0, -1, 0) if x.dtype.kind == "i" else 0
    return np.where(valid, np.right_shift(x, count), fill)


# erf: a Taylor series below 2; above, erfc's continued fraction (Laplace), evaluated
# backward over a fixed depth. Both reach float64 rounding (checked against math.erf).
_ERF_TERMS = 32
_ERF_TAYLOR = np.array([2 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1))
                        for n in range(_ERF_TERMS)])
_ERFC_DEPTH = 48
_ERF_SPLIT = 2.0


def _horner(coeffs, t: np.ndarray) -> np.ndarray:
    """Polynomial in t, highest coefficient last; in place: a fixed number of whole-array steps."""
    acc = np.full_like(t, coeffs[-1])
    for c in coeffs[-2::-1]:
        acc *= t
        acc += c
    return acc


def _erf_series(x: np.ndarray) -> np.ndarray:
    """erf for |x| < 2: the Taylor series, Horner in x^2."""
    return x * _horner(_ERF_TAYLOR, x * x)


def _erfc_tail(a: np.ndarray) -> np.ndarray:
    """erfc for a >= 2: exp(-a^2) / sqrt(pi) / (a + (1/2)/(a + 1/(a + (3/2)/(a + ...)))). NaN stays NaN."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        frac = a.copy()
        for k in range(_ERFC_DEPTH, 0, -1):
            frac = a + (k / 2) / frac
        return np.exp(-a * a) / (math.sqrt(math.pi) * frac)


def erf(x) -> np.ndarray:
    """The error function, vectorized, computed in float64."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    out = np.empty_like(a)
    small = a < _ERF_SPLIT
    out[small] = _erf_series(a[small])
    out[~small] = 1.0 - _erfc_tail(a[~small])
    return np.copysign(out, x)


def erfc(x) -> np.ndarray:
    """1 - erf(x) without the cancellation that subtraction would suffer for large x."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    small = np.abs(x) < _ERF_SPLIT
    out[small] = 1.0 - _erf_series(x[small])  # in (0.004, 1.996): no cancellation to speak of
    big = x[~small]
    tail = _erfc_tail(np.abs(big))
    out[~small] = np.where(big > 0, tail, 2.0 - tail)
    return out


def sigmoid(x) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow: exp only ever sees -|x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(x):
    return np.logaddexp(0, x)  # log(1 + exp(x)) without overflow for large x


def _elu(x, alpha):
    return np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _selu(x, alpha, gamma):
    return gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _celu(x, alpha):
    return np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(np.minimum(x, 0) / alpha))


def _gelu(x, approximate):
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
        return x * sigmoid(2 * inner)  # = 0.5 x (1 + tanh(inner)), without cancellation for x << 0
    return 0.5 * x * erfc(-x / math.sqrt(2))  # = 0.5 x (1 + erf(x / sqrt 2)), accurate for x << 0


def _shrink(x, bias, lambd):
    return np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, 0))


def _isinf(x, detect_negative, detect_positive):
    return np.isinf(x) & (((x > 0) & bool(detect_positive)) | ((x < 0) & bool(detect_negative)))


def _relu(x):
    return np.maximum(x, 0)


def _leaky_relu(x, alpha):
    return np.where(x >= 0, x, alpha * x)


def _prelu(x, slope):
    return np.where(x >= 0, x, slope * x)


def _hard_sigmoid(x, alpha, beta):
    return np.clip(alpha * x + beta, 0, 1)


def _hard_swish(x):
    return x * np.clip(x / 6 + 0.5, 0, 1)


def _mish(x):
    return x * np.tanh(_softplus(x))


def _swish(x, alpha):
    return x * sigmoid(alpha * x)


def _thresholded_relu(x, alpha):
    return np.where(x > alpha, x, 0)


def _softsign(x):
    return x / (1 + np.abs(x))


def _reciprocal(x):
    with np.errstate(divide="ignore"):
        return 1 / x


def _quiet(fn):
    """Domain errors (log(-1), sqrt(-1), acosh(0)) give NaN/inf as ONNX expects, without warnings."""

    def call(x):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return fn(x)

    return call


def _binarize(x, threshold):
    return x > threshold


# ------------------------------------------------------- shape values (sizes as data)
# Exporters compute sizes at run time (Reshape(x, Concat(Shape(x)[0], Div(Shape(x)[2], heads)))).
# These hooks carry known sizes through integer arithmetic, so such a Reshape keeps `batch`
# and static dims; a size that is not provably known becomes a fresh symbol.


def _same_shape_value(ctx: InferContext) -> list:
    return [ctx.shape_value(0)]


def _dim_add(x: Dim, y: Dim) -> Dim:
    if isinstance(x, int) and isinstance(y, int):
        return x + y
    return x if y == 0 else y if x == 0 else fresh_dim("add")


def _dim_sub(x: Dim, y: Dim) -> Dim:
    if isinstance(x, int) and isinstance(y, int):
        return x - y
    return x if y == 0 else 0 if x == y else fresh_dim("sub")


def _dim_mul(x: Dim, y: Dim) -> Dim:
    if isinstance(x, int) and isinstance(y, int):
        return x * y
    return x if y == 1 else y if x == 1 else 0 if 0 in (x, y) else fresh_dim("mul")


def _dim_div(x: Dim, y: Dim) -> Dim:
    if isinstance(x, int) and isinstance(y, int) and y != 0:
        return abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)  # truncating, as Div on ints
    return x if y == 1 else 1 if x == y else fresh_dim("div")


def _broadcast_size_values(ctx: InferContext, count: int) -> list[tuple] | None:
    """The shape values of inputs 0..count-1 (0-D/1-D), a single entry repeated to the common length."""
    values = [ctx.shape_value(i) for i in range(count)]
    if any(v is None for v in values) or any(ctx.input(i).rank not in (0, 1) for i in range(count)):
        return None
    n = max(len(v) for v in values)
    if any(len(v) not in (1, n) for v in values):
        return None
    return [v * n if len(v) == 1 else v for v in values]


def _dim_arithmetic(dim_op):
    """Shape-value hook for a binary integer op on 0-D/1-D size tensors (broadcasting a single entry)."""

    def hook(ctx: InferContext) -> list:
        values = _broadcast_size_values(ctx, 2)
        if values is None or not ctx.input(0).dtype.is_int:
            return [None]
        return [tuple(dim_op(x, y) for x, y in zip(*values))]

    return hook


def _dims_equal(x: Dim, y: Dim) -> int | None:
    """1/0 when provable: equal ints, the same symbol, or a negative int against a size."""
    if isinstance(x, int) and isinstance(y, int):
        return int(x == y)
    if x == y:
        return 1
    if (isinstance(x, int) and x < 0) or (isinstance(y, int) and y < 0):
        return 0  # sizes are never negative (exporters compare shapes with -1)
    return None


def _equal_shape_value(ctx: InferContext) -> list:
    values = _broadcast_size_values(ctx, 2)
    if values is None:
        return [None]
    flags = tuple(_dims_equal(x, y) for x, y in zip(*values))
    return [None if None in flags else flags]


def _where_shape_value(ctx: InferContext) -> list:
    """Where(Equal(shape, -1), ones, shape), torch's export of expand, keeps the symbols."""
    values = _broadcast_size_values(ctx, 3)
    if values is None or not all(isinstance(c, int) for c in values[0]):
        return [None]
    return [tuple(x if c else y for c, x, y in zip(*values))]


# ----------------------------------------------------------------------------- casts

_FLOAT8 = (dtypes.float8e4m3fn, dtypes.float8e4m3fnuz, dtypes.float8e5m2, dtypes.float8e5m2fnuz)
_ROUND_MODES = ("up", "down", "nearest")
_E8M0_BIAS = 127
_E8M0_NAN = 0xFF
_E8M0_MAX = 0xFE


def _to_native(x: np.ndarray) -> np.ndarray:
    """An ml_dtypes array as the smallest numpy type holding it exactly (float32, int8, uint8)."""
    if not _is_ml_dtype(x.dtype):
        return x
    d = dtypes.from_numpy(x.dtype)
    if d.is_float:
        return x.astype(np.float32)
    return x.astype(np.int8 if d.kind == "int" else np.uint8)


def _strings_to_numbers(x: np.ndarray, to: DType) -> np.ndarray:
    """Parse numeric literals ("3.14", "1e-5", "+INF", "NaN", case-insensitive) element by element in C."""
    x = x.astype(object)
    lowered = np.char.lower(x.astype(str))
    if np.any((lowered == "true") | (lowered == "false")):  # bool's own spelling reads back too
        x = np.where(lowered == "true", "1", np.where(lowered == "false", "0", x)).astype(object)
    if to.is_int:
        try:  # integer literals parse exactly, even beyond float64's 53 bits
            return x.astype(np.int64 if to.kind == "int" else np.uint64)
        except (ValueError, TypeError, OverflowError):
            pass
    return x.astype(np.float64)  # float() accepts "INF", "+inf", "nan" and bytes alike


def _numbers_to_strings(x: np.ndarray) -> np.ndarray:
    """Plain decimal text ("314.15926"), shortest repr that reads back to the same value."""
    return _to_native(x).astype(str).astype(object)


def _to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    """Round |x| to a power of two 2^(e-127), e in [0, 254]; code 255 is NaN."""
    x = np.abs(_to_native(x).astype(np.float64))
    mant, exp = np.frexp(x)  # x = mant * 2^exp, mant in [0.5, 1): x lies in [2^(exp-1), 2^exp)
    down = exp - 1
    if round_mode == "down":
        k = down
    elif round_mode == "up":
        k = np.where(mant > 0.5, exp, down)
    else:  # nearest in value: the midpoint of [2^(exp-1), 2^exp) is mant = 0.75; ties go up
        k = np.where(mant >= 0.75, exp, down)
    code = k.astype(np.int64) + _E8M0_BIAS
    zero = x == 0  # below every power of two: the smallest code, or NaN without saturation
    code = np.where(zero, -1, code)
    in_range = (code >= 0) & (code <= _E8M0_MAX)
    if saturate:
        code = np.clip(code, 0, _E8M0_MAX)
        code = np.where(np.isinf(x), _E8M0_MAX, code)
    else:
        code = np.where(in_range, code, _E8M0_NAN)
        code = np.where(np.isinf(x), _E8M0_NAN, code)
    code = np.where(np.isnan(x), _E8M0_NAN, code)
    return code.astype(np.uint8).view(dtypes.float8e8m0.numpy)


def cast_array(x: np.ndarray, to: DType, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """ONNX Cast: numbers, bool and strings to any element type, with float8 saturation."""
    x = np.asarray(x)
    if to is dtypes.string:
        return x.astype(object) if x.dtype.kind in "OUS" else _numbers_to_strings(x)
    if x.dtype.kind in "OUS":
        x = _strings_to_numbers(x, to)
    if to is dtypes.float8e8m0:
        return _to_e8m0(x, saturate, round_mode)
    if to is dtypes.bool_:
        return _to_native(x) != 0  # NaN is "all else": True
    x = _to_native(x)
    if _is_ml_dtype(to.numpy) and to.is_float:
        # Integers, bool and float16 go through float64, which holds each exactly.
        if x.dtype.kind != "f" or x.dtype == np.float16:
            x = x.astype(np.float64)
        if to in _FLOAT8 and saturate:
            limit = float(ml_dtypes.finfo(to.numpy).max)
            x = np.clip(x.astype(np.float64), -limit, limit)  # +-inf too; NaN passes through
    with np.errstate(invalid="ignore", over="ignore"):  # float -> int out of range: undefined
        return x.astype(to.numpy)


def _cast_infer(ctx: InferContext) -> list[TensorType]:
    _check_kinds(ctx, 0, ANY)
    return [ctx.input(0).with_dtype(ctx.attrs["to"])]


def _cast_like_infer(ctx: InferContext) -> list[TensorType]:
    _check_kinds(ctx, 0, ANY)
    _check_kinds(ctx, 1, ANY)
    return [ctx.input(0).with_dtype(ctx.input(1).dtype)]


def _cast_shape_value(ctx: InferContext) -> list:
    """Integer sizes cast to another integer type are the same sizes."""
    if ctx.input(0).dtype.is_int and ctx.attrs["to"].is_int and ctx.input(0).rank in (0, 1):
        return _same_shape_value(ctx)
    return [None]


def _cast(ctx, x):
    return cast_array(x, ctx.attrs["to"], bool(ctx.attrs["saturate"]), ctx.attrs["round_mode"])


def _cast_like(ctx, x, target):
    to = dtypes.from_numpy(target.dtype)
    return cast_array(x, to, bool(ctx.attrs["saturate"]), ctx.attrs["round_mode"])


def _bitcast_infer(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    to = ctx.attrs["to"]
    for d, which in ((x.dtype, "input"), (to, "target")):
        if d is dtypes.string:
            raise ctx.error(f"{which} element type must not be string: BitCast reinterprets bits")
    if x.dtype.bits != to.bits:
        raise ctx.error(f"input {x.dtype} has {x.dtype.bits} bits, target {to} has {to.bits}: widths must match")
    return [x.with_dtype(to)]


def _bitcast(ctx, x):
    # Same width means the same bytes per element (sub-byte types hold their code in the low bits).
    return x.view(ctx.attrs["to"].numpy)


_CAST_ATTRS = {"saturate": Attr("int", 1), "round_mode": Attr("string", "up")}
_CAST_CHOICES = {"saturate": (0, 1), "round_mode": _ROUND_MODES}


# --------------------------------------------------------------- ops with odd operands


def _clip_infer(ctx: InferContext) -> list[TensorType]:
    _check_kinds(ctx, 0, NUMERIC)
    require_same_dtype(ctx, 0, 1, 2)
    for i in (1, 2):
        if ctx.has(i) and ctx.input(i).rank not in (None, 0, 1):
            raise ctx.error(f"input {i} ({'min' if i == 1 else 'max'}) must be a scalar, got {ctx.input(i)}")
    return [ctx.input(0)]


def _clip(ctx, x, lo=None, hi=None):
    y = _widen(x)
    if lo is not None:
        y = np.maximum(y, _widen(lo))
    if hi is not None:  # applied last: when min > max every element becomes max
        y = np.minimum(y, _widen(hi))
    return _as(y, x.dtype).reshape(x.shape)


def _where_infer(ctx: InferContext) -> list[TensorType]:
    _check_kinds(ctx, 0, BOOL)
    require_same_dtype(ctx, 1, 2)
    shape = _broadcast(ctx, [ctx.input(i) for i in range(3)])
    return [TensorType(shape, ctx.input(1).dtype)]


def _where(ctx, cond, x, y):
    return np.where(cond, x, y).astype(x.dtype, copy=False)


def _identity(ctx, x):
    return x  # values are immutable in the interpreter: no copy needed


def _identity_infer(ctx: InferContext) -> list:
    return [ctx.input(0)]  # tensors, sequences and optionals alike


def _mean(acc, n):
    return acc / n


# -------------------------------------------------------------------------- the table

_P = Precision
_ALPHA1 = {"alpha": Attr("float", 1.0)}

OPS = [
    # Arithmetic.
    _binary("Add", np.add, "Elementwise A + B with broadcasting.", shape_value=_dim_arithmetic(_dim_add)),
    _binary("Sub", np.subtract, "Elementwise A - B with broadcasting.", shape_value=_dim_arithmetic(_dim_sub)),
    _binary("Mul", np.multiply, "Elementwise A * B with broadcasting.", shape_value=_dim_arithmetic(_dim_mul)),
    _binary("Div", _trunc_divide, "Elementwise A / B with broadcasting; integers truncate toward zero.",
            shape_value=_dim_arithmetic(_dim_div)),
    _binary("Pow", _power, "Elementwise X ** Y with broadcasting; Y may have another numeric type.",
            precision=_P.FP32, same_dtype=False),
    _binary("Mod", _mod, "Elementwise remainder: sign of B (fmod=0, floor) or of A (fmod=1, C fmod).",
            attrs={"fmod": Attr("int", 0)}, choices={"fmod": (0, 1)}),
    _variadic("Max", np.maximum, "Elementwise maximum of one or more broadcasting inputs; NaN propagates."),
    _variadic("Min", np.minimum, "Elementwise minimum of one or more broadcasting inputs; NaN propagates."),
    _variadic("Sum", np.add, "Elementwise sum of one or more broadcasting inputs.", precision=_P.ACCUMULATE_FP32),
    _variadic("Mean", np.add, "Elementwise mean of one or more broadcasting inputs.", kinds=FLOAT,
              precision=_P.ACCUMULATE_FP32, finish=_mean),
    _unary("Neg", np.negative, "Elementwise -X.", kinds=SIGNED),
    _unary("Abs", np.abs, "Elementwise |X|.", kinds=NUMERIC),
    _unary("Sign", np.sign, "Elementwise sign: -1, 0 or 1 (NaN stays NaN).", kinds=NUMERIC),
    _unary("Reciprocal", _reciprocal, "Elementwise 1 / X."),
    _unary("Floor", np.floor, "Elementwise round toward -inf."),
    _unary("Ceil", np.ceil, "Elementwise round toward +inf."),
    _unary("Round", np.round, "Elementwise round to nearest, halves to even."),
    # Math functions.
    _unary("Sqrt", _quiet(np.sqrt), "Elementwise square root; NaN for negative X."),
    _unary("Exp", _quiet(np.exp), "Elementwise e ** X.", precision=_P.FP32),
    _unary("Log", _quiet(np.log), "Elementwise natural logarithm.", precision=_P.FP32),
    _unary("Erf", erf, "Elementwise Gauss error function.", precision=_P.FP32),
    _unary("Sin", np.sin, "Elementwise sine.", precision=_P.FP32),
    _unary("Cos", np.cos, "Elementwise cosine.", precision=_P.FP32),
    _unary("Tan", np.tan, "Elementwise tangent.", precision=_P.FP32),
    _unary("Asin", _quiet(np.arcsin), "Elementwise arcsine.", precision=_P.FP32),
    _unary("Acos", _quiet(np.arccos), "Elementwise arccosine.", precision=_P.FP32),
    _unary("Atan", np.arctan, "Elementwise arctangent.", precision=_P.FP32),
    _unary("Sinh", _quiet(np.sinh), "Elementwise hyperbolic sine.", precision=_P.FP32),
    _unary("Cosh", _quiet(np.cosh), "Elementwise hyperbolic cosine.", precision=_P.FP32),
    _unary("Tanh", np.tanh, "Elementwise hyperbolic tangent.", precision=_P.FP32),
    _unary("Asinh", np.arcsinh, "Elementwise inverse hyperbolic sine.", precision=_P.FP32),
    _unary("Acosh", _quiet(np.arccosh), "Elementwise inverse hyperbolic cosine.", precision=_P.FP32),
    _unary("Atanh", _quiet(np.arctanh), "Elementwise inverse hyperbolic tangent.", precision=_P.FP32),
    _unary("IsNaN", np.isnan, "Elementwise test for NaN.", result=dtypes.bool_, precision=_P.EXACT),
    _unary("IsInf", _isinf, "Elementwise test for +inf and/or -inf.", result=dtypes.bool_, precision=_P.EXACT,
           attrs={"detect_negative": Attr("int", 1), "detect_positive": Attr("int", 1)}),
    # Activations.
    _unary("Relu", _relu, "Elementwise max(X, 0).", kinds=SIGNED),
    _unary("LeakyRelu", _leaky_relu, "Elementwise X if X >= 0 else alpha * X.",
           attrs={"alpha": Attr("float", _f32(0.01))}),
    _binary("PRelu", _prelu, "Elementwise X if X >= 0 else slope * X; slope broadcasts to X.",
            kinds=NUMERIC),
    _unary("Elu", _elu, "Elementwise X if X >= 0 else alpha * (exp(X) - 1).", precision=_P.FP32,
           attrs=_ALPHA1),
    _unary("Selu", _selu, "Elementwise gamma * (X if X > 0 else alpha * (exp(X) - 1)).", precision=_P.FP32,
           attrs={"alpha": Attr("float", _f32(1.67326319217681884765625)),
                  "gamma": Attr("float", _f32(1.05070102214813232421875))}),
    _unary("Celu", _celu, "Elementwise max(0, X) + min(0, alpha * (exp(X / alpha) - 1)).", precision=_P.FP32,
           attrs=_ALPHA1),
    _unary("Sigmoid", sigmoid, "Elementwise 1 / (1 + exp(-X)).", precision=_P.FP32),
    _unary("HardSigmoid", _hard_sigmoid, "Elementwise clamp(alpha * X + beta, 0, 1).",
           attrs={"alpha": Attr("float", _f32(0.2)), "beta": Attr("float", 0.5)}),
    _unary("HardSwish", _hard_swish, "Elementwise X * clamp(X / 6 + 1/2, 0, 1)."),
    _unary("Softplus", _softplus, "Elementwise log(1 + exp(X)).", precision=_P.FP32),
    _unary("Softsign", _softsign, "Elementwise X / (1 + |X|)."),
    _unary("Mish", _mish, "Elementwise X * tanh(softplus(X)).", precision=_P.FP32),
    _unary("Swish", _swish, "Elementwise X * sigmoid(alpha * X).", precision=_P.FP32, attrs=_ALPHA1),
    _unary("Gelu", _gelu, "Elementwise Gaussian error linear unit, exact (erf) or tanh-approximated.",
           precision=_P.FP32, attrs={"approximate": Attr("string", "none")},
           choices={"approximate": ("none", "tanh")}),
    _unary("ThresholdedRelu", _thresholded_relu, "Elementwise X if X > alpha else 0.", attrs=_ALPHA1),
    _unary("Shrink", _shrink, "Elementwise X + bias below -lambd, X - bias above lambd, else 0.",
           kinds=NUMERIC, attrs={"bias": Attr("float", 0.0), "lambd": Attr("float", 0.5)}),
    OpDef(name="Clip", inputs=("input", "min?", "max?"), outputs=("output",), infer=_clip_infer,
          reference=_clip, category=Category.BROADCAST, precision=_P.FOLLOW,
          doc="Elementwise clamp of input to the optional scalar bounds min and max."),
    # Comparisons (bool results).
    _binary("Equal", np.equal, "Elementwise A == B (numbers, bool or strings).",
            kinds=ANY, result=dtypes.bool_, precision=_P.EXACT, shape_value=_equal_shape_value),
    _binary("Less", np.less, "Elementwise A < B.", result=dtypes.bool_, precision=_P.EXACT),
    _binary("LessOrEqual", np.less_equal, "Elementwise A <= B.", result=dtypes.bool_, precision=_P.EXACT),
    _binary("Greater", np.greater, "Elementwise A > B.", result=dtypes.bool_, precision=_P.EXACT),
    _binary("GreaterOrEqual", np.greater_equal, "Elementwise A >= B.", result=dtypes.bool_, precision=_P.EXACT),
    # Logic and bits.
    _binary("And", np.logical_and, "Elementwise logical and of bool tensors.", kinds=BOOL, precision=_P.EXACT),
    _binary("Or", np.logical_or, "Elementwise logical or of bool tensors.", kinds=BOOL, precision=_P.EXACT),
    _binary("Xor", np.logical_xor, "Elementwise logical xor of bool tensors.", kinds=BOOL, precision=_P.EXACT),
    _unary("Not", np.logical_not, "Elementwise logical not of a bool tensor.", kinds=BOOL, precision=_P.EXACT),
    _binary("BitwiseAnd", np.bitwise_and, "Elementwise bitwise and.", kinds=INTEGER, precision=_P.EXACT),
    _binary("BitwiseOr", np.bitwise_or, "Elementwise bitwise or.", kinds=INTEGER, precision=_P.EXACT),
    _binary("BitwiseXor", np.bitwise_xor, "Elementwise bitwise xor.", kinds=INTEGER, precision=_P.EXACT),
    _unary("BitwiseNot", np.invert, "Elementwise bitwise complement.", kinds=INTEGER, precision=_P.EXACT),
    _binary("BitShift", _bitshift, "Elementwise shift of X by Y bits (direction LEFT or RIGHT, arithmetic for signed).",
            kinds=INTEGER, precision=_P.EXACT, attrs={"direction": Attr("string", REQUIRED)},
            choices={"direction": ("LEFT", "RIGHT")}),
    # Selection, copies and casts.
    OpDef(name="Where", inputs=("condition", "X", "Y"), outputs=("output",), infer=_where_infer,
          reference=_where, category=Category.BROADCAST, precision=_P.EXACT, shape_value=_where_shape_value,
          doc="Elementwise X where condition else Y, all three broadcasting."),
    OpDef(name="Identity", inputs=("input",), outputs=("output",), infer=_identity_infer,
          reference=_identity, category=Category.ELEMENTWISE, precision=_P.EXACT,
          shape_value=_same_shape_value,
          doc="The input unchanged (a tensor, sequence or optional).", view=True),
    OpDef(name="Cast", inputs=("input",), outputs=("output",), infer=_checking_choices(_cast_infer, _CAST_CHOICES),
          reference=_cast, category=Category.ELEMENTWISE, precision=_P.EXACT,
          attrs={"to": Attr("dtype", REQUIRED), **_CAST_ATTRS}, shape_value=_cast_shape_value,
          doc="Elementwise conversion to element type `to` (float8 saturation, e8m0 rounding, strings)."),
    OpDef(name="CastLike", inputs=("input", "target_type"), outputs=("output",),
          infer=_checking_choices(_cast_like_infer, _CAST_CHOICES),
          reference=_cast_like, category=Category.ELEMENTWISE, precision=_P.EXACT, attrs=dict(_CAST_ATTRS),
          doc="Cast to the element type of target_type (whose values are unused)."),
    OpDef(name="BitCast", inputs=("input",), outputs=("output",), infer=_bitcast_infer, reference=_bitcast,
          category=Category.ELEMENTWISE, precision=_P.EXACT, attrs={"to": Attr("dtype", REQUIRED)},
          doc="Reinterpret each element's bits as element type `to` of the same width.", not_lowerable=PENDING_RULE),
    # ai.onnx.ml
    _unary("ml.Binarizer", _binarize, "Elementwise 1 where X > threshold else 0, in X's type.", kinds=NUMERIC,
           precision=_P.EXACT, attrs={"threshold": Attr("float", 0.0)}),
]
