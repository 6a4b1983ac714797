"""The float8 formats native code stores (8-bit codes; values computed in float32):

    type         exponent/mantissa bits  bias  max      overflow  NaN        negative zero
    f8e4m3fn     4 / 3                   7     448      NaN       0x7f|sign  yes
    f8e4m3fnuz   4 / 3                   8     240      NaN       0x80       no
    f8e5m2       5 / 2                   15    57344    inf       0x7e|sign  yes
    f8e5m2fnuz   5 / 2                   16    57344    NaN       0x80       no

(the codes ml_dtypes gives; f8e8m0, an exponent-only scale type, is not among them.) A
target's code generator turns these facts into conversions (`codegen/llvm/float8.py`);
lowering rules read `max_finite` for saturation.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import dtypes


@dataclass(frozen=True)
class Float8:
    mantissa: int
    bias: int
    max_code: int  # the largest finite magnitude's code
    nan_code: int  # without the sign
    overflow_code: int  # what a too-large magnitude becomes (inf or NaN), without the sign
    unsigned_zero: bool  # fnuz: 0x80 is NaN, and no value is negative zero

    @property
    def exponent_max(self) -> int:
        return (1 << (7 - self.mantissa)) - 1


FLOAT8 = {
    dtypes.float8e4m3fn: Float8(3, 7, 0x7E, 0x7F, 0x7F, False),
    dtypes.float8e4m3fnuz: Float8(3, 8, 0x7F, 0x80, 0x80, True),
    dtypes.float8e5m2: Float8(2, 15, 0x7B, 0x7E, 0x7C, False),
    dtypes.float8e5m2fnuz: Float8(2, 16, 0x7F, 0x80, 0x80, True),
}


def max_finite(dt) -> float:
    """The largest finite value of a float8 type (what saturation clamps to)."""
    f = FLOAT8[dt]
    exponent, mantissa = f.max_code >> f.mantissa, f.max_code & ((1 << f.mantissa) - 1)
    return (1 + mantissa / (1 << f.mantissa)) * 2.0 ** (exponent - f.bias)
