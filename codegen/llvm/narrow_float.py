"""Narrow float values on the llvm target (float8 and float4: `codegen.narrow_floats`): they
live in float32 registers (as bfloat16's do) and in memory as their codes, a byte each.
`encode` rounds float32 to a code (to nearest even; what overflows becomes the type's
overflow code: infinity or NaN, as ml_dtypes and ONNX's Cast with saturate=0 do, or the
largest value where the type saturates; Cast's saturation clamps before it). `decode`
widens a code exactly. Both work on scalars and vectors with integer arithmetic on the bits.
"""
from __future__ import annotations

import llvmlite.ir as ir

from ..narrow_floats import NARROW_FLOATS

I8, I32 = ir.IntType(8), ir.IntType(32)

def _like(v, scalar: ir.Type) -> ir.Type:
    return ir.VectorType(scalar, v.type.count) if isinstance(v.type, ir.VectorType) else scalar


def _const(v, scalar: ir.Type, value):
    ty = _like(v, scalar)
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(scalar, value)] * ty.count)
    return ir.Constant(ty, value)


def encode(b: ir.IRBuilder, v, dt, intrinsic) -> ir.Value:
    """float32 `v` -> the codes of `dt` (i8), rounding to nearest even. `intrinsic(name,
    args)` emits an LLVM intrinsic call (the emitter's)."""
    f = NARROW_FLOATS[dt]
    i32 = lambda x: _const(v, I32, x)  # noqa: E731
    bits = b.bitcast(v, _like(v, I32))
    sign = b.lshr(bits, i32(31))
    a = b.and_(bits, i32(0x7FFFFFFF))
    shift = 23 - f.mantissa
    # normal range: round the mantissa to `mantissa` bits (ties to even), then move the
    # exponent from float32's bias to the type's (a carry rolls into the exponent, as it should)
    odd = b.and_(b.lshr(a, i32(shift)), i32(1))
    rounded = b.lshr(b.add(a, b.add(i32((1 << (shift - 1)) - 1), odd)), i32(shift))
    normal = b.sub(rounded, i32((127 - f.bias) << f.mantissa))
    # below the smallest normal: a multiple of the smallest subnormal, rounded to even
    absolute = intrinsic("fabs", [v])
    scaled = b.fmul(absolute, _const(v, ir.FloatType(), 2.0 ** (f.bias - 1 + f.mantissa)))
    subnormal = b.fptosi(intrinsic("roundeven", [scaled]), _like(v, I32))
    tiny = b.fcmp_ordered("<", absolute, _const(v, ir.FloatType(), 2.0 ** (1 - f.bias)))
    code = b.select(tiny, subnormal, normal)
    code = b.select(b.icmp_signed(">", code, i32(f.max_code)), i32(f.overflow_code), code)
    code = b.select(b.icmp_unsigned(">", a, i32(0x7F800000)), i32(f.nan_code), code)
    sign_bit = i32(f.sign_bit)
    if f.unsigned_zero:  # NaN and overflow are the sign bit alone whatever the sign; zero has no sign
        signed = b.and_(b.icmp_unsigned("!=", sign, i32(0)),
                        b.and_(b.icmp_unsigned("!=", code, i32(0)), b.icmp_unsigned("!=", code, sign_bit)))
        code = b.select(signed, b.or_(code, sign_bit), code)
    else:
        code = b.or_(code, b.shl(sign, i32(f.bits - 1)))
    return b.trunc(code, _like(v, I8))


def decode(b: ir.IRBuilder, v, dt) -> ir.Value:
    """Codes `v` (i8) of `dt` -> float32, exactly."""
    f = NARROW_FLOATS[dt]
    i32 = lambda x: _const(v, I32, x)  # noqa: E731
    f32 = ir.FloatType()
    c = b.and_(b.zext(v, _like(v, I32)), i32((1 << f.bits) - 1))
    magnitude = b.and_(c, i32(f.sign_bit - 1))
    exponent = b.lshr(magnitude, i32(f.mantissa))
    mantissa = b.and_(magnitude, i32((1 << f.mantissa) - 1))
    normal_bits = b.or_(b.shl(b.add(exponent, i32(127 - f.bias)), i32(23)), b.shl(mantissa, i32(23 - f.mantissa)))
    normal = b.bitcast(normal_bits, _like(v, f32))
    subnormal = b.fmul(b.uitofp(mantissa, _like(v, f32)), _const(v, f32, 2.0 ** (1 - f.bias - f.mantissa)))
    value = b.select(b.icmp_unsigned("==", exponent, i32(0)), subnormal, normal)
    negative = b.icmp_unsigned("!=", b.and_(c, i32(f.sign_bit)), i32(0))
    value = b.select(negative, b.fneg(value), value)
    nan = _const(v, f32, float("nan"))
    if f.nan_decodes == "sign_only":  # fnuz
        return b.select(b.icmp_unsigned("==", c, i32(f.sign_bit)), nan, value)
    if f.nan_decodes == "exponent":  # IEEE-like: exponent all ones is inf (mantissa 0) or NaN
        inf = b.select(negative, _const(v, f32, float("-inf")), _const(v, f32, float("inf")))
        top = b.icmp_unsigned("==", exponent, i32(f.exponent_max))
        special = b.select(b.icmp_unsigned("==", mantissa, i32(0)), inf, nan)
        return b.select(top, special, value)
    if f.nan_decodes == "all_ones":  # e4m3fn: S.1111.111
        return b.select(b.icmp_unsigned("==", magnitude, i32(f.sign_bit - 1)), nan, value)
    return value  # no NaN codes (float4)
