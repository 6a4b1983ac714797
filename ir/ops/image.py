"""Ops: image sampling and signal processing.

Resampling: `Resize` (every coordinate transformation, nearest rounding mode, linear and
cubic with antialiasing), `GridSample` (2-D and N-D), `AffineGrid`, `RoiAlign`,
`CenterCropPad`; detection: `NonMaxSuppression`; signal: `DFT`, `STFT`, the Hann, Hamming
and Blackman windows and `MelWeightMatrix`.

Resize works one axis at a time (interpolation is separable), each axis a gather of a few
taps per output position and a weighted sum, so whole feature maps resize without loops.
"""
from __future__ import annotations

import itertools

import numpy as np

from .. import dtypes
from ..registry import PENDING_RULE, VALUE_DEPENDENT_SHAPE, Attr, Category, InferContext, OpDef, Precision
from ..shape_utils import normalize_axes
from ..types import Dim, TensorType, fresh_dim


def _size_values(ctx: InferContext, i: int) -> list[Dim] | None:
    """What integer input i holds when known at compile time: ints, or symbols for sizes
    taken from other tensors' shapes (`Shape(x)`); None when unknown."""
    value = ctx.shape_value(i)
    return None if value is None else list(value)


def _const_ints(ctx: InferContext, i: int) -> list[int] | None:
    """Input i's value as ints, when every entry is a compile-time integer."""
    values = _size_values(ctx, i)
    return values if values is not None and all(isinstance(v, int) for v in values) else None


def _const_scalar(ctx: InferContext, i: int) -> int | None:
    values = _const_ints(ctx, i)
    return None if not values else values[0]


def _work_dtype(dtype) -> np.dtype:
    """Interpolation arithmetic: fp64 for fp64 data, fp32 for everything narrower."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def _cast_like(values: np.ndarray, dtype) -> np.ndarray:
    """Interpolated values back to the data's type; integer types round and saturate."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    if dtype == np.bool_:
        return values != 0
    return values.astype(dtype)


# ---- Resize -------------------------------------------------------------------------------

_COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                     "asymmetric", "tf_crop_and_resize")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
_RESIZE_CHOICES = {"mode": ("nearest", "linear", "cubic"), "coordinate_transformation_mode": _COORDINATE_MODES,
                   "nearest_mode": _NEAREST_MODES, "keep_aspect_ratio_policy": ("stretch", "not_larger", "not_smaller")}


def _resize_axes(attrs: dict, rank: int, ctx=None) -> list[int]:
    return list(range(rank)) if attrs["axes"] is None else normalize_axes(attrs["axes"], rank, ctx)


def _resize_plan(shape, axes, scales, sizes, policy: str) -> tuple[list[int], list[float]]:
    """Output size and scale of each listed axis, from `scales` or from `sizes` and the policy."""
    if sizes is None:
        scales = [float(s) for s in scales]
        return [int(np.floor(shape[a] * s)) for a, s in zip(axes, scales)], scales
    sizes = [int(s) for s in sizes]
    ratios = [s / shape[a] for a, s in zip(axes, sizes)]
    if policy == "stretch":
        return sizes, ratios
    ratio = min(ratios) if policy == "not_larger" else max(ratios)
    # One scale for every axis keeps the aspect ratio; sizes round half up.
    return [int(np.floor(ratio * shape[a] + 0.5)) for a in axes], [ratio] * len(axes)


def _resize_infer(ctx: InferContext) -> list[TensorType]:
    a = ctx.attrs
    x = ctx.input(0)
    for key, allowed in _RESIZE_CHOICES.items():
        if a[key] not in allowed:
            raise ctx.error(f"{key} must be one of {allowed}, got {a[key]!r}")
    if ctx.has(2) == ctx.has(3):
        raise ctx.error("exactly one of scales (input 2) and sizes (input 3) must be given")
    if x.rank is None:
        return [x]
    axes = _resize_axes(a, x.rank, ctx)
    target = ctx.input(3) if ctx.has(3) else ctx.input(2)
    if target.shape is not None and len(target.shape) == 1 and isinstance(target.shape[0], int) \
            and target.shape[0] != len(axes):
        raise ctx.error(f"{'sizes' if ctx.has(3) else 'scales'} has {target.shape[0]} entries for {len(axes)} axes")
    scales = None if ctx.has(3) else ctx.const(2)
    sizes = _const_ints(ctx, 3)
    out: list[Dim] = list(x.shape)
    known = all(isinstance(x.shape[ax], int) for ax in axes)
    symbolic_sizes = _size_values(ctx, 3) if ctx.has(3) else None
    if sizes is None and symbolic_sizes is not None and a["keep_aspect_ratio_policy"] == "stretch":
        for ax, n in zip(axes, symbolic_sizes):  # sizes read off another tensor's shape keep its symbols
            out[ax] = n
    elif known and (scales is not None or sizes is not None):
        new_sizes, _ = _resize_plan(x.shape, axes, None if scales is None else np.asarray(scales).reshape(-1),
                                    sizes, a["keep_aspect_ratio_policy"])
        for ax, n in zip(axes, new_sizes):
            out[ax] = n
    else:
        for ax in axes:
            out[ax] = fresh_dim("resized")
    return [x.with_shape(out)]


