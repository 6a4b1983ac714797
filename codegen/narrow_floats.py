"""The narrow float formats native code stores, a byte per element as ml_dtypes' arrays keep
them (codes in the low bits), values computed in float32:

    type         bits  exp/mant  bias  max     overflow  NaN code       negative zero
    f8e4m3fn     8     4 / 3     7     448     NaN       0x7f|sign      yes
    f8e4m3fnuz   8     4 / 3     8     240     NaN       0x80           no
    f8e5m2       8     5 / 2     15    57344   inf       0x7e|sign      yes
    f8e5m2fnuz   8     5 / 2     16    57344   NaN       0x80           no
    f4e2m1       4     2 / 1     1     6       6 (saturates)  0x8      yes (no NaN or inf codes)

(the codes ml_dtypes gives; f8e8m0, an exponent-only scale type, is not among them.) A
target's code generator turns these facts into conversions (`codegen/llvm/narrow_float.py`);
lowering rules read `max_finite` for saturation.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import dtypes


@dataclass(frozen=True)
class NarrowFloat:
    bits: int
    mantissa: int
    bias: int
    max_code: int  # the largest finite magnitude's code
    nan_code: int  # what NaN becomes (the sign is or-ed in where the type has signed NaNs)
    overflow_code: int  # what a too-large magnitude becomes (inf, NaN or the max), without the sign
    unsigned_zero: bool  # fnuz: the sign bit alone is NaN, and no value is negative zero
    nan_decodes: str  # which codes read back as NaN: "all_ones" (magnitude), "sign_only", "exponent" (IEEE), "none"

    @property
    def sign_bit(self) -> int:
        return 1 << (self.bits - 1)

    @property
    def exponent_max(self) -> int:
        return (1 << (self.bits - 1 - self.mantissa)) - 1


NARROW_FLOATS = {
    dtypes.float8e4m3fn: NarrowFloat(8, 3, 7, 0x7E, 0x7F, 0x7F, False, "all_ones"),
    dtypes.float8e4m3fnuz: NarrowFloat(8, 3, 8, 0x7F, 0x80, 0x80, True, "sign_only"),
    dtypes.float8e5m2: NarrowFloat(8, 2, 15, 0x7B, 0x7E, 0x7C, False, "exponent"),
    dtypes.float8e5m2fnuz: NarrowFloat(8, 2, 16, 0x7F, 0x80, 0x80, True, "sign_only"),
    dtypes.float4e2m1: NarrowFloat(4, 1, 1, 0x7, 0x8, 0x7, False, "none"),
}


def max_finite(dt) -> float:
    """The largest finite value of a narrow float type (what saturation clamps to)."""
    f = NARROW_FLOATS[dt]
    exponent, mantissa = f.max_code >> f.mantissa, f.max_code & ((1 << f.mantissa) - 1)
    return (1 + mantissa / (1 << f.mantissa)) * 2.0 ** (exponent - f.bias)
