"""Elementwise and broadcasting ops: each reference against an independent formula, run
through the interpreter with run-time type checks, plus the edge cases ONNX specifies
(integer division, Mod signs, shifts past the width, float8/e8m0/string casts).

onnx's reference evaluator serves as an oracle for the Cast matrix only; our references
never call it.
"""
from __future__ import annotations

import math
import warnings

import ml_dtypes
import numpy as np
import pytest

from compiler.ir import GraphBuilder, Interpreter, ShapeInferenceError, dtypes, get_op
from compiler.ir.ops.elementwise import cast_array, erf, erfc
from compiler.ir.types import SequenceType, TensorType


def run_op(op: str, *arrays, **attrs):
    """One node, inputs fed at run time (None = a missing optional input), types checked."""
    b = GraphBuilder(op.lower())
    feeds, values = {}, []
    for i, a in enumerate(arrays):
        if a is None:
            values.append(None)
            continue
        a = np.asarray(a)
        values.append(b.input(f"x{i}", TensorType(a.shape, dtypes.from_numpy(a.dtype))))
        feeds[f"x{i}"] = a
    b.output(b.op(op, *values, **attrs))
    out = Interpreter(check_types=True).run(b.build(), feeds)
    return next(iter(out.values()))


def infer_error(op: str, *types, **attrs) -> str:
    b = GraphBuilder()
    values = [b.input(f"x{i}", t) for i, t in enumerate(types)]
    with pytest.raises(ShapeInferenceError) as info:
        b.op(op, *values, **attrs)
    return str(info.value)


RNG = np.random.default_rng(0)
FLOAT_TYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]
TOL = {np.float32: 2e-6, np.float64: 1e-12, np.float16: 1e-3, ml_dtypes.bfloat16: 8e-3}


def _sigmoid(v):
    return 1 / (1 + math.exp(-v)) if v > -700 else 0.0


def _softplus(v):
    return math.log1p(math.exp(v)) if v < 30 else v


# name -> (attrs, scalar formula, input range). Formulas are per element with `math`: a
# deliberately different path from the vectorized references under test.
UNARY = {
    "Neg": ({}, lambda v: -v, (-5, 5)),
    "Abs": ({}, abs, (-5, 5)),
    "Sign": ({}, lambda v: float(np.sign(v)), (-5, 5)),
    "Reciprocal": ({}, lambda v: 1 / v, (0.5, 5)),
    "Floor": ({}, math.floor, (-5, 5)),
    "Ceil": ({}, math.ceil, (-5, 5)),
    "Sqrt": ({}, math.sqrt, (0, 5)),
    "Exp": ({}, math.exp, (-5, 5)),
    "Log": ({}, math.log, (0.1, 5)),
    "Erf": ({}, math.erf, (-4, 4)),
    "Sin": ({}, math.sin, (-5, 5)),
    "Cos": ({}, math.cos, (-5, 5)),
    "Tan": ({}, math.tan, (-1.2, 1.2)),
    "Asin": ({}, math.asin, (-0.99, 0.99)),
    "Acos": ({}, math.acos, (-0.99, 0.99)),
    "Atan": ({}, math.atan, (-5, 5)),
    "Sinh": ({}, math.sinh, (-5, 5)),
    "Cosh": ({}, math.cosh, (-5, 5)),
    "Tanh": ({}, math.tanh, (-5, 5)),
    "Asinh": ({}, math.asinh, (-5, 5)),
    "Acosh": ({}, math.acosh, (1.01, 5)),
    "Atanh": ({}, math.atanh, (-0.99, 0.99)),
    "Relu": ({}, lambda v: max(v, 0.0), (-5, 5)),
    "LeakyRelu": ({"alpha": 0.1}, lambda v: v if v >= 0 else 0.1 * v, (-5, 5)),
    "Elu": ({"alpha": 0.5}, lambda v: v if v >= 0 else 0.5 * (math.exp(v) - 1), (-5, 5)),
    "Selu": ({"alpha": 1.5, "gamma": 1.25}, lambda v: 1.25 * (v if v > 0 else 1.5 * (math.exp(v) - 1)), (-5, 5)),
    "Celu": ({"alpha": 2.0}, lambda v: max(0, v) + min(0, 2 * (math.exp(v / 2) - 1)), (-5, 5)),
    "Sigmoid": ({}, _sigmoid, (-20, 20)),
    "HardSigmoid": ({"alpha": 0.3, "beta": 0.4}, lambda v: min(1, max(0, 0.3 * v + 0.4)), (-5, 5)),
    "HardSwish": ({}, lambda v: v * min(1, max(0, v / 6 + 0.5)), (-5, 5)),
    "Softplus": ({}, _softplus, (-20, 40)),
    "Softsign": ({}, lambda v: v / (1 + abs(v)), (-5, 5)),
    "Mish": ({}, lambda v: v * math.tanh(_softplus(v)), (-5, 5)),
    "Swish": ({"alpha": 2.0}, lambda v: v * _sigmoid(2 * v), (-5, 5)),
    "Gelu": ({}, lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))), (-5, 5)),
    "ThresholdedRelu": ({"alpha": 0.5}, lambda v: v if v > 0.5 else 0.0, (-5, 5)),
    "Shrink": ({"lambd": 1.0, "bias": 0.5}, lambda v: v + 0.5 if v < -1 else (v - 0.5 if v > 1 else 0.0), (-5, 5)),
}


