"""Fused epilogues of GEMM/conv microkernels, applied to the accumulator registers before
the store: folded BatchNorm (per-column scale and shift), per-column bias, a residual
tensor, and an activation (relu, clip, gelu with tanh or erf, silu, hardswish).

Order (fixed, the order conv -> BN -> add -> relu appears in ResNets):
    y = acc * scale[n] + shift[n]       if scale_shift
    y = y + bias[n]                     if bias
    y = y + residual[m, n]              if residual and not residual_after_activation
    y = act(y)
    y = y + residual[m, n]              if residual and residual_after_activation
The activations are the registry's (`ir.ops.activations`): each one's vector form here is
registered against its entry. The transcendental parts use our own vector polynomials
(exp: Cephes range reduction, erf: Abramowitz-Stegun 7.1.26, |error| < 1.5e-7) so no lane
calls into libm. `reference` is the numpy definition the tests compare against, built on
the registry's reference of each activation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import llvmlite.ir as ir
import numpy as np

from ....ir.errors import CompilerError
from ....ir.ops.activations import ACTIVATIONS  # the fused ops' activations are the epilogue's
from .irutil import I32, fconst, intrinsic


@dataclass(frozen=True)
class Epilogue:
    bias: bool = False
    scale_shift: bool = False
    residual: bool = False
    activation: str = "none"
    clip_min: float = 0.0
    clip_max: float = 6.0
    residual_after_activation: bool = False

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise CompilerError(f"epilogue activation {self.activation!r}; expected one of {tuple(ACTIVATIONS)}")

    @property
    def key(self) -> str:
        """A short stable name fragment (kernel names, cache keys)."""
        parts = [p for p, on in (("ss", self.scale_shift), ("b", self.bias), ("r", self.residual)) if on]
        act = self.activation if self.activation != "clip" else f"clip{self.clip_min:g}_{self.clip_max:g}"
        return "_".join(parts + [act, "ra" if self.residual_after_activation else ""]).strip("_")


# ------------------------------------------------------------------ vector math (IR)

def _vexp(b, x, lanes: int):
    """exp on a float vector: x = n ln2 + r, exp(r) by a degree-6 polynomial, 2^n by exponent bits."""
    x = intrinsic(b, "minnum", [intrinsic(b, "maxnum", [x, fconst(-87.3, lanes)]), fconst(88.0, lanes)])
    n = intrinsic(b, "roundeven", [b.fmul(x, fconst(1.4426950408889634, lanes))])
    r = b.fsub(x, b.fmul(n, fconst(0.693359375, lanes)))  # Cody-Waite: ln2 split in two
    r = b.fadd(r, b.fmul(n, fconst(2.12194440e-4, lanes)))
    p = fconst(1.9875691500e-4, lanes)
    for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = b.fadd(b.fmul(p, r), fconst(c, lanes))
    p = b.fadd(b.fadd(b.fmul(p, b.fmul(r, r)), r), fconst(1.0, lanes))
    ivec = b.fptosi(n, _ivec(lanes))
    bits = b.shl(b.add(ivec, _iconst(127, lanes)), _iconst(23, lanes))
    return b.fmul(p, b.bitcast(bits, x.type))


def _ivec(lanes):
    return ir.VectorType(I32, lanes)


def _iconst(v, lanes):
    return ir.Constant(_ivec(lanes), [v] * lanes)


def _vtanh(b, x, lanes):
    """tanh(x) = 1 - 2 / (exp(2x) + 1), x clamped to [-10, 10] (tanh(10) is 1 in float32):
    unclamped, 2 / (exp(2x) + 1) turned subnormal for x > 44, and subnormal arithmetic costs
    Intel cores ~100 cycles per operation."""
    x = intrinsic(b, "minnum", [intrinsic(b, "maxnum", [x, fconst(-10.0, lanes)]), fconst(10.0, lanes)])
    e = _vexp(b, b.fmul(x, fconst(2.0, lanes)), lanes)
    return b.fsub(fconst(1.0, lanes), b.fdiv(fconst(2.0, lanes), b.fadd(e, fconst(1.0, lanes))))


def _verf(b, x, lanes):
    """erf by Abramowitz-Stegun 7.1.26 on |x|, sign restored with copysign."""
    ax = intrinsic(b, "fabs", [x])
    t = b.fdiv(fconst(1.0, lanes), b.fadd(fconst(1.0, lanes), b.fmul(ax, fconst(0.3275911, lanes))))
    p = fconst(1.061405429, lanes)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        p = b.fadd(b.fmul(p, t), fconst(c, lanes))
    p = b.fmul(p, t)
    # exp(-x^2) no smaller than exp(-80): past |x| ~ 9 erf is 1 in float32 anyway, and p e then
    # stays a normal float. Unclamped, every |x| > 9.3 made p e subnormal, which costs Intel
    # cores ~100 cycles per operation: a GEMM with a GELU epilogue over outputs of magnitude
    # ~20 took twice as long as without it.
    e = _vexp(b, intrinsic(b, "maxnum", [b.fneg(b.fmul(ax, ax)), fconst(-80.0, lanes)]), lanes)
    y = b.fsub(fconst(1.0, lanes), b.fmul(p, e))
    return intrinsic(b, "copysign", [y, x])


def _act_none(b, x, lanes, ep):
    return x


# llvm.maximum / minimum, not maxnum / minnum: a NaN propagates (relu(NaN) is NaN, as in
# numpy, onnxruntime and the loop-IR rules), where maxnum would turn it into 0.
def _act_relu(b, x, lanes, ep):
    return intrinsic(b, "maximum", [x, fconst(0.0, lanes)])


def _act_clip(b, x, lanes, ep):
    return intrinsic(b, "minimum", [intrinsic(b, "maximum", [x, fconst(ep.clip_min, lanes)]), fconst(ep.clip_max, lanes)])


def _act_gelu_tanh(b, x, lanes, ep):
    x3 = b.fmul(b.fmul(x, x), x)
    inner = b.fmul(b.fadd(x, b.fmul(x3, fconst(0.044715, lanes))), fconst(math.sqrt(2.0 / math.pi), lanes))
    return b.fmul(b.fmul(x, fconst(0.5, lanes)), b.fadd(fconst(1.0, lanes), _vtanh(b, inner, lanes)))


def _act_gelu_erf(b, x, lanes, ep):
    e = _verf(b, b.fmul(x, fconst(1.0 / math.sqrt(2.0), lanes)), lanes)
    return b.fmul(b.fmul(x, fconst(0.5, lanes)), b.fadd(fconst(1.0, lanes), e))


def _act_silu(b, x, lanes, ep):
    e = _vexp(b, b.fneg(x), lanes)
    return b.fdiv(x, b.fadd(fconst(1.0, lanes), e))


def _act_hardswish(b, x, lanes, ep):
    gate = b.fadd(b.fmul(x, fconst(1.0 / 6.0, lanes)), fconst(0.5, lanes))
    gate = intrinsic(b, "minimum", [intrinsic(b, "maximum", [gate, fconst(0.0, lanes)]), fconst(1.0, lanes)])
    return b.fmul(x, gate)


for _name, _form in {"none": _act_none, "relu": _act_relu, "clip": _act_clip, "gelu_tanh": _act_gelu_tanh,
                     "gelu_erf": _act_gelu_erf, "silu": _act_silu, "hardswish": _act_hardswish}.items():
    ACTIVATIONS[_name].implement("llvm_vector", _form)


def apply(b, ep: Epilogue, acc, lanes: int, col: dict, residual):
    """The epilogue on one accumulator vector. `col` maps "bias"/"scale"/"shift" to that
    column vector (already loaded); `residual` is the residual vector or None."""
    y = acc
    if ep.scale_shift:
        y = b.fadd(b.fmul(y, col["scale"]), col["shift"])
    if ep.bias:
        y = b.fadd(y, col["bias"])
    if ep.residual and not ep.residual_after_activation:
        y = b.fadd(y, residual)
    y = ACTIVATIONS[ep.activation].implementation("llvm_vector")(b, y, lanes, ep)
    if ep.residual and ep.residual_after_activation:
        y = b.fadd(y, residual)
    return y


# ------------------------------------------------------------------ numpy definition

def reference(ep: Epilogue, acc, bias=None, scale=None, shift=None, residual=None):
    """The epilogue in numpy (float64 inside), on an [M, N] accumulator (columns last)."""
    y = np.asarray(acc, np.float64)
    if ep.scale_shift:
        y = y * scale + shift
    if ep.bias:
        y = y + bias
    if ep.residual and not ep.residual_after_activation:
        y = y + residual
    y = ACTIVATIONS[ep.activation].reference(y, {"clip_min": ep.clip_min, "clip_max": ep.clip_max})
    if ep.residual and ep.residual_after_activation:
        y = y + residual
    return y.astype(np.float32)