def _source_coords(mode: str, size: int, scale: float, length: int, roi: tuple[float, float]) -> np.ndarray:
    """Where each output position along one axis samples the input (coordinate_transformation_mode).

    `target` is the output length before flooring to an integer (scale * length); the
    corner-aligned modes divide by it, as the ONNX reference does.
    """
    y = np.arange(size, dtype=np.float64)
    target = scale * length
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        # Centre the sampled region when the integer output size cut off part of the target length.
        offset = length / 2 * (1 - size / target)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if target > 1 else np.zeros(size)
    if mode == "align_corners":
        return y * (length - 1) / (target - 1) if target > 1 else np.zeros(size)
    if mode == "asymmetric":
        return y / scale
    start, end = roi  # tf_crop_and_resize
    if target > 1:
        return start * (length - 1) + y * (end - start) * (length - 1) / (target - 1)
    return np.full(size, 0.5 * (start + end) * (length - 1))


def _nearest_index(x: np.ndarray, rounding: str) -> np.ndarray:
    fn = {"round_prefer_floor": lambda v: np.ceil(v - 0.5), "round_prefer_ceil": lambda v: np.floor(v + 0.5),
          "floor": np.floor, "ceil": np.ceil}[rounding]
    return fn(x).astype(np.int64)


def _cubic_kernel(a: float):
    """Keys' cubic convolution kernel with coefficient a (-0.75 as in PyTorch, -0.5 as in TF)."""

    def kernel(t: np.ndarray) -> np.ndarray:
        t = np.abs(t)
        near = ((a + 2) * t - (a + 3)) * t * t + 1
        far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        return np.where(t <= 1, near, np.where(t < 2, far, 0.0))

    return kernel


def _linear_kernel(t: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1 - np.abs(t))


