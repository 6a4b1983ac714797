"""Sliding-window geometry shared by the convolution and pooling ops (not an op module).

`resolve_window` turns the ONNX attributes (kernel_shape, strides, dilations, pads,
auto_pad, ceil_mode) plus the input's spatial dims into one `Window`: output sizes and
the padding on each side. The numpy references are then built from `windows` (im2col as a
strided view, no copy), `reduce_windows` (pooling over that view) and `scatter_windows`
(the adjoint of `windows`, col2im).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..types import Dim, fresh_dim

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclass(frozen=True)
class Window:
    """Resolved geometry of one windowed op over n spatial axes.

    `pads_begin`/`pads_end` are None for an axis whose size is symbolic under auto_pad SAME
    (only inference meets those; at run time every size is known). `extra_end` is the
    padding ceil_mode adds past `pads_end` so the last (partial) window fits.
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple
    pads_end: tuple
    out: tuple[Dim, ...]
    extra_end: tuple

    @property
    def extent(self) -> tuple[int, ...]:
        """Span of one dilated window along each axis."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))


def spatial_ints(attrs: dict, key: str, n: int, default: int, fail) -> tuple[int, ...]:
    """A per-axis attribute (strides, dilations, output_padding), `default` on every axis when unset."""
    value = attrs.get(key)
    if not value:
        return (default,) * n
    if len(value) != n:
        raise fail(f"'{key}' has {len(value)} values, expected {n} (one per spatial axis)")
    return tuple(int(v) for v in value)


def resolve_window(attrs: dict, spatial: Sequence[Dim], kernel: Sequence[int], fail,
                   ceil_mode: bool = False) -> Window:
    """The geometry of a conv/pool window over `spatial` input dims; `fail(msg)` builds the error.

    Follows the ONNX pooling/conv rules: SAME_* pads so that out = ceil(in / stride),
    the odd pixel going at the end (UPPER) or the beginning (LOWER); ceil_mode drops a
    last window that would start inside the end padding.
    """
    n = len(spatial)
    kernel = tuple(int(k) for k in kernel)
    if len(kernel) != n:
        raise fail(f"kernel has {len(kernel)} dims, expected {n} (one per spatial axis)")
    strides = spatial_ints(attrs, "strides", n, 1, fail)
    dilations = spatial_ints(attrs, "dilations", n, 1, fail)
    if min(strides + dilations + kernel, default=1) < 1:
        raise fail(f"kernel {list(kernel)}, strides {list(strides)} and dilations {list(dilations)} must be positive")
    auto_pad = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto_pad not in AUTO_PADS:
        raise fail(f"auto_pad is {auto_pad!r}, expected one of {', '.join(AUTO_PADS)}")
    pads = attrs.get("pads") or [0] * (2 * n)
    if len(pads) != 2 * n:
        raise fail(f"'pads' has {len(pads)} values, expected {2 * n} (begin and end per spatial axis)")
    if min(pads, default=0) < 0:
        raise fail(f"'pads' {list(pads)} must not be negative")
    begins, ends, outs, extras = [], [], [], []
    for i, size in enumerate(spatial):
        extent = (kernel[i] - 1) * dilations[i] + 1
        begin, end, out = _axis_geometry(size, extent, strides[i], auto_pad, int(pads[i]), int(pads[i + n]), ceil_mode)
        if isinstance(out, int) and out < 1:
            raise fail(f"spatial axis {i} of size {size} (pads {begin}+{end}) is smaller than the "
                       f"kernel's extent {extent}")
        extra = None
        if isinstance(out, int) and isinstance(size, int):
            extra = max(0, (out - 1) * strides[i] + extent - (size + begin + end))
        begins.append(begin)
        ends.append(end)
        outs.append(out)
        extras.append(extra)
    return Window(kernel, strides, dilations, tuple(begins), tuple(ends), tuple(outs), tuple(extras))


def _axis_geometry(size: Dim, extent: int, stride: int, auto_pad: str, begin: int, end: int, ceil_mode: bool):
    """(pad at the beginning, pad at the end, output size) along one axis; a symbolic size
    gives a fresh output symbol (and unknown pads under SAME)."""
    if auto_pad.startswith("SAME"):
        if not isinstance(size, int):
            return None, None, fresh_dim("out")
        out = -(-size // stride)
        total = max(0, (out - 1) * stride + extent - size)
        small = total // 2
        return (small, total - small, out) if auto_pad == "SAME_UPPER" else (total - small, small, out)
    if auto_pad == "VALID":
        begin, end = 0, 0
        ceil_mode = False  # the spec's VALID formula under ceil_mode, ceil((in - extent + 1) / s), is the floor one
    if not isinstance(size, int):
        return begin, end, fresh_dim("out")
    span = size + begin + end - extent
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + begin:
        out -= 1  # that last window would start inside the end padding
    return begin, end, out


def kernel_from(attrs: dict, w_shape: Sequence[Dim] | None, n: int, fail) -> tuple[int, ...] | None:
    """kernel_shape from the attribute, else from the weight's spatial dims (None if unknown)."""
    if attrs.get("kernel_shape"):
        return tuple(int(k) for k in attrs["kernel_shape"])
    if w_shape is None:
        return None
    dims = tuple(w_shape[2:])
    if len(dims) != n:
        raise fail(f"weight has {len(dims)} spatial dims, input has {n}")
    return dims if all(isinstance(d, int) for d in dims) else None