@pytest.mark.parametrize("dtype", FLOAT_TYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops_match_scalar_formulas(name, dtype):
    attrs, formula, (lo, hi) = UNARY[name]
    x = RNG.uniform(lo, hi, size=(3, 17)).astype(dtype)
    y = run_op(name, x, **attrs)
    assert y.dtype == x.dtype and y.shape == x.shape
    # The formula sees exactly the values the op saw (after rounding to `dtype`).
    want = np.vectorize(formula, otypes=[np.float64])(x.astype(np.float64))
    tol = TOL[dtype] * (10 if name in ("Tan", "Cosh", "Sinh", "Exp") else 1)
    np.testing.assert_allclose(y.astype(np.float64), want, rtol=tol, atol=tol)


def test_gelu_tanh_approximation():
    x = np.linspace(-6, 6, 101).astype(np.float32)
    inner = np.sqrt(2 / np.pi) * (x.astype(np.float64) + 0.044715 * x.astype(np.float64) ** 3)
    want = 0.5 * x * (1 + np.tanh(inner))
    np.testing.assert_allclose(run_op("Gelu", x, approximate="tanh"), want, rtol=1e-6, atol=1e-12)


def test_round_is_half_to_even_and_keeps_specials():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 2.3, -0.0, np.inf, np.nan], np.float32)
    np.testing.assert_array_equal(run_op("Round", x), [0, 2, 2, -0, -2, 2, -0, np.inf, np.nan])


def test_isinf_isnan_and_sign_of_specials():
    x = np.array([np.inf, -np.inf, np.nan, 1.0, -0.0], np.float32)
    np.testing.assert_array_equal(run_op("IsInf", x), [True, True, False, False, False])
    np.testing.assert_array_equal(run_op("IsInf", x, detect_negative=0), [True, False, False, False, False])
    np.testing.assert_array_equal(run_op("IsInf", x, detect_positive=0), [False, True, False, False, False])
    np.testing.assert_array_equal(run_op("IsNaN", x.astype(np.float16)), [False, False, True, False, False])