def _interpolation_taps(x: np.ndarray, length: int, scale: float, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Input indices (out, n) and weights (out, n) for linear or cubic sampling at positions x.

    With antialias, a downscaling kernel is stretched by 1/scale so every input pixel
    contributes; out-of-range taps read the edge pixel unless exclude_outside drops them.
    """
    cubic = attrs["mode"] == "cubic"
    kernel, radius = (_cubic_kernel(attrs["cubic_coeff_a"]), 2) if cubic else (_linear_kernel, 1)
    stretch = min(scale, 1.0) if attrs["antialias"] else 1.0
    first = int(np.floor(-radius / stretch)) + 1
    offsets = np.arange(first, 1 - first + 1)  # taps around floor(x): first .. 1 - first
    base = np.floor(x)
    taps = base[:, None].astype(np.int64) + offsets
    weights = kernel(stretch * (offsets - (x - base)[:, None]))
    if attrs["antialias"]:
        weights = weights / weights.sum(axis=1, keepdims=True)
    if attrs["exclude_outside"]:
        weights = np.where((taps < 0) | (taps >= length), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    return np.clip(taps, 0, length - 1), weights


def _resize_axis(data: np.ndarray, axis: int, size: int, scale: float, roi, attrs: dict) -> np.ndarray:
    length = data.shape[axis]
    mode = attrs["coordinate_transformation_mode"]
    x = _source_coords(mode, size, scale, length, roi)
    if attrs["mode"] == "nearest":
        out = np.take(data, np.clip(_nearest_index(x, attrs["nearest_mode"]), 0, length - 1), axis=axis)
    else:
        taps, weights = _interpolation_taps(x, length, scale, attrs)
        gathered = np.take(data, taps, axis=axis)  # (..., size, n, ...)
        shape = (1,) * axis + weights.shape + (1,) * (data.ndim - axis - 1)
        out = np.sum(gathered * weights.reshape(shape).astype(data.dtype), axis=axis + 1)
    if mode == "tf_crop_and_resize":  # a crop reaching outside the image reads extrapolation_value there
        outside = ((x < 0) | (x > length - 1)).reshape((1,) * axis + (size,) + (1,) * (data.ndim - axis - 1))
        out = np.where(outside, np.asarray(attrs["extrapolation_value"], out.dtype), out)
    return out


def _resize_reference(ctx, x, roi=None, scales=None, sizes=None):
    a = ctx.attrs
    axes = _resize_axes(a, x.ndim)
    new_sizes, new_scales = _resize_plan(x.shape, axes, scales, sizes, a["keep_aspect_ratio_policy"])
    crop = a["coordinate_transformation_mode"] == "tf_crop_and_resize" and roi is not None and roi.size
    bounds = (list(zip(roi[: len(axes)], roi[len(axes):])) if crop else [(0.0, 1.0)] * len(axes))
    exact = a["mode"] == "nearest"
    out = x if exact else x.astype(_work_dtype(x.dtype))
    for axis, size, scale, box in sorted(zip(axes, new_sizes, new_scales, bounds)):
        if size == x.shape[axis] and scale == 1.0 and tuple(box) == (0.0, 1.0):
            continue  # an identity axis (N and C, typically)
        out = _resize_axis(out, axis, size, scale, tuple(float(b) for b in box), a)
    return out if exact else _cast_like(out, x.dtype)


RESIZE = OpDef(
    name="Resize", inputs=("X", "roi?", "scales?", "sizes?"), outputs=("Y",),
    infer=_resize_infer, reference=_resize_reference,
    # A fixed few-tap stencil per output element: it fuses like a gather (TVM treats resize as injective).
    category=Category.INJECTIVE, precision=Precision.FP32,
    attrs={"mode": Attr("string", "nearest"), "coordinate_transformation_mode": Attr("string", "half_pixel"),
           "nearest_mode": Attr("string", "round_prefer_floor"), "cubic_coeff_a": Attr("float", -0.75),
           "exclude_outside": Attr("int", 0), "extrapolation_value": Attr("float", 0.0),
           "antialias": Attr("int", 0), "axes": Attr("ints", None),
           "keep_aspect_ratio_policy": Attr("string", "stretch")},
    doc="Resizes by scales or to sizes with nearest, (anti-aliased) linear or cubic interpolation.",
    shape_inputs=("roi", "scales", "sizes"))


# ---- GridSample ---------------------------------------------------------------------------


def _grid_sample_infer(ctx: InferContext) -> list[TensorType]:
    a = ctx.attrs
    if a["mode"] not in ("nearest", "linear", "cubic"):
        raise ctx.error(f"mode must be nearest, linear or cubic, got {a['mode']!r}")
    if a["padding_mode"] not in ("zeros", "border", "reflection"):
        raise ctx.error(f"padding_mode must be zeros, border or reflection, got {a['padding_mode']!r}")
    x, grid = ctx.input(0), ctx.input(1)
    if x.shape is None or grid.shape is None:
        return [TensorType(None, x.dtype)]
    spatial = len(x.shape) - 2
    if len(grid.shape) != spatial + 2 or (isinstance(grid.shape[-1], int) and grid.shape[-1] != spatial):
        raise ctx.error(f"grid must be (N, *out_spatial, {spatial}) for X {x}, got {grid}")
    return [TensorType((x.shape[0], x.shape[1], *grid.shape[1:-1]), x.dtype)]


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold coordinates outside [lo, hi] back in, mirroring at the borders as often as needed."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, lo)
    below, above = x < lo, x > hi
    dist = np.where(below, lo - x, x - hi)
    flips = np.floor(dist / span)
    rest = dist - flips * span
    even = flips % 2 == 0
    return np.where(below, np.where(even, lo + rest, hi - rest),
                    np.where(above, np.where(even, hi - rest, lo + rest), x))


def _grid_taps(coord: np.ndarray, mode: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(index, weight) pairs along one axis for each sample position."""
    if mode == "nearest":
        return [(coord.astype(np.int64), np.ones_like(coord))]
    base = np.floor(coord)
    frac = coord - base
    base = base.astype(np.int64)
    if mode == "linear":
        return [(base, 1 - frac), (base + 1, frac)]
    kernel = _cubic_kernel(-0.75)  # GridSample's bicubic is PyTorch's: a = -0.75
    return [(base + k, kernel(frac - k)) for k in (-1, 0, 1, 2)]


def _grid_sample_reference(ctx, x, grid):
    a = ctx.attrs
    align, padding = bool(a["align_corners"]), a["padding_mode"]
    spatial = x.shape[2:]
    work = _work_dtype(grid.dtype)
    per_axis = []
    for axis, length in enumerate(spatial):
        n = grid[..., len(spatial) - 1 - axis].astype(work)  # the grid lists x (the last axis) first
        coord = (n + 1) / 2 * (length - 1) if align else ((n + 1) * length - 1) / 2
        if a["mode"] == "nearest":
            coord = np.rint(coord)  # PyTorch rounds half to even
        lo, hi = (0.0, length - 1.0) if align else (-0.5, length - 0.5)
        if padding == "border":
            coord = np.where((coord < lo) | (coord > hi), np.clip(coord, 0, length - 1), coord)
        elif padding == "reflection":
            coord = _reflect(coord, lo, hi)
        taps = []
        for index, weight in _grid_taps(coord, a["mode"]):
            valid = (index >= 0) & (index < length)
            if padding == "reflection":
                index = np.trunc(_reflect(index.astype(work), lo, hi)).astype(np.int64)
            if padding == "zeros":
                weight = np.where(valid, weight, 0)
            taps.append((np.clip(index, 0, length - 1), weight))
        per_axis.append(taps)
    batch = np.arange(x.shape[0]).reshape((-1,) + (1,) * (grid.ndim - 2))
    data = np.moveaxis(x, 1, -1)  # (N, *spatial, C): indexing leaves channels last
    out = 0
    for combo in itertools.product(*per_axis):
        weight = np.prod([w for _, w in combo], axis=0)
        out = out + data[(batch, *[i for i, _ in combo])] * weight[..., None]
    return _cast_like(np.moveaxis(np.asarray(out, work), -1, 1), x.dtype)


GRID_SAMPLE = OpDef(
    name="GridSample", inputs=("X", "grid"), outputs=("Y",),
    infer=_grid_sample_infer, reference=_grid_sample_reference,
    category=Category.INJECTIVE, precision=Precision.FP32,  # a small data-dependent stencil, like Resize
    attrs={"mode": Attr("string", "linear"), "padding_mode": Attr("string", "zeros"), "align_corners": Attr("int", 0)},
    doc="Samples X at normalized grid coordinates (nearest, linear or cubic; zeros, border or reflection padding).")


# ---- AffineGrid ------------------------------------------------------------------------------


def _affine_grid_infer(ctx: InferContext) -> list[TensorType]:
    theta = ctx.input(0)
    size = _size_values(ctx, 1)
    spatial = None
    if theta.shape is not None and isinstance(theta.shape[1], int):
        spatial = theta.shape[1]
    elif ctx.input(1).shape is not None and isinstance(ctx.input(1).shape[0], int):
        spatial = ctx.input(1).shape[0] - 2
    if spatial not in (2, 3):
        if spatial is None:
            return [TensorType(None, theta.dtype)]
        raise ctx.error(f"theta must be (N, 2, 3) or (N, 3, 4), got {theta}")
    dims = size[2:] if size is not None else [fresh_dim("grid") for _ in range(spatial)]
    batch = theta.shape[0] if theta.shape is not None else fresh_dim("n")
    return [TensorType((batch, *dims, spatial), theta.dtype)]


def _grid_positions(length: int, align: bool) -> np.ndarray:
    """Normalized [-1, 1] positions of pixel centres (align_corners) or of cell centres."""
    if align:
        return np.linspace(-1.0, 1.0, length) if length > 1 else np.zeros(length)
    return (2 * np.arange(length) + 1) / length - 1


def _affine_grid_reference(ctx, theta, size):
    dims = [int(d) for d in size[2:]]
    axes = [_grid_positions(d, bool(ctx.attrs["align_corners"])) for d in dims]
    mesh = np.meshgrid(*axes, indexing="ij")
    # Homogeneous points list x (the last axis) first: (x, y, 1) or (x, y, z, 1).
    points = np.stack([m.reshape(-1) for m in reversed(mesh)] + [np.ones(mesh[0].size)], axis=1)
    grid = points @ np.swapaxes(theta.astype(np.float64), 1, 2)  # (N, prod(dims), spatial)
    return grid.reshape(theta.shape[0], *dims, len(dims)).astype(theta.dtype)


AFFINE_GRID = OpDef(
    name="AffineGrid", inputs=("theta", "size"), outputs=("grid",),
    infer=_affine_grid_infer, reference=_affine_grid_reference,
    category=Category.OPAQUE, precision=Precision.FP32,
    attrs={"align_corners": Attr("int", 0)},
    doc="Sampling grid (N, *spatial, 2|3) of affine-transformed normalized coordinates, for GridSample.",
    shape_inputs=("size",))


# ---- RoiAlign --------------------------------------------------------------------------------


def _roi_align_infer(ctx: InferContext) -> list[TensorType]:
    a = ctx.attrs
    if a["mode"] not in ("avg", "max"):
        raise ctx.error(f"mode must be avg or max, got {a['mode']!r}")
    if a["coordinate_transformation_mode"] not in ("half_pixel", "output_half_pixel"):
        raise ctx.error(f"coordinate_transformation_mode must be half_pixel or output_half_pixel, "
                        f"got {a['coordinate_transformation_mode']!r}")
    x, rois = ctx.input(0), ctx.input(1)
    if x.rank not in (None, 4):
        raise ctx.error(f"X must be (N, C, H, W), got {x}")
    count = rois.shape[0] if rois.shape is not None else fresh_dim("rois")
    channels = x.shape[1] if x.shape is not None else fresh_dim("c")
    return [TensorType((count, channels, a["output_height"], a["output_width"]), x.dtype)]


def _roi_samples(start: float, size: float, bins: int, grid: int, limit: int):
    """Bilinear taps along one axis for `grid` samples in each of `bins` bins.

    Returns low/high indices and weights, shape (bins, grid); a sample beyond one pixel
    outside the map contributes nothing.
    """
    pos = start + np.arange(bins)[:, None] * (size / bins) + (np.arange(grid) + 0.5) * (size / bins) / grid
    valid = (pos >= -1.0) & (pos <= limit)
    pos = np.maximum(pos, 0.0)
    low = np.minimum(np.floor(pos).astype(np.int64), limit - 1)
    high = np.minimum(low + 1, limit - 1)
    pos = np.where(low >= limit - 1, low, pos)
    frac = pos - low
    return low, high, np.where(valid, 1 - frac, 0.0), np.where(valid, frac, 0.0)


def _sampling_matrix(low, high, w_low, w_high, limit: int) -> np.ndarray:
    """(bins, limit) matrix summing each bin's bilinear samples along one axis."""
    rows = np.broadcast_to(np.arange(low.shape[0])[:, None], low.shape)
    m = np.zeros((low.shape[0], limit))
    np.add.at(m, (rows, low), w_low)
    np.add.at(m, (rows, high), w_high)
    return m


def _roi_align_one(feature: np.ndarray, roi: np.ndarray, attrs: dict) -> np.ndarray:
    """(C, H, W) features, one box -> (C, out_h, out_w)."""
    out_h, out_w, ratio = attrs["output_height"], attrs["output_width"], attrs["sampling_ratio"]
    half_pixel = attrs["coordinate_transformation_mode"] == "half_pixel"
    x0, y0, x1, y1 = roi * attrs["spatial_scale"] - (0.5 if half_pixel else 0.0)
    width, height = x1 - x0, y1 - y0
    if not half_pixel:  # the legacy mode forces malformed boxes to 1x1
        width, height = max(width, 1.0), max(height, 1.0)
    grid_h = ratio if ratio > 0 else int(np.ceil(height / out_h))
    grid_w = ratio if ratio > 0 else int(np.ceil(width / out_w))
    ylo, yhi, wylo, wyhi = _roi_samples(y0, height, out_h, grid_h, feature.shape[1])
    xlo, xhi, wxlo, wxhi = _roi_samples(x0, width, out_w, grid_w, feature.shape[2])
    if attrs["mode"] == "avg":
        # Bilinear weights factor into rows and columns: average = My . F . Mx^T.
        # Only the rows and columns the box touches take part.
        r0, r1, c0, c1 = ylo.min(), yhi.max() + 1, xlo.min(), xhi.max() + 1
        rows = _sampling_matrix(ylo - r0, yhi - r0, wylo, wyhi, r1 - r0)
        cols = _sampling_matrix(xlo - c0, xhi - c0, wxlo, wxhi, c1 - c0)
        return rows @ feature[:, r0:r1, c0:c1] @ cols.T / max(grid_h * grid_w, 1)
    corners = []  # each (C, out_h, grid_h, out_w, grid_w)
    for yi, wy in ((ylo, wylo), (yhi, wyhi)):
        for xi, wx in ((xlo, wxlo), (xhi, wxhi)):
            values = feature[:, yi[:, :, None, None], xi[None, None, :, :]]
            corners.append(values * (wy[:, :, None, None] * wx[None, None, :, :]))
    # max mode takes the largest weighted corner of each sample, then the largest sample (as ONNX Runtime).
    return np.max(corners, axis=0).max(axis=(2, 4))


def _roi_align_reference(ctx, x, rois, batch_indices):
    out = np.zeros((rois.shape[0], x.shape[1], ctx.attrs["output_height"], ctx.attrs["output_width"]))
    for n, (roi, b) in enumerate(zip(rois.astype(np.float64), batch_indices)):  # boxes differ in sampling grid
        out[n] = _roi_align_one(x[int(b)].astype(np.float64), roi, ctx.attrs)
    return out.astype(x.dtype)


ROI_ALIGN = OpDef(
    name="RoiAlign", inputs=("X", "rois", "batch_indices"), outputs=("Y",),
    infer=_roi_align_infer, reference=_roi_align_reference,
    category=Category.OPAQUE, precision=Precision.FP32,
    attrs={"mode": Attr("string", "avg"), "output_height": Attr("int", 1), "output_width": Attr("int", 1),
           "sampling_ratio": Attr("int", 0), "spatial_scale": Attr("float", 1.0),
           "coordinate_transformation_mode": Attr("string", "half_pixel")},
    doc="Pools each region of interest to a fixed (output_height, output_width) grid by bilinear sampling.",
    not_lowerable=PENDING_RULE)


# ---- NonMaxSuppression -------------------------------------------------------------------------


def _nms_infer(ctx: InferContext) -> list[TensorType]:
    boxes, scores = ctx.input(0), ctx.input(1)
    if boxes.rank not in (None, 3) or scores.rank not in (None, 3):
        raise ctx.error(f"boxes must be (batch, boxes, 4) and scores (batch, classes, boxes), got {boxes}, {scores}")
    if ctx.attrs["center_point_box"] not in (0, 1):
        raise ctx.error(f"center_point_box must be 0 or 1, got {ctx.attrs['center_point_box']}")
    return [TensorType((fresh_dim("selected"), 3), dtypes.int64)]


def _box_corners(boxes: np.ndarray, center_point: bool) -> tuple[np.ndarray, ...]:
    """(y_min, x_min, y_max, x_max) of (N, 4) boxes given as corners (either order) or centre/size."""
    if center_point:
        xc, yc, w, h = boxes.T
        return yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2
    y1, x1, y2, x2 = boxes.T
    return np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)


