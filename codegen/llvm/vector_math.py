"""exp, tanh and erf on float32 vectors as inline polynomials, for the loop-IR backend.

LLVM has no vector math library here: `llvm.exp.v8f32` becomes eight `expf` calls, and
tanh/erf were per-lane libm calls. These build on the microkernel epilogue's polynomials
(`microkernels.epilogue`: Cody-Waite exp, exp-based tanh, Abramowitz-Stegun erf) and add
what a standalone op needs beyond an activation:
  exp   IEEE edges the clamped polynomial loses: NaN stays NaN, overflow gives +inf, the
        range (88, 88.72] stays finite, below -87.3 flushes to 0 (error < 1.2e-38);
  tanh  small |x| (< 0.625) by an odd polynomial, because 1 - 2/(exp(2x) + 1) cancels there;
  erf   small |x| (< 0.75) by x * Q(x^2), because A-S's absolute error 1.5e-7 is a large
        relative error near 0.
The small-argument polynomials are least-squares fits (made for this file) with relative
error below 2e-7 on their intervals; NaN inputs propagate.
"""
from __future__ import annotations

import math

import llvmlite.ir as ir

from .microkernels.epilogue import _verf, _vexp, _vtanh
from .microkernels.irutil import fconst, intrinsic

# tanh(x) = x + x^3 * P(x^2) on |x| < 0.625; erf(x) = x * Q(x^2) on |x| < 0.75 (coefficients, lowest first)
_TANH_SMALL = (-0.33333309067013084, 0.1333205059825316, -0.053782931978128584, 0.020761818468190647,
               -0.0058264672167245395)
_ERF_SMALL = (1.1283791664536327, -0.37612624043138987, 0.11283440260384156, -0.026837516175453525,
              0.005119878937962612, -0.0006787221291628363)
_EXP_OVERFLOW = 88.72283935546875  # largest float32 x with exp(x) finite (rounded up to a float32)


def _horner(b, coefficients, z, lanes):
    p = fconst(coefficients[-1], lanes)
    for c in reversed(coefficients[:-1]):
        p = b.fadd(b.fmul(p, z), fconst(c, lanes))
    return p


def _keep_nan(b, x, y):
    return b.select(b.fcmp_unordered("uno", x, x), x, y)


def vexp(b, x, lanes: int):
    big = b.fcmp_ordered(">", x, fconst(88.0, lanes))
    shifted = b.select(big, b.fsub(x, fconst(1.0, lanes)), x)  # x - 1 is exact for x in (88, 128)
    y = _vexp(b, shifted, lanes)
    y = b.select(big, b.fmul(y, fconst(math.e, lanes)), y)
    y = b.select(b.fcmp_ordered(">", x, fconst(_EXP_OVERFLOW, lanes)), fconst(math.inf, lanes), y)
    y = b.select(b.fcmp_ordered("<", x, fconst(-87.3, lanes)), fconst(0.0, lanes), y)
    return _keep_nan(b, x, y)


def vtanh(b, x, lanes: int):
    z = b.fmul(x, x)
    small = b.fadd(x, b.fmul(b.fmul(x, z), _horner(b, _TANH_SMALL, z, lanes)))
    large = _vtanh(b, x, lanes)
    use_small = b.fcmp_ordered("<", intrinsic(b, "fabs", [x]), fconst(0.625, lanes))
    return _keep_nan(b, x, b.select(use_small, small, large))


def verf(b, x, lanes: int):
    z = b.fmul(x, x)
    small = b.fmul(x, _horner(b, _ERF_SMALL, z, lanes))
    use_small = b.fcmp_ordered("<", intrinsic(b, "fabs", [x]), fconst(0.75, lanes))
    return _keep_nan(b, x, b.select(use_small, small, _verf(b, x, lanes)))


VECTOR_F32 = {"exp": vexp, "tanh": vtanh, "erf": verf}


def vector_f32_math(b, name: str, args: list):
    """The inline form of intrinsic `name` when its operand is a float32 vector, else None."""
    ty = args[0].type
    if name in VECTOR_F32 and isinstance(ty, ir.VectorType) and isinstance(ty.element, ir.FloatType):
        return VECTOR_F32[name](b, args[0], ty.count)
    return None