def test_erf_is_accurate_everywhere():
    x = np.concatenate([np.linspace(-8, 8, 4001), np.logspace(-300, 1, 400), -np.logspace(-20, 1, 100)])
    want = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(erf(x), want, rtol=1e-15, atol=0)
    np.testing.assert_allclose(erfc(x), [math.erfc(v) for v in x], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(erf(np.array([np.inf, -np.inf, 0.0, -0.0])), [1, -1, 0, -0.0])
    assert np.signbit(erf(np.array(-0.0))) and np.isnan(erf(np.array(np.nan)))


def test_activations_do_not_overflow_at_extremes():
    x = np.array([-1e4, -100, 100, 1e4], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(run_op("Sigmoid", x), [0, 0, 1, 1], atol=1e-30)
        np.testing.assert_allclose(run_op("Softplus", x), [0, 0, 100, 1e4], rtol=1e-6, atol=1e-30)
        np.testing.assert_allclose(run_op("Mish", x), [0, 0, 100, 1e4], rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_integer_division_truncates_toward_zero(dtype):
    a = np.array([7, -7, 7, -7, 6, -6, 0], dtype)
    b = np.array([2, 2, -2, -2, 3, 3, 5], dtype)
    np.testing.assert_array_equal(run_op("Div", a, b), [3, -3, -3, 3, 2, -2, 0])


def test_unsigned_division_and_broadcasting():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    b = np.array([1, 2, 3, 4], np.uint8)
    np.testing.assert_array_equal(run_op("Div", a, b), a // b)
    np.testing.assert_allclose(run_op("Div", a.astype(np.float32), b.astype(np.float32)), a / b.astype(np.float32))


def test_mod_signs_follow_fmod_attribute():
    a = np.array([-4, 7, 5, 4, -7, 8], np.int32)
    b = np.array([2, -3, 8, -2, 3, 5], np.int32)
    np.testing.assert_array_equal(run_op("Mod", a, b), [0, -2, 5, 0, 2, 3])  # sign of the divisor
    np.testing.assert_array_equal(run_op("Mod", a, b, fmod=1), [0, 1, 5, 0, -1, 3])  # sign of the dividend
    x = np.array([-4.3, 7.2, 0.0, -0.0, np.inf, 1.0], np.float32)
    y = np.array([2.1, -3.4, -2.0, 2.0, 2.0, 0.0], np.float32)
    got = run_op("Mod", x, y)
    np.testing.assert_allclose(got[:2], [2.0, -3.0], rtol=1e-5)
    assert np.signbit(got[2]) and not np.signbit(got[3]) and np.isnan(got[4]) and np.isnan(got[5])


def test_pow_with_mixed_base_and_exponent_types():
    base_f = np.array([1.5, 2.0, 3.0], np.float32)
    np.testing.assert_allclose(run_op("Pow", base_f, np.array([2, 3, -1], np.int64)), [2.25, 8, 1 / 3], rtol=1e-6)
    base_i = np.array([2, 3, -2], np.int64)
    np.testing.assert_array_equal(run_op("Pow", base_i, np.array([3, 2, 3], np.int64)), [8, 9, -8])
    np.testing.assert_array_equal(run_op("Pow", base_i, np.array([1.5, 2.0, 2.0], np.float32)), [2, 9, 4])
    np.testing.assert_array_equal(run_op("Pow", np.array([2, 1, -1], np.int32), np.array([-1, -2, -1], np.int32)),
                                  [0, 1, -1])
    assert run_op("Pow", base_f.astype(np.float16), np.float16(2)).dtype == np.float16


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint8, np.uint64])
def test_bitshift_including_shifts_past_the_width(dtype):
    bits = np.dtype(dtype).itemsize * 8
    x = np.array([16, 4, 1, 3], dtype)
    y = np.array([1, 2, bits, bits + 3], dtype)
    np.testing.assert_array_equal(run_op("BitShift", x, y, direction="LEFT"), [32, 16, 0, 0])
    np.testing.assert_array_equal(run_op("BitShift", x, y, direction="RIGHT"), [8, 1, 0, 0])
    if np.dtype(dtype).kind == "i":
        neg = np.array([-16, -16, -16, -1], dtype)
        shifts = np.array([2, bits, -1, 1], dtype)
        np.testing.assert_array_equal(run_op("BitShift", neg, shifts, direction="RIGHT"), [-4, -1, -1, -1])
        np.testing.assert_array_equal(run_op("BitShift", neg, shifts, direction="LEFT"), [-64, 0, 0, -2])


def test_bitwise_and_logic_ops():
    a = np.array([[0b1100, 0b1010]], np.int16)
    b = np.array([[0b1010], [0b0110]], np.int16)
    np.testing.assert_array_equal(run_op("BitwiseAnd", a, b), a & b)
    np.testing.assert_array_equal(run_op("BitwiseOr", a, b), a | b)
    np.testing.assert_array_equal(run_op("BitwiseXor", a, b), a ^ b)
    np.testing.assert_array_equal(run_op("BitwiseNot", np.array([0, 255], np.uint8)), [255, 0])
    p = np.array([True, True, False, False])
    q = np.array([True, False, True, False])
    np.testing.assert_array_equal(run_op("And", p, q), p & q)
    np.testing.assert_array_equal(run_op("Or", p, q), p | q)
    np.testing.assert_array_equal(run_op("Xor", p, q), p ^ q)
    np.testing.assert_array_equal(run_op("Not", p), ~p)


@pytest.mark.parametrize("name, fn", [("Equal", np.equal), ("Less", np.less), ("LessOrEqual", np.less_equal),
                                      ("Greater", np.greater), ("GreaterOrEqual", np.greater_equal)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8, np.uint64, ml_dtypes.bfloat16])
def test_comparisons_broadcast_to_bool(name, fn, dtype):
    a = RNG.integers(0, 4, size=(2, 3, 1)).astype(dtype)
    b = RNG.integers(0, 4, size=(4,)).astype(dtype)
    got = run_op(name, a, b)
    assert got.dtype == np.bool_ and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, fn(a.astype(np.float64), b.astype(np.float64)))


def test_equal_compares_strings():
    a = np.array([["a", "bc"], ["", "x"]], dtype=object)
    b = np.array(["a", "x"], dtype=object)
    np.testing.assert_array_equal(run_op("Equal", a, b), [[True, False], [False, True]])


def test_variadic_ops_broadcast_every_input():
    a = np.array([[1.0], [np.nan]], np.float32)
    b = np.array([3.0, 0.0, 2.0], np.float32)
    c = np.float32(1.5)
    np.testing.assert_array_equal(run_op("Max", a, b, c), [[3, 1.5, 2], [np.nan] * 3])
    np.testing.assert_array_equal(run_op("Min", a, b, c), [[1, 0, 1], [np.nan] * 3])
    np.testing.assert_array_equal(run_op("Sum", a[:1], b, c), [[5.5, 2.5, 4.5]])
    np.testing.assert_allclose(run_op("Mean", a[:1], b, c), [[5.5 / 3, 2.5 / 3, 4.5 / 3]])
    np.testing.assert_array_equal(run_op("Max", np.array([1, 5], np.uint32)), [1, 5])


def test_clip_with_optional_bounds():
    x = np.array([-3, -1, 0, 2, 9], np.int8)
    np.testing.assert_array_equal(run_op("Clip", x, np.int8(-1), np.int8(3)), [-1, -1, 0, 2, 3])
    np.testing.assert_array_equal(run_op("Clip", x, None, np.int8(1)), [-3, -1, 0, 1, 1])
    np.testing.assert_array_equal(run_op("Clip", x, np.int8(0)), [0, 0, 0, 2, 9])
    np.testing.assert_array_equal(run_op("Clip", x), x)
    np.testing.assert_array_equal(run_op("Clip", x.astype(np.float32), np.float32(2), np.float32(1)), [1] * 5)


def test_prelu_slope_broadcasts_to_x():
    x = np.array([[-2.0, 3.0], [-4.0, -1.0]], np.float32)
    slope = np.array([0.5, 0.1], np.float32)
    np.testing.assert_allclose(run_op("PRelu", x, slope), [[-1.0, 3.0], [-2.0, -0.1]])


def test_where_broadcasts_and_selects_strings():
    cond = np.array([[True], [False]])
    x = np.array(["a", "b"], dtype=object)
    y = np.array(["z"], dtype=object)
    np.testing.assert_array_equal(run_op("Where", cond, x, y), [["a", "b"], ["z", "z"]])


def test_identity_passes_sequences_through():
    b = GraphBuilder()
    seq = b.input("s", SequenceType(TensorType([2], dtypes.float32)))
    b.output(b.op("Identity", seq))
    items = [np.ones(2, np.float32), np.zeros(2, np.float32)]
    out = Interpreter(check_types=True).run(b.build(), {"s": items})
    assert [a.tolist() for a in next(iter(out.values()))] == [[1, 1], [0, 0]]


# ------------------------------------------------------------------------------- casts


NUMERIC_TYPES = [d for d in dtypes.ALL_DTYPES if d.kind in ("float", "int", "uint", "bool")]


def _exact_in(v: np.ndarray, d) -> np.ndarray:
    """Which of the values `v` type `d` holds exactly."""
    return cast_array(cast_array(v, d), dtypes.float64) == v


def _sample(src, to):
    """Values both types hold exactly, so the conversion is defined and exact."""
    v = np.array([0.0, 1.0, -1.0, 2.0, 0.5, -3.0, 96.0])
    keep = _exact_in(v, src)
    if to not in (dtypes.bool_, dtypes.string):
        keep &= _exact_in(v, to)
    return cast_array(v[keep], src)


@pytest.mark.parametrize("src", NUMERIC_TYPES, ids=str)
@pytest.mark.parametrize("to", NUMERIC_TYPES + [dtypes.string], ids=str)
def test_cast_every_pair_of_types(src, to):
    x = _sample(src, to)
    y = run_op("Cast", x, to=to)
    assert y.shape == x.shape
    if to is dtypes.string:
        assert y.dtype == object and all(isinstance(s, str) for s in y)
        back = cast_array(y, dtypes.float64)
    else:
        assert y.dtype == to.numpy
        back = cast_array(y, dtypes.float64)
    want = cast_array(x, dtypes.float64)
    if to is dtypes.bool_:
        want = (want != 0).astype(np.float64)
    np.testing.assert_array_equal(back, want)


@pytest.mark.parametrize("to", [dtypes.float8e4m3fn, dtypes.float8e4m3fnuz, dtypes.float8e5m2, dtypes.float8e5m2fnuz])
@pytest.mark.parametrize("src", [np.float32, np.float16])
def test_float8_saturation_against_onnx_reference(to, src):
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    with np.errstate(over="ignore"):  # 1e6 is inf in float16: that case is wanted too
        x = np.array([0.47892547, 1e6, 1e-7, np.nan, np.inf, -np.inf, -1e-7, -1e6, -0.0, 300.0], np.float32).astype(src)
    for saturate in (1, 0):
        node = helper.make_node("Cast", ["x"], ["y"], to=to.onnx, saturate=saturate)
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", dtypes.from_numpy(src).onnx, None)],
                              [helper.make_tensor_value_info("y", to.onnx, None)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            oracle = ReferenceEvaluator(helper.make_model(g)).run(None, {"x": x})[0]
        got = run_op("Cast", x, to=to, saturate=saturate)
        np.testing.assert_array_equal(got.view(np.uint8), oracle.view(np.uint8))


def test_cast_to_e8m0_rounding_modes():
    x = np.array([0.0, 0.124, 0.25, 1.1, 3.0, 2.0 ** 200, np.inf, np.nan])
    up = run_op("Cast", x, to=dtypes.float8e8m0)
    top = 2.0 ** 127
    np.testing.assert_array_equal(up.astype(np.float64), [2.0 ** -127, 0.125, 0.25, 2, 4, top, top, np.nan])
    down = run_op("Cast", x, to=dtypes.float8e8m0, round_mode="down")
    np.testing.assert_array_equal(down.astype(np.float64)[1:5], [0.0625, 0.25, 1, 2])
    nearest = run_op("Cast", x, to=dtypes.float8e8m0, round_mode="nearest", saturate=0)
    np.testing.assert_array_equal(nearest.astype(np.float64), [np.nan, 0.125, 0.25, 1, 4, np.nan, np.nan, np.nan])


def test_cast_sub_byte_integers_wrap():
    # Integers wrap. (Out-of-range floats are undefined in ONNX; ml_dtypes' answer for them
    # differs by CPU, so only in-range floats are checked.)
    x = np.arange(-9, 16).astype(np.int64)
    np.testing.assert_array_equal(run_op("Cast", x, to=dtypes.int4).astype(np.int8), (x + 8) % 16 - 8)
    np.testing.assert_array_equal(run_op("Cast", x, to=dtypes.uint2).astype(np.uint8), x % 4)
    f = np.arange(-8, 8).astype(np.float32)
    np.testing.assert_array_equal(run_op("Cast", f, to=dtypes.int4).astype(np.int8), f.astype(np.int8))
    np.testing.assert_array_equal(run_op("Cast", np.array([200, -56], np.int16), to=dtypes.int8), [-56, -56])


def test_cast_strings_both_ways():
    s = np.array(["3.5", "1e-5", "+INF", "-inf", "NaN", "-2", "1E8"], dtype=object)
    f = run_op("Cast", s, to=dtypes.float32)
    np.testing.assert_array_equal(f, np.array([3.5, 1e-5, np.inf, -np.inf, np.nan, -2, 1e8], np.float32))
    np.testing.assert_array_equal(run_op("Cast", np.array(["100.5", "-7"], dtype=object), to=dtypes.int32), [100, -7])
    np.testing.assert_array_equal(run_op("Cast", np.array(["9007199254740993"], dtype=object), to=dtypes.int64),
                                  [9007199254740993])  # exact beyond float64's 53 bits
    text = run_op("Cast", np.array([314.15926, -0.5, np.inf], np.float32), to=dtypes.string)
    assert list(text) == ["314.15927", "-0.5", "inf"]
    assert list(run_op("Cast", np.array([7, -3], ml_dtypes.int4),
                       to=dtypes.string)) == ["7", "-3"]
    assert list(run_op("Cast", text, to=dtypes.string)) == list(text)


def test_cast_like_takes_the_target_type_only():
    x = np.array([1.7, -2.2, 300.0], np.float32)
    got = run_op("CastLike", x, np.zeros(0, ml_dtypes.float8_e4m3fn))
    assert got.dtype == ml_dtypes.float8_e4m3fn
    np.testing.assert_array_equal(got.astype(np.float32), [1.75, -2.25, 288])
    assert run_op("CastLike", x, np.array(["a"], dtype=object)).dtype == object


def test_bitcast_reinterprets_bits():
    x = np.array([1.0, -2.0], np.float32)
    np.testing.assert_array_equal(run_op("BitCast", x, to=dtypes.int32), x.view(np.int32))
    np.testing.assert_array_equal(run_op("BitCast", np.float32(1.0), to=dtypes.uint32), np.uint32(0x3F800000))
    i4 = np.array([-1, 7, -8], ml_dtypes.int4)
    np.testing.assert_array_equal(run_op("BitCast", i4, to=dtypes.uint4).astype(np.uint8), [15, 7, 8])


# -------------------------------------------------------------------- inference errors


def test_inference_names_bad_element_types():
    f32, i64 = TensorType([2], dtypes.float32), TensorType([2], dtypes.int64)
    assert "input 1 has element type i64, expected f32" in infer_error("Add", f32, i64)
    assert "expected a bool tensor" in infer_error("Not", f32)
    assert "expected a float tensor" in infer_error("Exp", i64)
    assert "widths must match" in infer_error("BitCast", f32, to=dtypes.int64)
    assert "round_mode" in infer_error("Cast", f32, to=dtypes.float8e8m0, round_mode="sideways")


def test_inference_rejects_shapes_that_do_not_broadcast():
    msg = infer_error("Mul", TensorType([2, 3], dtypes.float32), TensorType([4], dtypes.float32))
    assert "do not broadcast" in msg


def test_inference_keeps_symbolic_dims():
    b = GraphBuilder()
    x = b.input("x", TensorType(["batch", 1, 8], dtypes.float32))
    y = b.input("y", TensorType([4, 1], dtypes.float32))
    assert b.op("Add", x, y).type == TensorType(["batch", 4, 8], dtypes.float32)
    assert b.op("Cast", x, to=dtypes.float16).type == TensorType(["batch", 1, 8], dtypes.float16)


def test_fusion_categories_and_precision_policies():
    from compiler.ir.ops import elementwise
    from compiler.ir.registry import Category, Precision

    for op in elementwise.OPS:
        single = op.input_arity == (1, 1) or op.name == "CastLike"  # CastLike reads only its target's type
        assert op.category is (Category.ELEMENTWISE if single else Category.BROADCAST), op.name
    assert get_op("Exp").precision is Precision.FP32 and get_op("Gelu").precision is Precision.FP32
    assert get_op("Equal").precision is Precision.EXACT and get_op("Cast").precision is Precision.EXACT
    assert get_op("Add").precision is Precision.FOLLOW


def test_large_tensors_are_vectorized():
    import time

    x = RNG.standard_normal((128, 3072)).astype(np.float32)
    start = time.perf_counter()
    for name in ("Gelu", "Sigmoid", "Erf", "Mish"):
        run_op(name, x)
    run_op("Cast", x, to=dtypes.float8e4m3fn)
    assert time.perf_counter() - start < 5.0


def test_enumerated_attributes_are_checked_when_the_node_is_built():
    f32, i32 = TensorType([2], dtypes.float32), TensorType([2], dtypes.int32)
    assert "fmod must be one of 0, 1" in infer_error("Mod", i32, i32, fmod=2)
    assert "direction must be one of 'LEFT', 'RIGHT'" in infer_error("BitShift", i32, i32, direction="UP")
    assert "approximate" in infer_error("Gelu", f32, approximate="erf")


def test_size_arithmetic_keeps_symbols_through_reshape():
    """Reshape(x, Concat(Shape(x)[0], Shape(x)[1], heads, Shape(x)[2] / heads)), as exporters write it."""
    b = GraphBuilder()
    x = b.input("x", TensorType(["batch", "seq", 768], dtypes.float32))
    shape = b.op("Shape", x)
    dims = [b.op("Gather", shape, b.const(np.array([i], np.int64))) for i in range(3)]
    head_dim = b.op("Cast", b.op("Div", dims[2], b.const(np.array(12, np.int64))), to=dtypes.int64)
    target = b.op("Concat", dims[0], b.op("Identity", dims[1]), b.const(np.array([12], np.int64)), head_dim, axis=0)
    assert b.op("Reshape", x, target).type == TensorType(["batch", "seq", 12, 64], dtypes.float32)
    same = b.op("Mul", dims[0], b.const(np.array([1], np.int64)))
    assert same.shape_value == ("batch",)
    assert b.op("Sub", dims[1], dims[1]).const.tolist() == [0]  # seq - seq folds to a constant