def _iou_with(corners, i: int) -> np.ndarray:
    """IoU of box i with every box; 0 where either box or the overlap is empty."""
    ymin, xmin, ymax, xmax = corners
    inter_h = np.minimum(ymax, ymax[i]) - np.maximum(ymin, ymin[i])
    inter_w = np.minimum(xmax, xmax[i]) - np.maximum(xmin, xmin[i])
    inter = np.where((inter_h > 0) & (inter_w > 0), inter_h * inter_w, 0.0)
    area = (ymax - ymin) * (xmax - xmin)
    union = area + area[i] - inter
    ok = (inter > 0) & (area > 0) & (area[i] > 0) & (union > 0)
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def _nms_one_class(corners, scores: np.ndarray, limit: int, iou_threshold: float, score_threshold) -> list[int]:
    """Greedy NMS: take the best remaining box, drop those overlapping it by more than the threshold."""
    order = np.argsort(-scores, kind="stable")  # ties: lower box index first
    if score_threshold is not None:
        order = order[scores[order] > score_threshold]
    alive = np.ones(scores.shape[0], dtype=bool)
    chosen: list[int] = []
    for i in order:  # one pass per kept box: NMS is sequential by definition
        if len(chosen) >= limit:
            break
        if not alive[i]:
            continue
        chosen.append(int(i))
        alive &= ~(_iou_with(corners, i) > iou_threshold)
    return chosen