def pad_spatial(x: np.ndarray, begin: Sequence[int], end: Sequence[int], value=0) -> np.ndarray:
    """Pad the trailing len(begin) axes of x with a constant (a no-op copy-free path when unpadded)."""
    if not any(begin) and not any(end):
        return x
    lead = [(0, 0)] * (x.ndim - len(begin))
    return np.pad(x, lead + list(zip(begin, end)), constant_values=value)


def pad_for(x: np.ndarray, win: Window, value=0) -> np.ndarray:
    """x padded for `win`: its pads plus the ceil_mode overhang at the end."""
    return pad_spatial(x, win.pads_begin, [end + extra for end, extra in zip(win.pads_end, win.extra_end)], value)


def windows(xp: np.ndarray, win: Window) -> np.ndarray:
    """im2col as a read-only strided view: (lead..., S...) -> (lead..., O..., K...).

    `xp` is already padded; element [..., o, k] is xp[..., o * stride + k * dilation].
    """
    n = len(win.kernel)
    lead = xp.shape[:-n]
    s = xp.strides
    shape = lead + tuple(win.out) + win.kernel
    strides = s[:-n] + tuple(st * step for st, step in zip(s[-n:], win.strides)) \
        + tuple(st * d for st, d in zip(s[-n:], win.dilations))
    return np.lib.stride_tricks.as_strided(xp, shape, strides, writeable=False)


def reduce_windows(patches: np.ndarray, n: int, ufunc) -> np.ndarray:
    """Reduce (lead..., O..., K...) patches over their n window axes with a binary ufunc.

    One vectorized step per kernel tap: numpy's own reduction over the tiny trailing
    window axes would run a short inner loop per output element, ~10x slower.
    """
    taps = itertools.product(*(range(k) for k in patches.shape[-n:]))
    out = np.array(patches[(Ellipsis,) + next(taps)])
    for k in taps:
        ufunc(out, patches[(Ellipsis,) + k], out=out)
    return out


def scatter_windows(cols: np.ndarray, image: Sequence[int], strides: Sequence[int],
                    dilations: Sequence[int]) -> np.ndarray:
    """col2im, the adjoint of `windows`: (lead..., K..., O...) summed into (lead..., image...).

    One vectorized strided add per kernel offset: windows overlap, so a single fancy-index
    assignment would drop the colliding contributions.
    """
    n = len(image)
    kernel = cols.shape[-2 * n:-n]
    out_sizes = cols.shape[-n:]
    lead = cols.shape[:-2 * n]
    result = np.zeros(lead + tuple(image), dtype=cols.dtype)
    for k in itertools.product(*(range(kk) for kk in kernel)):
        region = tuple(slice(ki * d, ki * d + (o - 1) * s + 1, s)
                       for ki, d, o, s in zip(k, dilations, out_sizes, strides))
        result[(Ellipsis,) + region] += cols[(Ellipsis,) + k + (slice(None),) * n]
    return result


def crop_or_pad(x: np.ndarray, begin: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The trailing axes' window [begin, begin + size), zero-filled where it leaves x."""
    n = len(begin)
    spatial = x.shape[-n:]
    before = [max(0, -b) for b in begin]
    after = [max(0, b + s - d) for b, s, d in zip(begin, size, spatial)]
    xp = pad_spatial(x, before, after)
    starts = [b + p for b, p in zip(begin, before)]
    return xp[(Ellipsis,) + tuple(slice(st, st + s) for st, s in zip(starts, size))]


def numel(dims: Sequence[int]) -> int:
    return math.prod(int(d) for d in dims)
