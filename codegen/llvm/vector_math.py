"""exp, log, tanh, erf and pow on float32 vectors as inline polynomials, for the loop-IR backend.

LLVM has no vector math library here: `llvm.exp.v8f32` becomes eight `expf` calls, and
tanh/erf were per-lane libm calls. These build on the microkernel epilogue's polynomials
(`microkernels.epilogue`: Cody-Waite exp, exp-based tanh, Abramowitz-Stegun erf) and add
what a standalone op needs beyond an activation:
  exp   IEEE edges the clamped polynomial loses: NaN stays NaN, overflow gives +inf, the
        range (88, 88.72] stays finite, below -87.3 flushes to 0 (error < 1.2e-38);
  tanh  small |x| (< 0.625) by an odd polynomial, because 1 - 2/(exp(2x) + 1) cancels there;
  erf   small |x| (< 0.75) by x * Q(x^2), because A-S's absolute error 1.5e-7 is a large
        relative error near 0;
  log   x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(f), f = (m-1)/(m+1), by
        its odd series to f^9 (|f| < 0.172: the next term is below 2e-9 relative);
        subnormals scaled first; log(0) = -inf, log(x<0) = NaN, log(inf) = inf;
  pow   exp(y log x) where every lane has a positive finite x and |y log x| < 4 (there the
        product's rounding costs at most a few ulp, as LRN's x^-0.75 needs); any other
        vector takes libm's powf per lane (`pow_fast` says which).
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


_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4  # ln 2 = hi + lo, hi with few bits (Cody-Waite)


def vlog(b, x, lanes: int):
    i32 = ir.VectorType(ir.IntType(32), lanes)

    def iconst(v):
        return ir.Constant(i32, [v] * lanes)

    subnormal = b.fcmp_ordered("<", x, fconst(1.1754943508222875e-38, lanes))
    xs = b.select(subnormal, b.fmul(x, fconst(8388608.0, lanes)), x)  # 2^23: into the normal range
    bits = b.bitcast(xs, i32)
    e = b.sub(b.and_(b.lshr(bits, iconst(23)), iconst(0xFF)), iconst(127))
    e = b.select(subnormal, b.sub(e, iconst(23)), e)
    m = b.bitcast(b.or_(b.and_(bits, iconst(0x7FFFFF)), iconst(0x3F800000)), x.type)  # [1, 2)
    high = b.fcmp_ordered(">", m, fconst(math.sqrt(2.0), lanes))
    m = b.select(high, b.fmul(m, fconst(0.5, lanes)), m)
    ef = b.sitofp(b.select(high, b.add(e, iconst(1)), e), x.type)
    f = b.fdiv(b.fsub(m, fconst(1.0, lanes)), b.fadd(m, fconst(1.0, lanes)))
    s = b.fmul(f, f)
    series = _horner(b, (1.0, 1 / 3, 1 / 5, 1 / 7, 1 / 9), s, lanes)
    log_m = b.fmul(b.fmul(f, fconst(2.0, lanes)), series)
    y = b.fadd(b.fmul(ef, fconst(_LN2_HI, lanes)), b.fadd(log_m, b.fmul(ef, fconst(_LN2_LO, lanes))))
    y = b.select(b.fcmp_ordered("==", x, fconst(math.inf, lanes)), fconst(math.inf, lanes), y)
    y = b.select(b.fcmp_ordered("==", x, fconst(0.0, lanes)), fconst(-math.inf, lanes), y)
    y = b.select(b.fcmp_ordered("<", x, fconst(0.0, lanes)), fconst(math.nan, lanes), y)
    return _keep_nan(b, x, y)


def pow_fast(b, x, y, lanes: int):
    """(exp(y log x), whether every lane may use it: x positive and finite, |y log x| < 4)."""
    t = b.fmul(y, vlog(b, x, lanes))
    ok = b.and_(b.fcmp_ordered(">", x, fconst(0.0, lanes)), b.fcmp_ordered("<", x, fconst(math.inf, lanes)))
    ok = b.and_(ok, b.fcmp_ordered("<", intrinsic(b, "fabs", [t]), fconst(4.0, lanes)))
    all_ok = b.call(_declare_reduce_and(b, lanes), [ok])
    return vexp(b, t, lanes), all_ok


def _declare_reduce_and(b, lanes: int):
    from .microkernels.irutil import declare

    mask = ir.VectorType(ir.IntType(1), lanes)
    return declare(b.module, f"llvm.vector.reduce.and.v{lanes}i1", ir.IntType(1), [mask])


VECTOR_F32 = {"exp": vexp, "log": vlog, "tanh": vtanh, "erf": verf}


def vector_f32_math(b, name: str, args: list):
    """The inline form of intrinsic `name` when its operand is a float32 vector, else None."""
    ty = args[0].type
    if name in VECTOR_F32 and isinstance(ty, ir.VectorType) and isinstance(ty.element, ir.FloatType):
        return VECTOR_F32[name](b, args[0], ty.count)
    return None