def _nms_reference(ctx, boxes, scores, max_output_boxes_per_class=None, iou_threshold=None, score_threshold=None):
    limit = 0 if max_output_boxes_per_class is None or not max_output_boxes_per_class.size \
        else max(int(max_output_boxes_per_class.reshape(-1)[0]), 0)
    iou = 0.0 if iou_threshold is None or not iou_threshold.size else float(iou_threshold.reshape(-1)[0])
    floor = None if score_threshold is None or not score_threshold.size else float(score_threshold.reshape(-1)[0])
    picked = []
    for b in range(boxes.shape[0]):
        corners = _box_corners(boxes[b].astype(np.float64), bool(ctx.attrs["center_point_box"]))
        for c in range(scores.shape[1]):
            picked += [(b, c, i) for i in _nms_one_class(corners, scores[b, c], limit, iou, floor)]
    return np.array(picked, dtype=np.int64).reshape(-1, 3)


NON_MAX_SUPPRESSION = OpDef(
    name="NonMaxSuppression",
    inputs=("boxes", "scores", "max_output_boxes_per_class?", "iou_threshold?", "score_threshold?"),
    outputs=("selected_indices",), infer=_nms_infer, reference=_nms_reference,
    category=Category.OPAQUE, precision=Precision.FP32,
    attrs={"center_point_box": Attr("int", 0)},
    doc="Greedy per-class non-maximum suppression; returns (batch, class, box) index triples.",
    not_lowerable=VALUE_DEPENDENT_SHAPE)


