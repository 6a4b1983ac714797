"""How close is close enough: comparison tolerances per element type, in one place.

An element passes when |actual - expected| <= atol + rtol * |expected| (numpy's
`allclose` rule). Two tiers per type:

- `OP_TOLERANCES`: one op against another implementation of it. rtol is a few units
  in the last place of the type (different summation orders, fused multiply-add).
- `MODEL_TOLERANCES`: a whole network (50+ layers, reductions over thousands of terms)
  against onnxruntime or torch. Rounding differences compound layer by layer, and an
  output near zero is the difference of large terms, so atol is set by the scale of
  the activations (about 1 in these models), not by the output's own size.

Integer types compare exactly, except the 8-bit ones that quantized ops produce: there
implementations may round a requantized value's halfway cases differently, one step apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import dtypes
from ..ir.dtypes import DType


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


EXACT = Tolerance(0.0, 0.0)

OP_TOLERANCES: dict[DType, Tolerance] = {
    dtypes.float64: Tolerance(1e-12, 1e-14),
    dtypes.float32: Tolerance(1e-5, 1e-6),           # eps 1.2e-7, times reduction lengths ~100
    dtypes.complex128: Tolerance(1e-12, 1e-14),
    dtypes.complex64: Tolerance(1e-5, 1e-6),
    dtypes.float16: Tolerance(4e-3, 1e-4),           # eps 9.8e-4: four ulps
    dtypes.bfloat16: Tolerance(3e-2, 1e-3),          # eps 7.8e-3: four ulps
    dtypes.float8e4m3fn: Tolerance(0.125, 1e-3),     # eps 0.125: one ulp
    dtypes.float8e4m3fnuz: Tolerance(0.125, 1e-3),
    dtypes.float8e5m2: Tolerance(0.25, 1e-3),        # eps 0.25: one ulp
    dtypes.float8e5m2fnuz: Tolerance(0.25, 1e-3),
    dtypes.int8: Tolerance(0.0, 1.0),                # one quantization step
    dtypes.uint8: Tolerance(0.0, 1.0),
}

MODEL_TOLERANCES: dict[DType, Tolerance] = {
    dtypes.float64: Tolerance(1e-9, 1e-10),
    dtypes.float32: Tolerance(1e-4, 1e-4),
    dtypes.complex64: Tolerance(1e-4, 1e-4),
    dtypes.float16: Tolerance(2e-2, 2e-2),           # fp16 activations with fp32 accumulation
    dtypes.bfloat16: Tolerance(8e-2, 8e-2),          # bf16 keeps 8 bits of mantissa
    dtypes.int8: Tolerance(0.0, 1.0),
    dtypes.uint8: Tolerance(0.0, 1.0),
}


def _as_dtype(dtype) -> DType:
    if isinstance(dtype, DType):
        return dtype
    if isinstance(dtype, str):
        return dtypes.parse(dtype)
    return dtypes.from_numpy(dtype)


def tolerance(dtype, end_to_end: bool = False) -> Tolerance:
    """The tolerance for comparing values of `dtype` (a DType, numpy dtype or name):
    exact for types without an entry (ints, bool, strings)."""
    d = _as_dtype(dtype)
    table = MODEL_TOLERANCES if end_to_end else OP_TOLERANCES
    return table.get(d, OP_TOLERANCES.get(d, EXACT))


def _fmt_index(flat: int, shape: tuple[int, ...]) -> str:
    return str(tuple(int(i) for i in np.unravel_index(flat, shape))) if shape else "()"


def mismatch_report(actual, expected, tol: Tolerance, what: str = "output") -> str | None:
    """None when `actual` matches `expected` within `tol`; otherwise a readable account of
    how it does not: shape or dtype, or how many elements are off, by how much, and where."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return f"{what}: shape {list(actual.shape)}, expected {list(expected.shape)}"
    if actual.dtype != expected.dtype:
        return f"{what}: element type {actual.dtype}, expected {expected.dtype}"
    if actual.dtype.kind in "OUSb":
        bad = actual != expected
        if not bad.any():
            return None
        first = int(np.flatnonzero(bad)[0])
        return (f"{what}: {int(bad.sum())} of {bad.size} elements differ; first at {_fmt_index(first, actual.shape)}: "
                f"{actual.flat[first]!r}, expected {expected.flat[first]!r}")
    wide = np.complex128 if actual.dtype.kind == "c" else np.float64  # ml_dtypes types widen too
    a, e = actual.astype(wide), expected.astype(wide)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    err = np.asarray(np.abs(a - e))  # an array even for 0-d inputs, so it can be masked
    err[nan_a & nan_e] = 0.0                    # NaN where NaN is expected is a match
    err[nan_a ^ nan_e] = np.inf
    err[np.isinf(a) & (a == e)] = 0.0           # so is the same infinity
    bad = err > tol.atol + tol.rtol * np.abs(np.nan_to_num(e, nan=0.0, posinf=0.0, neginf=0.0))
    if not bad.any():
        return None
    rel = err / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
    worst_abs, worst_rel = int(np.nanargmax(err)), int(np.nanargmax(rel))
    return (f"{what}: {int(bad.sum())} of {bad.size} elements outside rtol={tol.rtol:g}, atol={tol.atol:g}; "
            f"max abs error {err.flat[worst_abs]:.3g} at {_fmt_index(worst_abs, a.shape)} "
            f"(actual {a.flat[worst_abs]:.7g}, expected {e.flat[worst_abs]:.7g}); "
            f"max rel error {rel.flat[worst_rel]:.3g} at {_fmt_index(worst_rel, a.shape)} "
            f"(actual {a.flat[worst_rel]:.7g}, expected {e.flat[worst_rel]:.7g}); "
            f"expected |values| up to {np.nanmax(np.abs(e)):.4g}")


def assert_close(actual, expected, dtype=None, what: str = "output", *, end_to_end: bool = False) -> None:
    """Assert `actual` matches `expected` within the tolerance for `dtype` (default: the
    expected array's type); `end_to_end` picks the whole-model tier."""
    expected = np.asarray(expected)
    tol = tolerance(expected.dtype if dtype is None else dtype, end_to_end)
    report = mismatch_report(actual, expected, tol, what)
    if report is not None:
        raise AssertionError(report)


def max_errors(actual, expected) -> tuple[float, float]:
    """(max abs error, max rel error) between two float arrays, for reports."""
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    err = np.abs(a - e)
    return float(err.max(initial=0.0)), float((err / np.maximum(np.abs(e), 1e-30)).max(initial=0.0))
