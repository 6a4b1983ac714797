"""The int8 scheme a product with compute=int8 follows (the one place its arithmetic is
written down; the reference interpreter, the loop-IR rules, the calibration pass and the
VNNI microkernels all call these functions, so they agree bit for bit on the integers).

  activations: uint8, asymmetric, per tensor:
      q = clamp(rint(x * inv_scale) + zero_point, 0, 255),   x ~ (q - zero_point) * scale
      with inv_scale = float32(1 / scale), so a kernel multiplying by the inverse rounds
      exactly like the reference (a division could round a tie the other way);
  weights: int8, symmetric, per output channel:
      scale[c] = max|w[c]| / 127 (1 for an all-zero channel),  q = clamp(rint(w / scale), -127, 127)
      (-128 is never used, so a u8 x s8 multiply-add never needs the saturating form);
      or, for a product whose `weight_codes` attribute says so (a MatMulInteger that arrived
      with its int8 weights), w holds the codes themselves, any int8 integers, scale 1
      (-128 too: `vpdpbusd` widens every u8 x s8 product exactly, 255 x -128 included).

The product then is (sum_k (qa - za) * qw) * (scale_a * scale_w[c]), exact in int32 up to
the one float32 rounding of the final scaling. Why uint8 x int8 (not int8 x int8): the
x86 dot product `vpdpbusd` multiplies unsigned by signed bytes, and ReLU outputs are
non-negative, so a zero point of 0 spends all 256 levels on them.
"""
from __future__ import annotations

import numpy as np

# How activation ranges may be chosen from calibration samples (`passes.int8_ranges`).
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
WEIGHT_QMAX = 127
ACT_QMIN, ACT_QMAX = 0, 255


def inverse_scale(scale: float) -> np.float32:
    """The multiplier a kernel quantizes activations with: float32(1 / scale)."""
    return np.float32(1.0) / np.float32(scale)


def quantize_activation(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """x (float32) -> uint8 codes with the per-tensor `scale` and `zero_point`."""
    q = np.rint(np.asarray(x, np.float32) * inverse_scale(scale)).astype(np.float64) + zero_point
    return np.clip(q, ACT_QMIN, ACT_QMAX).astype(np.uint8)


def dequantize_activation(codes: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """uint8 codes -> float32: (code - zero_point) * scale, in float32 as the kernels do."""
    return (np.asarray(codes).astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def fake_quantize_activation(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """x as the int8 product sees it: quantized to uint8 and back, in x's float type."""
    q = quantize_activation(x, scale, zero_point)
    return dequantize_activation(q, scale, zero_point).astype(np.asarray(x).dtype, copy=False)


def weight_scales(w: np.ndarray, axis: int) -> np.ndarray:
    """Per-channel float32 scales along `axis` (the output channels): max|w| / 127."""
    w = np.asarray(w, np.float32)
    axis = axis % w.ndim
    peak = np.max(np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1), axis=1) if w.size else \
        np.zeros(w.shape[axis], np.float32)
    scales = (peak / np.float32(WEIGHT_QMAX)).astype(np.float32)
    return np.where(scales > 0, scales, np.float32(1.0)).astype(np.float32)


def quantize_weights(w: np.ndarray, axis: int, codes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(int8 codes shaped like w, float32 scales along `axis`); with `codes`, w's own values
    (`are_weight_codes`) and scales of 1."""
    w = np.asarray(w, np.float32)
    if codes:
        if not are_weight_codes(w):
            raise ValueError("weight_codes: the weights must be integers in [-128, 127]")
        return w.astype(np.int8), np.ones(w.shape[axis % w.ndim] if w.ndim else 1, np.float32)
    scales = weight_scales(w, axis)
    shape = [1] * w.ndim
    shape[axis % w.ndim] = -1
    q = np.clip(np.rint(w / scales.reshape(shape)), -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8)
    return q, scales


def are_weight_codes(w: np.ndarray) -> bool:
    """Whether w can be taken as int8 weight codes as it is: integers in [-128, 127]."""
    w = np.asarray(w, np.float64)
    return bool(np.all((w >= -128) & (w <= 127)) and np.all(np.rint(w) == w))


def fake_quantize_weights(w: np.ndarray, axis: int, codes: bool = False) -> np.ndarray:
    """w on the int8 grid, in float32: what the product multiplies by (w itself with `codes`)."""
    q, scales = quantize_weights(w, axis, codes)
    shape = [1] * q.ndim
    shape[axis % q.ndim] = -1
    return q.astype(np.float32) * scales.reshape(shape)


def on_weight_grid(w: np.ndarray, axis: int) -> bool:
    """Whether float weights are already int8 codes times per-channel scales of this scheme
    (`fake_quantize_weights` leaves them unchanged, to float32 rounding): what a quantized
    model's dequantized weights must be to run on the int8 kernels exactly."""
    w = np.asarray(w, np.float32)
    return w.size > 0 and bool(np.allclose(fake_quantize_weights(w, axis), w, rtol=1e-6, atol=0))


def activation_params(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero_point) of a uint8 range covering [lo, hi] (widened to include 0, so a
    zero, ReLU's output and the padding of a convolution, is exact)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0 or not np.isfinite(hi - lo):
        return 1.0, 0
    scale = float(np.float32((hi - lo) / (ACT_QMAX - ACT_QMIN)))
    zero_point = int(np.clip(round(ACT_QMIN - lo / scale), ACT_QMIN, ACT_QMAX))
    return scale, zero_point