# ---- CenterCropPad -----------------------------------------------------------------------------


def _crop_pad_axes(ctx, rank: int) -> list[int]:
    axes = ctx.attrs["axes"]
    return list(range(rank)) if axes is None else normalize_axes(axes, rank, ctx)


def _center_crop_pad_infer(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    if x.rank is None:
        return [x]
    axes = _crop_pad_axes(ctx, x.rank)
    target = _size_values(ctx, 1)
    out: list[Dim] = list(x.shape)
    for i, axis in enumerate(axes):
        out[axis] = target[i] if target is not None else fresh_dim("crop")
    return [x.with_shape(out)]


def _center_crop_pad_reference(ctx, x, shape):
    axes = _crop_pad_axes(ctx, x.ndim)
    out_shape = list(x.shape)
    src, dst = [slice(None)] * x.ndim, [slice(None)] * x.ndim
    for axis, size in zip(axes, (int(s) for s in shape)):
        have = x.shape[axis]
        out_shape[axis] = size
        keep = min(have, size)
        # Crops start half the excess in (rounded down); pads put the odd pixel on the right.
        src[axis] = slice((have - keep) // 2, (have - keep) // 2 + keep)
        dst[axis] = slice((size - keep) // 2, (size - keep) // 2 + keep)
    out = np.zeros(out_shape, dtype=x.dtype)
    out[tuple(dst)] = x[tuple(src)]
    return out


CENTER_CROP_PAD = OpDef(
    name="CenterCropPad", inputs=("input_data", "shape"), outputs=("output_data",),
    infer=_center_crop_pad_infer, reference=_center_crop_pad_reference,
    category=Category.INJECTIVE, precision=Precision.EXACT,
    attrs={"axes": Attr("ints", None)},
    doc="Centre-crops or zero-pads the given axes to the target shape.", shape_inputs=("shape",))


# ---- DFT and STFT ------------------------------------------------------------------------------


def _as_complex(x: np.ndarray) -> np.ndarray:
    """[..., 1] real or [..., 2] (real, imaginary) -> a real or complex signal [...].

    The FFT runs in the data's precision (single for fp32 and narrower), as other runtimes do.
    """
    x = x.astype(_work_dtype(x.dtype), copy=False)
    return x[..., 0] if x.shape[-1] == 1 else x[..., 0] + 1j * x[..., 1]


def _as_pairs(z: np.ndarray, dtype) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1).astype(dtype)


def _dft_axis(ctx, rank: int, axis: int) -> int:
    if not (-rank <= axis <= -2 or 0 <= axis <= rank - 2):
        raise ctx.error(f"axis {axis} is invalid for rank {rank}: the last axis holds (real, imaginary)")
    return axis % rank


def _dft_length(inverse: bool, onesided: bool, length: Dim, given: int | None) -> Dim:
    if given is not None:
        return given
    if inverse and onesided:  # an inverse of a one-sided spectrum is a full signal of even length
        return 2 * (length - 1) if isinstance(length, int) else fresh_dim("dft")
    return length


def _dft_infer(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    inverse, onesided = bool(ctx.attrs["inverse"]), bool(ctx.attrs["onesided"])
    if x.shape is None:
        return [x]
    if isinstance(x.shape[-1], int) and x.shape[-1] not in (1, 2):
        raise ctx.error(f"the last axis must be 1 (real) or 2 (complex), got {x}")
    out: list[Dim] = list(x.shape)
    out[-1] = 1 if inverse and onesided else 2
    axis = _const_scalar(ctx, 2) if ctx.has(2) else -2
    given = _const_scalar(ctx, 1)
    if axis is None:
        if onesided or ctx.has(1):  # the transformed axis changes length, and we do not know which
            out[:-1] = [fresh_dim("dft") for _ in out[:-1]]
        return [x.with_shape(out)]
    axis = _dft_axis(ctx, len(out), axis)
    if ctx.has(1) and given is None:
        out[axis] = fresh_dim("dft")
        return [x.with_shape(out)]
    n = _dft_length(inverse, onesided, x.shape[axis], given)
    if onesided and not inverse:
        n = n // 2 + 1 if isinstance(n, int) else fresh_dim("bins")
    out[axis] = n
    return [x.with_shape(out)]


def _dft_reference(ctx, x, dft_length=None, axis=None):
    inverse, onesided = bool(ctx.attrs["inverse"]), bool(ctx.attrs["onesided"])
    axis = _dft_axis(ctx, x.ndim, -2 if axis is None else int(axis))
    n = _dft_length(inverse, onesided, x.shape[axis], None if dft_length is None else int(dft_length))
    signal = _as_complex(x)
    if inverse and onesided:
        return np.fft.irfft(signal, n=n, axis=axis)[..., None].astype(x.dtype)
    spectrum = np.fft.ifft(signal, n=n, axis=axis) if inverse else np.fft.fft(signal, n=n, axis=axis)
    if onesided:
        spectrum = np.take(spectrum, np.arange(n // 2 + 1), axis=axis)
    return _as_pairs(spectrum, x.dtype)


DFT = OpDef(
    name="DFT", inputs=("input", "dft_length?", "axis?"), outputs=("output",),
    infer=_dft_infer, reference=_dft_reference,
    category=Category.OPAQUE, precision=Precision.FP32,
    attrs={"inverse": Attr("int", 0), "onesided": Attr("int", 0)},
    doc="Discrete Fourier transform (or inverse, one-sided RFFT/IRFFT) along one axis of (real, imaginary) data.",
    not_lowerable=PENDING_RULE)


def _stft_frame_length(ctx) -> Dim | None:
    if ctx.has(3):
        return _const_scalar(ctx, 3)
    if ctx.has(2) and ctx.input(2).shape is not None:
        return ctx.input(2).shape[0]
    if not ctx.has(2):
        return ctx.input(0).shape[1] if ctx.input(0).shape is not None else None
    return None


def _stft_infer(ctx: InferContext) -> list[TensorType]:
    signal = ctx.input(0)
    if signal.rank not in (None, 3):
        raise ctx.error(f"signal must be (batch, length, 1 or 2), got {signal}")
    if signal.shape is None:
        return [TensorType(None, signal.dtype)]
    frame = _stft_frame_length(ctx)
    step = _const_scalar(ctx, 1)
    length = signal.shape[1]
    frames: Dim = fresh_dim("frames")
    if isinstance(frame, int) and isinstance(step, int) and isinstance(length, int):
        frames = (length - frame) // step + 1
    bins: Dim = fresh_dim("bins")
    if isinstance(frame, int):
        bins = frame // 2 + 1 if ctx.attrs["onesided"] else frame
    return [TensorType((signal.shape[0], frames, bins, 2), signal.dtype)]


def _stft_reference(ctx, signal, frame_step, window=None, frame_length=None):
    step = int(frame_step)
    if frame_length is not None:
        frame = int(frame_length)
    else:
        frame = window.shape[0] if window is not None else signal.shape[1]
    frames = (signal.shape[1] - frame) // step + 1
    z = _as_complex(signal)  # (batch, length)
    windows = np.lib.stride_tricks.sliding_window_view(z, frame, axis=1)[:, ::step][:, :frames]
    if window is not None:
        windows = windows * window.astype(windows.real.dtype)
    spectrum = np.fft.fft(windows, axis=-1)
    if ctx.attrs["onesided"]:
        spectrum = spectrum[..., : frame // 2 + 1]
    return _as_pairs(spectrum, signal.dtype)


STFT = OpDef(
    name="STFT", inputs=("signal", "frame_step", "window?", "frame_length?"), outputs=("output",),
    infer=_stft_infer, reference=_stft_reference,
    category=Category.OPAQUE, precision=Precision.FP32,
    attrs={"onesided": Attr("int", 1)},
    doc="Short-time Fourier transform: DFTs of (windowed) frames taken every frame_step samples.",
    not_lowerable=PENDING_RULE)


# ---- window functions and the mel filter bank ----------------------------------------------


def _window_infer(ctx: InferContext) -> list[TensorType]:
    if ctx.input(0).dtype not in (dtypes.int32, dtypes.int64):
        raise ctx.error(f"size must be an int32 or int64 scalar, got {ctx.input(0)}")
    size = _size_values(ctx, 0)
    return [TensorType((size[0] if size else fresh_dim("window"),), ctx.attrs["output_datatype"])]


# The generalized cosine windows' coefficients a_k, read by the references and the loop-IR rule.
# ONNX (like ONNX Runtime) uses the exact Hamming coefficients 25/46 and 21/46, not 0.54/0.46.
WINDOW_TERMS = {"HannWindow": (0.5, 0.5), "HammingWindow": (25 / 46, 21 / 46), "BlackmanWindow": (0.42, 0.5, 0.08)}


def _window(name: str, doc: str, **facts) -> OpDef:
    """A generalized cosine window w[n] = sum_k (-1)^k a_k cos(2 pi k n / N)."""
    terms = WINDOW_TERMS[name]

    def reference(ctx, size):
        size = int(size)
        # periodic windows are the first `size` points of a symmetric window of size + 1
        period = size if ctx.attrs["periodic"] else size - 1
        phase = 2 * np.pi * np.arange(size) / period if period else np.zeros(size)
        # The constant term goes last so that peaks land exactly on 1 (integer output types truncate).
        w = sum((-1) ** k * a * np.cos(k * phase) for k, a in enumerate(terms) if k) + terms[0]
        return np.asarray(w).astype(ctx.attrs["output_datatype"].numpy)

    return OpDef(name=name, inputs=("size",), outputs=("output",), infer=_window_infer, reference=reference,
                 category=Category.OPAQUE, precision=Precision.EXACT,
                 attrs={"periodic": Attr("int", 1), "output_datatype": Attr("dtype", dtypes.float32)}, doc=doc,
                 shape_inputs=("size",), **facts)


HANN_WINDOW = _window("HannWindow", "Hann window of the given size (periodic or symmetric).")
HAMMING_WINDOW = _window("HammingWindow", "Hamming window of the given size (periodic or symmetric).")
BLACKMAN_WINDOW = _window("BlackmanWindow", "Blackman window of the given size (periodic or symmetric).")


def _mel_infer(ctx: InferContext) -> list[TensorType]:
    mels, length = _const_scalar(ctx, 0), _const_scalar(ctx, 1)
    rows = length // 2 + 1 if length is not None else fresh_dim("bins")
    cols = mels if mels is not None else fresh_dim("mels")
    return [TensorType((rows, cols), ctx.attrs["output_datatype"])]


def _hz_to_mel(hz):
    return 2595 * np.log10(1 + hz / 700)


def _mel_to_hz(mel):
    return 700 * (10 ** (mel / 2595) - 1)


def _mel_reference(ctx, num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz):
    mels, length, rate = int(num_mel_bins), int(dft_length), int(sample_rate)
    low, high = _hz_to_mel(float(lower_edge_hertz)), _hz_to_mel(float(upper_edge_hertz))
    # Band edges: mels + 2 points from `low` in steps of (high - low) / (mels + 2), as ONNX Runtime
    # spaces them; each edge snaps down to a spectrogram bin.
    edges = _mel_to_hz(low + np.arange(mels + 2) * ((high - low) / (mels + 2)))
    edges = np.floor((length + 1) * edges / rate).astype(np.int64)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    j = np.arange(length // 2 + 1)[:, None]
    rising = np.where(centre > left, (j - left) / np.maximum(centre - left, 1), 1.0)
    falling = (right - j) / np.maximum(right - centre, 1)
    out = np.where((j >= left) & (j <= centre), rising, 0.0)
    out = np.where((j >= centre) & (j < right), falling, out)
    return out.astype(ctx.attrs["output_datatype"].numpy)


MEL_WEIGHT_MATRIX = OpDef(
    name="MelWeightMatrix",
    inputs=("num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz", "upper_edge_hertz"),
    outputs=("output",), infer=_mel_infer, reference=_mel_reference,
    category=Category.OPAQUE, precision=Precision.EXACT,
    attrs={"output_datatype": Attr("dtype", dtypes.float32)},
    doc="Triangular mel filter bank (dft_length // 2 + 1, num_mel_bins) mapping a spectrogram onto mel bands.",
    not_lowerable=PENDING_RULE)


OPS = [RESIZE, GRID_SAMPLE, AFFINE_GRID, ROI_ALIGN, NON_MAX_SUPPRESSION, CENTER_CROP_PAD, DFT, STFT,
       HANN_WINDOW, HAMMING_WINDOW, BLACKMAN_WINDOW, MEL_WEIGHT_MATRIX]
